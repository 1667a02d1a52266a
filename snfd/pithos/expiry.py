"""Swift's expiring objects: ``X-Delete-At`` and ``X-Delete-After``.

An object ``PUT``, ``POST``, ``COPY`` (or ``MOVE``) may say when the
object goes: ``X-Delete-At`` (epoch seconds) or ``X-Delete-After``
(seconds from now, turned into ``X-Delete-At``).  Either is refused as
Swift refuses it: not an integer (400 ``Non-integer X-Delete-At``/``-After``)
or not in the future (400 ``X-Delete-At in past``, ``X-Delete-After in
past``).  The time is stored with the version as the attribute
``X-Delete-At`` (ten digits, so that text order is time order; see
``snfd.pithos.store.DELETE_AT``), kept and replaced like the other
content headers: a ``POST`` without it (and without ``?update``) or a new
``PUT`` drops it, a copy carries the source's unless the request gives
one.  ``GET``/``HEAD`` answer it.

An object whose time has come is hidden at once: ``GET``/``HEAD``/``POST``/
``COPY`` of it answer 404 and listings leave it out.  The leader's sweep
(``expiry_duty``) then deletes it through the backend, as its owner would:
a deletion marker, the quota released.  Where Pithos differs from Swift:

- until the sweep has run, container and account counts and bytes still
  include an expired object (Swift's do too, until its expirer runs);
- the deletion is an ordinary Pithos delete, so the expired version stays
  in the object's history (``?version=list``) like any deleted one, and a
  Pithos history read (``?version=<id>``) still serves it;
- a ``DELETE`` of an expired object not yet swept answers 204 (Swift: 404);
- the owner's ``DELETE`` of a container first deletes its expired objects,
  so that what the listing no longer shows does not keep it from going.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.logger import Logger

from snfd import errors
from snfd.cluster.periodic import PeriodicDuty
from snfd.pithos.middleware import Handler
from snfd.pithos.requests import Call, Reply
from snfd.pithos.store import DELETE_AT

log = Logger(namespace="snfd.pithos")

MAX_DELETE_AT = 9999999999
"""The largest time Swift stores (ten digits)."""

SWEEP_INTERVAL = 60.0
"""Seconds between the leader's sweeps (Swift's expirer: 300)."""

SWEEP_SLACK = 3600.0
"""A sweep looks again at the times up to this long before the last sweep
(besides every one since), for objects made current late (a restored or
copied version); the first sweep of a leader looks at every time."""

_WRITES = ("PUT", "POST", "COPY", "MOVE")


def stored(t: float) -> str:
    """A time as ``X-Delete-At`` is stored and answered (Swift's ten
    digits, clamped)."""
    return f"{min(max(0, int(t)), MAX_DELETE_AT):010d}"


def delete_at(meta: Mapping[str, str]) -> int | None:
    """The ``X-Delete-At`` of an object's metadata, if any."""
    value = meta.get(DELETE_AT)
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def expired(meta: Mapping[str, str], now: float) -> bool:
    """Whether the object with ``meta`` is gone at ``now``."""
    at = delete_at(meta)
    return at is not None and at <= now


def _integer(value: str) -> int:
    v = value.strip()
    if v[:1] in "+-":
        sign, digits = v[0], v[1:]
    else:
        sign, digits = "", v
    if not digits.isdigit():
        raise ValueError(value)
    return int(sign + digits)


def checked_headers(request: Any, now: float) -> None:
    """Check the request's ``X-Delete-After``/``X-Delete-At`` as Swift
    does and leave only ``X-Delete-At``, normalised, in it.

    @raise errors.BadRequest: with Swift's message.
    """
    headers = request.requestHeaders
    after = headers.getRawHeaders(b"x-delete-after")
    if after is not None:
        try:
            seconds = _integer(after[0].decode("latin-1"))
        except ValueError:
            raise errors.BadRequest("Non-integer X-Delete-After") from None
        at = stored(now + seconds)
        if int(at) <= now:
            raise errors.BadRequest("X-Delete-After in past")
        headers.removeHeader(b"x-delete-after")
        headers.setRawHeaders(b"x-delete-at", [at.encode("ascii")])
    given = headers.getRawHeaders(b"x-delete-at")
    if given is not None:
        try:
            at = stored(_integer(given[0].decode("latin-1")))
        except ValueError:
            raise errors.BadRequest("Non-integer X-Delete-At") from None
        if int(at) <= now:
            raise errors.BadRequest("X-Delete-At in past")
        headers.setRawHeaders(b"x-delete-at", [at.encode("ascii")])


class Expiry:
    """The filter: see the module docstring.

    @param backend: the ``Backend`` (to see whether an object is expired
        before a ``POST`` or ``COPY`` changes or copies it).
    @param clock: ``seconds()``, what "now" is.
    """

    def __init__(self, backend: Any, clock: Any):
        self.backend = backend
        self.clock = clock

    @classmethod
    def from_api(cls, api: Any) -> Expiry:
        return cls(api.backend, api.backend.clock)

    def info(self) -> dict[str, Any]:
        return {}  # Swift advertises no section for it

    async def __call__(self, call: Call, app: Handler) -> Reply:
        t = call.target
        if t.level == "container" and call.method == "DELETE" and not call.anonymous \
                and call.user == t.account and not call.has("until"):
            # Expired objects are gone already as far as the caller sees:
            # they do not keep the container from being deleted.
            assert t.account is not None and t.container is not None
            await expire(self.backend, self.clock.seconds(), (t.account, t.container))
        if t.level != "object":
            return await app(call)
        now = self.clock.seconds()
        if call.method in _WRITES:
            checked_headers(call.request, now)
        if call.method in ("POST", "COPY", "MOVE"):
            await self._check_live(call, now)
        reply = await app(call)
        if call.method in ("GET", "HEAD") and not call.has("version"):
            for name, value in reply.headers:
                if name.lower() == "x-delete-at" and value.isdigit() and int(value) <= now:
                    raise errors.NotFound("Not Found")
        return reply

    async def _check_live(self, call: Call, now: float) -> None:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        if call.anonymous:
            return  # the handler refuses it
        try:
            info = await self.backend.object(call.user, t.account, t.container, t.name)
        except errors.Fault:
            return  # the handler answers it
        if expired(info.meta, now):
            raise errors.NotFound("Not Found")


async def expire(backend: Any, now: float, container: tuple[str, str] | None = None,
                 since: float | None = None, batch: int = 1000) -> int:
    """Delete the objects whose time has come by ``now`` (in ``container``,
    an ``(account, container)``, if given; due after ``since``, if given),
    ``batch`` at a time; an object changed since it was found is left
    alone.  How many were deleted."""
    removed = 0
    after = None
    while True:
        page = await backend.expiring(now, after, since, batch, container)
        for account, cont, name, serial, cursor in page:
            after = cursor
            try:
                if await backend.expire_object(account, cont, name, serial):
                    removed += 1
            except Exception:
                log.failure("expiring {path} failed", path=f"{account}/{cont}/{name}")
        if len(page) < batch:
            return removed


class ExpirySweep:
    """The leader's sweep: deletes the objects whose time has come
    (``expire``), ``batch`` at a time."""

    def __init__(self, backend: Any, clock: Any, batch: int = 1000,
                 slack: float = SWEEP_SLACK):
        self.backend = backend
        self.clock = clock
        self.batch = batch
        self.slack = slack
        self._since: float | None = None

    async def __call__(self) -> int:
        """One sweep; how many objects it deleted."""
        now = self.clock.seconds()
        removed = await expire(self.backend, now, since=self._since, batch=self.batch)
        self._since = now - self.slack
        if removed:
            log.info("pithos expiry: {removed} objects deleted", removed=removed)
        return removed


def expiry_duty(backend: Any, clock: Any, interval: float = SWEEP_INTERVAL) -> PeriodicDuty:
    """The leader duty that runs an ``ExpirySweep`` every ``interval``
    seconds."""
    return PeriodicDuty("pithos-expiry", interval, clock, ExpirySweep(backend, clock))


__all__ = ["Expiry", "ExpirySweep", "checked_headers", "delete_at", "expire", "expired",
           "expiry_duty", "stored"]
