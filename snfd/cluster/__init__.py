"""Cluster membership and leader election in PostgreSQL.

``membership`` keeps this node's row in ``nodes`` fresh; ``election`` holds
the leader lock and runs the leader-only duties; ``store`` holds their SQL.
"""


class LostLeadership(Exception):
    """A leader-only write was refused: a newer leadership term exists."""
