"""Choosing the Ganeti backend of a new server (reference/synnefo-apis.md 3.5).

The pure functions pin the reference's filter chain and score; callers
use ``choose_backend_txn`` inside the transaction that inserts the server,
so the chosen backend's counters are charged under the same row locks:

1. usable backends: neither offline nor drained, rows locked;
2. project filter: the backends assigned to the server's project, else
   only the public ones;
3. default filter: backends the flavor fits (``dfree`` > disk MiB, doubled
   for DRBD; ``mfree`` > ram; ``(pinst_cnt + 1) * 4 / ctotal < 3``); when
   none fits, all of them are kept (the stats may be stale, Ganeti's
   allocator decides in the end);
4. disk template filter: the backend's ``disk_templates`` hold the
   flavor's template (``ext_<provider>`` counts as ``ext``);
5. server group filter (``server_groups.placement_filter``): a new
   member of a group goes where the group's policy allows;
6. the minimum score ``0.5 * cpu_ratio + 0.5 * (mem_used_ratio +
   disk_used_ratio)`` with ``cpu_ratio = (pinst_cnt + 1) * 4 / (ctotal * 3)``;
   ties go to the lowest id;
7. the winner's ``mfree``/``dfree`` drop and ``pinst_cnt`` grows at once.

Statistics come from ``GET /2/nodes?bulk=1`` (``refresh_stats``): sums over
the nodes that are vm_capable, online and not drained.  A backend whose
statistics are older than the caller's ``min_age`` is refreshed before
allocating; a refresh that fails is logged and the stale numbers are used.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from snfd.cyclades import store
from snfd.cyclades.model import Flavor, GanetiBackend
from snfd.cyclades.server_groups import placement_filter
from snfd.ganeti.rapi import GanetiRapi, RapiError, RapiTarget, RapiUnavailable

log = Logger(namespace="snfd.cyclades.allocator")

UTC = datetime.UTC
_STATS = ("mfree", "mtotal", "dfree", "dtotal", "pinst_cnt", "ctotal")


def rapi_target(backend: GanetiBackend, timeout: float = 30.0) -> RapiTarget:
    """How to reach ``backend``'s RAPI."""
    return RapiTarget(cluster=backend.clustername, url=backend.rapi_url,
                      username=backend.username, password=backend.password,
                      certificate=backend.certificate, timeout=timeout)


def rapi_for(rapi_pool: Any, backend: GanetiBackend) -> GanetiRapi:
    """The pooled RAPI client of ``backend``."""
    client: GanetiRapi = rapi_pool.client(rapi_target(backend))
    return client


# -- the pure filter chain --------------------------------------------------

def template_kind(disk_template: str) -> str:
    """The Ganeti template a flavor's template needs (``ext_*`` -> ``ext``)."""
    return "ext" if disk_template.startswith("ext_") else disk_template


def disk_needed(flavor: Flavor) -> int:
    """MiB of backend disk a server of ``flavor`` takes (DRBD counts twice)."""
    mib = flavor.disk * 1024
    return mib * 2 if flavor.disk_template == "drbd" else mib


def project_filter(backends: Iterable[GanetiBackend], project: str) -> list[GanetiBackend]:
    """The backends assigned to ``project``; if there are none, the public ones."""
    backends = list(backends)
    assigned = [b for b in backends if project in b.projects]
    return assigned or [b for b in backends if b.public]


def fits(backend: GanetiBackend, flavor: Flavor) -> bool:
    """Whether ``flavor`` fits ``backend`` by its (possibly stale) statistics."""
    if backend.ctotal <= 0:
        return False
    return (backend.dfree > disk_needed(flavor) and backend.mfree > flavor.ram
            and (backend.pinst_cnt + 1) * 4 / backend.ctotal < 3)


def default_filter(backends: Iterable[GanetiBackend], flavor: Flavor) -> list[GanetiBackend]:
    """The backends ``flavor`` fits, or all of them when it fits none."""
    backends = list(backends)
    fitting = [b for b in backends if fits(b, flavor)]
    return fitting or backends


def template_filter(backends: Iterable[GanetiBackend], flavor: Flavor) -> list[GanetiBackend]:
    """The backends that offer the flavor's disk template."""
    wanted = template_kind(flavor.disk_template)
    return [b for b in backends if wanted in b.disk_templates]


def _used(free: int, total: int) -> float:
    if total <= 0:
        return 1.0
    return 1.0 - free / total


def score(backend: GanetiBackend) -> float:
    """The reference's load score; lower is better."""
    if backend.ctotal > 0:
        cpu_ratio = (backend.pinst_cnt + 1) * 4 / (backend.ctotal * 3)
    else:
        cpu_ratio = float("inf")
    return 0.5 * cpu_ratio + 0.5 * (_used(backend.mfree, backend.mtotal)
                                    + _used(backend.dfree, backend.dtotal))


def choose(backends: Sequence[GanetiBackend], flavor: Flavor, project: str,
           group: tuple[str, Collection[int]] | None = None) -> GanetiBackend | None:
    """The backend the reference's chain picks among usable ``backends``;
    ``group``: the policy of the server group the server joins and the
    backends of its members (``server_groups.placement_filter`` then
    narrows the candidates)."""
    candidates = default_filter(project_filter(backends, project), flavor)
    candidates = template_filter(candidates, flavor)
    if group is not None:
        candidates = placement_filter(candidates, *group)
    if not candidates:
        return None
    return min(candidates, key=lambda b: (score(b), b.id))


def choose_backend_txn(txn: Any, flavor: Flavor, project: str,
                       hosts: Collection[str] | None = None,
                       group: tuple[str, Collection[int]] | None = None,
                       ) -> GanetiBackend | None:
    """Lock the usable backends, pick one (of ``hosts``, cluster names,
    when given: an availability zone's; as ``group`` allows, see
    ``choose``) for a server of ``flavor`` in ``project`` and charge its
    counters; None when none can host it."""
    backends = store.backends_txn(txn, usable_only=True, for_update=True)
    if hosts is not None:
        backends = [b for b in backends if b.clustername in hosts]
    chosen = choose(backends, flavor, project, group)
    if chosen is not None:
        store.charge_backend_txn(txn, chosen.id, flavor.ram, disk_needed(flavor))
    return chosen


def release_backend_txn(txn: Any, backend_id: int, flavor: Flavor) -> None:
    """Give back what ``choose_backend_txn`` charged (a create that never
    reached Ganeti)."""
    store.charge_backend_txn(txn, backend_id, -flavor.ram, -disk_needed(flavor), -1)


# -- statistics ---------------------------------------------------------------

def node_stats(nodes: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Sums of the statistics over the nodes that can host instances
    (vm_capable, not offline, not drained); missing values count 0."""
    totals = dict.fromkeys(_STATS, 0)
    for node in nodes:
        if not isinstance(node, dict):
            continue
        if not node.get("vm_capable", True) or node.get("offline") or node.get("drained"):
            continue
        for key in _STATS:
            value = node.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                totals[key] += int(value)
    return totals


def is_stale(backend: GanetiBackend, min_age: float, now: datetime.datetime | None = None) -> bool:
    """Whether ``backend``'s statistics are older than ``min_age`` seconds."""
    if backend.stats_updated is None:
        return True
    now = now or datetime.datetime.now(UTC)
    return (now - backend.stats_updated).total_seconds() >= min_age


async def refresh_stats(db: Any, rapi_pool: Any, backend: GanetiBackend, min_age: float = 0.0,
                        now: datetime.datetime | None = None) -> GanetiBackend:
    """Refresh ``backend``'s statistics from ``GET /2/nodes?bulk=1`` when they
    are older than ``min_age`` seconds; the backend as stored afterwards.

    A cluster that cannot be asked is logged and its stale row returned.
    """
    if not is_stale(backend, min_age, now):
        return backend
    try:
        nodes = await rapi_for(rapi_pool, backend).nodes()
    except (RapiUnavailable, RapiError) as e:
        log.warn("backend {cluster}: statistics not refreshed ({error}); using the"
                 " stored ones", cluster=backend.clustername, error=str(e))
        return backend
    stats = node_stats(nodes)
    updated: GanetiBackend | None = await db.run(
        "cyclades.backend_stats", store.update_backend_txn, backend.id, **stats)
    return updated if updated is not None else backend


async def refresh_stale(db: Any, rapi_pool: Any, min_age: float) -> None:
    """Refresh, concurrently, every usable backend with stale statistics."""
    backends: list[GanetiBackend] = await db.read(
        "cyclades.usable_backends", store.backends_txn, usable_only=True)
    now = datetime.datetime.now(UTC)
    stale = [b for b in backends if is_stale(b, min_age, now)]

    async def one(backend: GanetiBackend) -> None:
        try:
            await refresh_stats(db, rapi_pool, backend, min_age, now)
        except Exception:
            log.failure("backend {cluster}: statistics not refreshed",
                        cluster=backend.clustername)

    if stale:
        await defer.gatherResults([defer.ensureDeferred(one(b)) for b in stale])
