"""The quota algebra as a state machine: random sequences of issues
(imports, releases, forced or not), accepts, rejects, bulk resolutions and
limit changes against the real tables, checked step by step against a
pure-Python model of Synnefo's quota holder."""

from __future__ import annotations

import datetime

import psycopg2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from twisted.trial import unittest

from snfd import errors
from snfd.identity import quota_store
from snfd.quota import (
    NoCapacityError,
    NoHoldingError,
    NoQuantityError,
    Provision,
    QuotaError,
    Resource,
)
from snfd.testing.identity import identity_database

# Holdings the machine plays with; the last key never has a holding.
KEYS = [
    ("user:a", "project:p", "cyclades.vm"),
    ("project:p", "", "cyclades.vm"),
    ("user:b", "project:p", "cyclades.vm"),
    ("user:a", "project:p", "cyclades.ram"),
    ("user:c", "project:p", "cyclades.vm"),
]
EXISTING = KEYS[:-1]

MACHINE_SETTINGS = settings(
    max_examples=30, stateful_step_count=25, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Model:
    """Synnefo's quota holder in a few dictionaries."""

    def __init__(self, limits: dict[tuple[str, str, str], int]):
        self.holdings = {k: [limit, 0, 0] for k, limit in limits.items()}
        self.pending: dict[int, dict[tuple[str, str, str], int]] = {}

    def issue(self, provisions: list[tuple[int, int]], force: bool,
              ) -> tuple[type | None, dict[tuple[str, str, str], int]]:
        """Apply an issue; return the expected error class (None: success)
        and the summed provisions."""
        summed: dict[tuple[str, str, str], int] = {}
        for index, quantity in provisions:
            summed[KEYS[index]] = summed.get(KEYS[index], 0) + quantity
        after = {k: list(v) for k, v in self.holdings.items()}
        for key, q in summed.items():
            if key not in after:
                return NoHoldingError, summed
            limit, lo, hi = after[key]
            if q >= 0:
                if not force and hi + q > limit:
                    return NoCapacityError, summed
                after[key][2] = hi + q
            else:
                if lo + q < 0:
                    return NoQuantityError, summed
                after[key][1] = lo + q
        self.holdings = after
        return None, summed

    def resolve(self, serial: int, accept: bool) -> None:
        for key, q in self.pending.pop(serial).items():
            h = self.holdings[key]
            if q >= 0:
                if accept:
                    h[1] += q
                else:
                    h[2] -= q
            elif accept:
                h[2] += q
            else:
                h[1] -= q


def make_machine(conn) -> type[RuleBasedStateMachine]:
    class QuotaMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.run_txn(_reset_txn)
            self.model = Model({k: 3 for k in EXISTING})
            self.issued: list[int] = []

        def run_txn(self, fn, *args):
            try:
                with conn.cursor() as cur:
                    result = fn(cur, *args)
                conn.commit()
                return result
            except BaseException:
                conn.rollback()
                raise

        @rule(index=st.integers(0, len(EXISTING) - 1), limit=st.integers(0, 8))
        def set_limit(self, index, limit):
            holder, source, resource = EXISTING[index]
            self.run_txn(quota_store.set_limit_txn, holder, source or None, resource, limit)
            self.model.holdings[EXISTING[index]][0] = limit

        @rule(provisions=st.lists(st.tuples(st.integers(0, len(KEYS) - 1),
                                            st.integers(-4, 4)), min_size=1, max_size=4),
              force=st.booleans(), auto_accept=st.booleans())
        def issue(self, provisions, force, auto_accept):
            expected, summed = self.model.issue(provisions, force)
            values = [Provision(KEYS[i][0], KEYS[i][1] or None, KEYS[i][2], q)
                      for i, q in provisions]
            try:
                serial = self.run_txn(quota_store.issue_txn, "c", values, "n", force, _now(),
                                      auto_accept)
            except QuotaError as e:
                assert type(e) is expected, (e, expected)
                return
            assert expected is None, f"expected {expected.__name__}"
            assert not self.issued or serial > self.issued[-1], "serials increase"
            self.issued.append(serial)
            self.model.pending[serial] = summed
            if auto_accept:
                self.model.resolve(serial, True)
            if not force:
                for key, q in summed.items():
                    limit, _, usage_max = self.db_holdings()[key]
                    if q > 0:
                        assert usage_max <= limit, (key, limit, usage_max)

        @rule(choices=st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=4))
        def resolve(self, choices):
            candidates = [*self.issued, 10**9]
            accept, reject = [], []
            for index, do_accept in choices:
                serial = candidates[index % len(candidates)]
                (accept if do_accept else reject).append(serial)
            result = self.run_txn(quota_store.resolve_txn, "c", accept, reject, _now())

            both = set(accept) & set(reject)
            want_accepted = [s for s in dict.fromkeys(accept)
                             if s not in both and s in self.model.pending]
            want_rejected = [s for s in dict.fromkeys(reject)
                             if s not in both and s in self.model.pending]
            assert result.accepted == want_accepted, (result, want_accepted)
            assert result.rejected == want_rejected, (result, want_rejected)
            failed = dict(result.failed)
            assert set(failed) == set(accept + reject) - set(want_accepted + want_rejected)
            for serial, fault in failed.items():
                kind = errors.BadRequest if serial in both else errors.NotFound
                assert isinstance(fault, kind), (serial, fault)
            for serial in want_accepted:
                self.model.resolve(serial, True)
            for serial in want_rejected:
                self.model.resolve(serial, False)

        @rule(other=st.booleans())
        def resolve_everything(self, other):
            """Another client resolves nothing; the owner resolves all."""
            pending = sorted(self.model.pending)
            if other:
                result = self.run_txn(quota_store.resolve_txn, "other", pending, [], _now())
                assert result.accepted == [] and len(result.failed) == len(pending)
                return
            half = pending[::2]
            rest = pending[1::2]
            self.run_txn(quota_store.resolve_txn, "c", half, rest, _now())
            for s in half:
                self.model.resolve(s, True)
            for s in rest:
                self.model.resolve(s, False)

        def db_holdings(self):
            return {(h.holder, h.source or "", h.resource): (h.limit, h.usage_min, h.usage_max)
                    for h in self.run_txn(quota_store.holdings_txn)}

        @invariant()
        def bounds_hold_and_db_equals_model(self):
            holdings = self.db_holdings()
            for key, (_, lo, hi) in holdings.items():
                assert 0 <= lo <= hi, (key, lo, hi)
            assert holdings == {k: tuple(v) for k, v in self.model.holdings.items()}, (
                holdings, self.model.holdings)
            assert self.run_txn(quota_store.pending_txn, "c") == sorted(self.model.pending)

    return QuotaMachine


def _reset_txn(txn):
    txn.execute("TRUNCATE identity_holdings, identity_commissions, identity_provisions,"
                " identity_provision_log")
    for holder, source, resource in EXISTING:
        quota_store.set_limit_txn(txn, holder, source or None, resource, 3)


class QuotaStateMachineTests(unittest.TestCase):
    def test_random_sequences_match_the_model(self):
        """Any sequence of issues and resolutions keeps 0 <= usage_min <=
        usage_max, never lets a non-forced import pass the limit, and leaves
        the tables exactly where the model says."""
        conn = psycopg2.connect(identity_database(self))
        self.addCleanup(conn.close)
        with conn.cursor() as cur:
            quota_store.register_resources_txn(cur, [
                Resource("cyclades.vm", "", None, "compute", "cyclades_compute"),
                Resource("cyclades.ram", "", "bytes", "compute", "cyclades_compute")])
        conn.commit()
        run_state_machine_as_test(make_machine(conn), settings=MACHINE_SETTINGS)
