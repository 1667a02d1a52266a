"""The ``snf`` client side: a blocking HTTP client of the object store
(``pithos``), the block-level upload/download/sync algorithms (``sync``)
and the user's settings (``config``).

This package runs in a command-line process, not in the daemon: it uses
``requests`` and threads, never the reactor.
"""
