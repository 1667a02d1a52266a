"""The message bus: topic exchanges and durable queues.

``make_bus`` picks the implementation from the configured URL: an empty
URL gives the in-process ``LocalBus`` (single node, tests), an
``amqp://``/``amqps://`` URL the RabbitMQ-backed ``AmqpBus``.  Both provide
``snfd.interfaces.IMessageBus`` and pass the same contract tests.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from snfd.interfaces import IMessage

if TYPE_CHECKING:
    from snfd.interfaces import IMessageBus
    from snfd.metrics import Metrics


#: The direct exchange through which rejected messages of a queue ``q``
#: declared with ``dead_letter=True`` reach the queue ``q.dead`` (routing
#: key ``q.dead``).  Dead-lettered messages arrive with this exchange and
#: that routing key; the original ones are in the ``x-death`` header.
DEAD_LETTER_EXCHANGE = "snfd.dead"


class BusUnavailable(Exception):
    """The bus could not do what was asked in time (broker unreachable,
    no publisher confirm within the publish timeout, bus stopped)."""


class UnknownExchange(LookupError):
    """A message was published to, or a queue bound to, an exchange that
    was never declared (AMQP reply 404 NOT_FOUND)."""


@implementer(IMessage)
@attrs.frozen
class Message:
    """A delivered message (``IMessage``)."""

    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, Any] = attrs.field(factory=dict)
    content_type: str | None = None
    redelivered: bool = False


async def run_handler(handler: Callable[[Message], Any], message: Message,
                      queue: str, log: Logger) -> bool:
    """Run a consumer's handler on ``message``; ``True`` if it succeeded
    (ack), ``False`` if it raised (logged with its traceback; reject)."""
    try:
        result = handler(message)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.failure("Handler for queue {queue} failed on a message with routing"
                    " key {routing_key}; rejected", queue=queue,
                    routing_key=message.routing_key)
        return False
    return True


@attrs.frozen
class AmqpAddress:
    """The parts of an ``amqp://`` or ``amqps://`` URL."""

    tls: bool
    host: str
    port: int
    username: str
    password: str
    vhost: str


def parse_amqp_url(url: str) -> AmqpAddress:
    """Parse ``amqp[s]://user:pass@host:port/vhost``.

    User and password default to ``guest``, the port to 5672 (5671 for
    ``amqps``), the vhost to ``/``; the vhost is percent-decoded, so the
    default vhost is written ``/%2F`` or left out.

    @raise ValueError: for another scheme, a missing host, a bad port, or
        a query string or fragment (no options are understood).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(
            f"bus URL {url!r}: scheme must be amqp:// or amqps:// (or leave"
            " the URL empty for the in-process bus)")
    if not parts.hostname:
        raise ValueError(f"bus URL {url!r}: no host")
    if parts.query or parts.fragment:
        raise ValueError(
            f"bus URL {url!r}: query strings and fragments are not supported")
    tls = parts.scheme == "amqps"
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bus URL {url!r}: bad port") from None
    path = parts.path.removeprefix("/")
    return AmqpAddress(
        tls=tls,
        host=parts.hostname,
        port=port if port is not None else (5671 if tls else 5672),
        username=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password else "guest",
        vhost=unquote(path) if path else "/",
    )


def make_bus(url: str, reactor, metrics: Metrics | None,
             publish_timeout: float = 30.0,
             reconnect_max_delay: float = 30.0, monotonic: Any = None,
             queue_type: str = "classic") -> IMessageBus:
    """Build the bus named by ``url`` (not started yet).

    @param url: ``""`` for the in-process bus, else an AMQP URL (see
        ``parse_amqp_url``), or several separated by spaces or commas: the
        brokers of a RabbitMQ cluster.
    @param queue_type: ``classic`` or ``quorum`` (see ``AmqpBus``).
    @param reactor: the reactor to run on (time, TCP, TLS).
    @param metrics: the node's ``Metrics`` (``bus_*`` instruments), or
        ``None`` for a private, unexposed set.
    @param publish_timeout: seconds a publish may wait for its confirm,
        across reconnects, before it raises ``BusUnavailable``.
    @param reconnect_max_delay: cap of the exponential reconnect backoff.
    @param monotonic: ``seconds()`` that setting the clock does not move,
        for publish deadlines (default: the reactor's).
    @raise ValueError: for a URL of another scheme or a malformed one.
    """
    if metrics is None:
        from snfd.metrics import Metrics
        metrics = Metrics()
    if not url.strip():
        from snfd.bus.local import LocalBus
        return LocalBus(reactor, metrics)
    addresses = [parse_amqp_url(u) for u in url.replace(",", " ").split()]
    from snfd.bus.amqp import AmqpBus
    return AmqpBus(addresses[0] if len(addresses) == 1 else addresses, reactor, metrics,
                   publish_timeout=publish_timeout,
                   reconnect_max_delay=reconnect_max_delay, monotonic=monotonic,
                   queue_type=queue_type)
