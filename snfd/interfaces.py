"""The contracts shared between the node core and the service plugins.

Every implementation says ``@implementer(...)`` and its tests run
``verifyObject`` against the interface it claims.
"""

from collections.abc import Mapping
from typing import Any

import attrs
from zope.interface import Attribute, Interface
from zope.interface.interface import InterfaceClass

Deps = Mapping[InterfaceClass, Any]
"""What a service factory receives of other services: each interface its
plugin requires (and each it uses that is provided) to its provider."""


class ISnfdPlugin(Interface):
    """A service that a node can run: identity, pithos, cyclades, ...

    A plugin is an object in a module of the ``snfd.plugins`` package (or of
    any ``snfd/plugins/`` directory on ``sys.path``), found with
    ``twisted.plugin.getPlugins(ISnfdPlugin, snfd.plugins)``.  The module
    must also declare ``IPlugin`` so that Twisted's scan picks it up.

    Services meet only through the interfaces of this module: a plugin
    declares which it ``provides`` and which it ``requires``; the node
    builds the providers first and hands each service exactly what it
    requires.  A requirement no enabled plugin (and not the node itself,
    see ``[node] identity_url``) provides stops the node with one line
    naming the plugin and the interface; so does a provided object that
    fails ``verifyObject`` against its interface.
    """

    name = Attribute(
        "Short unique name (``str``): the word used in ``[plugins] enabled``"
        " and the name of the plugin's own config section."
    )

    config_keys = Attribute(
        "A sequence of ``snfd.config.Key`` declaring every key of the"
        " plugin's config section; keys not declared are config errors."
    )

    schema = Attribute(
        "``None``, or a ``snfd.db.migrations.Schema`` naming the plugin's"
        " numbered SQL migrations.  The node applies (or, when not allowed"
        " to upgrade, checks) them before the plugin starts."
    )

    provides = Attribute(
        "The interfaces (a tuple of zope ``Interface`` objects) whose"
        " providers ``provided(service)`` returns, for other services."
        "  At most one enabled plugin may provide each."
    )

    requires = Attribute(
        "The interfaces (a tuple) the service cannot work without; they are"
        " in the ``deps`` that ``makeService`` receives."
    )

    uses = Attribute(
        "The interfaces (a tuple) the service uses when some enabled plugin"
        " provides them and does without otherwise; those provided are in"
        " ``deps`` too.  Providers of both are built first."
    )

    def makeService(node, section, deps):
        """Build the plugin's service.

        @param node: the ``snfd.node.Node`` holding the shared resources
            (frozen: a plugin never writes into it).
        @param section: the validated config section (``snfd.config.Section``).
        @param deps: a ``snfd.plugin_loader.Dependencies``, a read-only
            mapping from each required (and each provided used) interface
            to the object providing it.
        @return: an ``IService``; it is started after the shared resources
            and the services it depends on, and stopped before them.  Its
            constructor does no I/O: ``snf-manage`` builds services through
            the same factory without starting them.
        """

    def provided(service):
        """What this plugin offers other services.

        @param service: what ``makeService`` returned.
        @return: a mapping from each interface in ``provides`` to the object
            providing it (checked with ``verifyObject``).
        """

    def mounts(service):
        """The HTTP resources this plugin serves.

        @param service: what ``makeService`` returned.
        @return: a mapping from a top-level path segment (``"identity"``,
            ``"object-store"``) to an ``IResource`` mounted there.  Two
            plugins claiming one segment is a startup error.
        """

    def listeners(service):
        """The plugin's own non-HTTP servers (the NBD server, say).

        @param service: what ``makeService`` returned.
        @return: an iterable of ``(description, factory)``: a strports
            endpoint description (``"tcp:10809:interface=127.0.0.1"``) and
            the ``IProtocolFactory`` to serve on it.  The node listens
            after the shared resources and the plugin's service have
            started and stops listening before stopping them.
        """

    def duties(service):
        """The leader-only duties of this plugin.

        @param service: what ``makeService`` returned.
        @return: an iterable of ``ILeaderDuty``.  They run on exactly one
            node of the cluster at a time.
        """


@attrs.frozen
class CatalogService:
    """One catalog entry a plugin declares in its optional ``catalog``
    (a tuple of these), which the identity service lists.

    ``path`` is below the cluster's public URL (``"compute/v2.0"``);
    ``version`` the ``versionId`` of the v2.0 catalog (may be empty);
    ``per_account`` appends ``/<user uuid>`` to the v3 URL; ``catalogs``
    names the renderings that show the entry (``"v2"``, ``"v3"``).
    """

    name: str
    type: str
    path: str
    version: str
    per_account: bool = False
    catalogs: tuple[str, ...] = ("v2", "v3")


class ILeaderDuty(Interface):
    """Work that exactly one node of the cluster does (GC, reconciliation).

    The node calls ``start`` when it becomes leader and ``stop`` when it
    loses leadership or shuts down.  A duty may still be running on a
    leader that froze and resumed; every write it makes on behalf of the
    cluster must therefore go through ``leadership.fenced`` so that a stale
    leader's writes are refused by the database.
    """

    name = Attribute("Short name for logs and metrics.")

    def start(leadership):
        """Begin the duty for one leadership term.

        @param leadership: an ``ILeadership`` valid until ``stop`` is called.
        Returns ``None`` or a Deferred; must not block.
        """

    def stop():
        """Stop the duty.  Returns ``None`` or a Deferred that fires when
        every piece of in-flight work has ended."""


class ILeadership(Interface):
    """One term of leadership held by this node."""

    epoch = Attribute(
        "The term's epoch (``int``): strictly greater than every earlier"
        " term's, stored in the database."
    )

    def fenced(name, interaction, *args, **kwargs):
        """Run a database interaction only if this term is still current.

        The interaction runs in one transaction that first locks the
        cluster's epoch row in share mode and compares it with ``epoch``;
        a newer term makes it raise ``snfd.cluster.LostLeadership``
        without calling ``interaction``, and so does this node's lease
        having run out (no successful ping within the session timeout,
        measured on the monotonic clock), before the database is asked.
        Returns a Deferred/coroutine firing with the interaction's result.
        """


class IDatabase(Interface):
    """The node's PostgreSQL pool: every interaction is named and timed."""

    def run(name, interaction, *args, **kwargs):
        """Run ``interaction(txn, *args, **kwargs)`` in one transaction.

        @param name: dotted name (``"pithos.put_version"``) used in logs and
            the ``snfd_db_interaction_seconds`` metric.
        @return: an awaitable firing with the interaction's return value.

        Serialization failures and deadlocks are retried with backoff, as
        are failures caused by a lost connection (the pool reconnects), so
        the interaction must be safe to run again from the start.  A
        server out of disk space, memory or connections, or whose storage
        is read-only or failing, raises
        ``snfd.db.pool.DatabaseImpaired`` (503) at once.  Other database
        errors propagate unchanged.
        """

    def read(name, interaction, *args, **kwargs):
        """Run ``interaction(txn, *args, **kwargs)`` outside a transaction
        (autocommit): no ``BEGIN`` or ``COMMIT`` round trips, and each
        statement sees its own snapshot.  For an interaction that writes
        nothing and runs one statement, or several whose answers need not
        agree with each other.  Named, timed, retried and failing as
        ``run``.
        """

    def ping(timeout):
        """Return an awaitable firing with the round-trip time in seconds
        of ``SELECT 1``, or raising ``snfd.db.pool.DatabaseUnavailable``
        when no answer came within ``timeout`` seconds."""


class IMessage(Interface):
    """A message delivered to a consumer."""

    exchange = Attribute("The exchange it was published to (``str``).")
    routing_key = Attribute("Its routing key (``str``).")
    body = Attribute("The payload (``bytes``).")
    headers = Attribute("Application headers (``dict``; may be empty).")
    content_type = Attribute("MIME type of ``body`` (``str`` or ``None``).")
    redelivered = Attribute(
        "``True`` when the broker delivered it before without an ack."
    )


class IMessageBus(Interface):
    """Topic-exchange messaging: AMQP 0-9-1 to RabbitMQ, or in-process.

    Both implementations pass the same contract tests
    (``tests/bus/test_contract.py``).  Delivery is at least once: a
    handler may see a message again after a crash or a reconnect and must
    be idempotent.  A queue hands out its messages in the order they
    reached it, and a consumer's handler is called in that order as each
    arrives.  The default exchange ``""`` exists on both and routes a
    message to the queue named by its routing key.
    """

    connected = Attribute(
        "``True`` while the bus can publish and deliver (``bool``)."
    )

    def declare_exchange(name, type="topic"):
        """Declare a durable exchange (idempotent).  Returns an awaitable.

        @param type: ``"topic"``, ``"direct"`` or ``"fanout"``.
        The declaration is remembered and replayed after a reconnect.
        The awaitable fails with ``ValueError`` when the exchange exists
        with another type, and with ``snfd.bus.BusUnavailable`` when the
        broker could not be reached within the publish timeout (the
        declaration is still made once the bus connects).
        """

    def declare_queue(name, bindings=(), dead_letter=True):
        """Declare a durable queue and bind it (idempotent).

        @param bindings: pairs ``(exchange, routing_key_pattern)``; the
            pattern uses AMQP topic syntax (``*`` one word, ``#`` zero or
            more words).
        @param dead_letter: when true, messages the consumer rejects go to
            the queue ``<name>.dead`` (declared too) instead of being lost.
            They arrive there with exchange ``snfd.bus.DEAD_LETTER_EXCHANGE``,
            routing key ``<name>.dead``, their own headers and body, and an
            ``x-death`` header whose first entry has ``queue`` and
            ``reason`` (``"rejected"``), as RabbitMQ writes it.
        Returns an awaitable.  Remembered and replayed after a reconnect.
        Re-declaring adds bindings, never removes any.  Fails with
        ``snfd.bus.UnknownExchange`` when a binding names an exchange that
        does not exist, ``ValueError`` when the queue exists with the other
        ``dead_letter`` setting, ``BusUnavailable`` as above.
        """

    def publish(exchange, routing_key, body, headers=None,
                content_type="application/json"):
        """Publish one persistent message.

        Returns an awaitable that fires once the broker has confirmed the
        message (publisher confirms), and fails with
        ``snfd.bus.BusUnavailable`` if that did not happen within the
        bus's publish timeout (the message is then retried across
        reconnects until the timeout, never silently dropped), or at once
        when the bus was stopped.  A message that no binding matches is
        confirmed and dropped (AMQP's unroutable, non-mandatory message);
        an exchange that does not exist fails with
        ``snfd.bus.UnknownExchange``.

        @param body: ``bytes`` (anything else is a ``TypeError``).
        @param headers: a ``dict`` of ``str`` keys to ``str``/``int``/
            ``bool``/``bytes``/lists/dicts (what AMQP field tables carry).
        """

    def consume(queue, handler, prefetch=10):
        """Start delivering messages from ``queue`` to ``handler``.

        @param handler: ``handler(message: IMessage)`` returning ``None``,
            a Deferred or a coroutine.  When it succeeds the message is
            acknowledged; when it raises, the message is rejected without
            requeue (so it goes to the dead-letter queue).
        @param prefetch: at most this many messages are being handled at
            once (``>= 1``).
        @return: an ``IConsumer``, at once; the subscription itself is made
            in the background.  Consumers survive reconnects.  A queue
            that does not exist yet is waited for (retried with backoff).
            Competing consumers of one queue share its messages.
        """

    def start():
        """Connect (in the background; returns at once or an awaitable)."""

    def stop():
        """Stop consumers, wait for in-flight handlers, disconnect.
        Returns an awaitable."""


class IConsumer(Interface):
    """A running subscription to one queue."""

    queue = Attribute("The queue name (``str``).")

    def stop():
        """Stop receiving; returns an awaitable firing after in-flight
        handlers have ended."""


class IBlockStore(Interface):
    """Content-addressed block storage, shared by every service of a node
    (provided by the storage service to those that require it).

    A block is at most ``block_size`` bytes and is named by the hex SHA-256
    of its content with trailing zero bytes stripped
    (``snfd.pithos.hashmap.block_hash``).  Stored blocks never change; a
    block is durable (on stable storage) before ``put`` returns.  The
    empty name (``EMPTY_HASH``, the all-zero block) is always present and
    costs no I/O.  Hashing and I/O run off the reactor thread.  Nothing
    above this contract assumes a filesystem.
    """

    block_size = Attribute("Largest block, in bytes (``int``; 4 MiB).")
    scan_resumable = Attribute(
        "Whether a ``scan`` cursor outlives the store object (``bool``): then"
        " it is a plain string that any store on the same blocks accepts, in"
        " another process or after a restart (the filesystem store's: the"
        " last name given, names ascending), so a long walk may record it"
        " and resume there.  Otherwise a walk interrupted starts again.")

    def put(blocks):
        """Store blocks (``bytes`` each, at most ``block_size``), writing
        only those absent.

        @return: an awaitable firing with their names (hex ``str``), in
            order, once every one is durable.  Blocks already present are
            refreshed (see ``missing``).
        """

    def get(name):
        """Read one block.

        @return: an awaitable firing with the block right-padded with zero
            bytes to ``block_size``.
        @raise KeyError: no block has that name.
        """

    def read(name, length):
        """Read the first ``length`` bytes (at most ``block_size``) of one
        block, for a reader that needs only those: a 4 KiB object reads
        4 KiB, not a padded block.

        @return: an awaitable firing with exactly ``length`` bytes (the
            block right-padded with zero bytes as far as needed).
        @raise KeyError: no block has that name.
        """

    def get_stored(name):
        """Read one block as it was stored, without padding (for a copy
        to another store: its trailing zero bytes are there only if they
        were given to ``put``).

        @return: an awaitable firing with at most ``block_size`` bytes.
        @raise KeyError: no block has that name.
        """

    def missing(names):
        """Which of ``names`` are absent, in the order given, without
        duplicates.  Present ones have their age reset, so a garbage
        collection sweep running within its grace period spares them.
        @return: an awaitable firing with a ``list`` of names.
        """

    def delete(names, older_than):
        """Remove the named blocks last stored or refreshed before the
        epoch time ``older_than``; others are left alone.
        @return: an awaitable firing with the names removed.
        """

    def scan(cursor, limit):
        """Page through every stored block name once, in the store's own
        order (a garbage collection streams the store: no sorted listing
        of every name is ever made).

        @param cursor: ``""`` to start, else the cursor the previous page
            returned.  A cursor is opaque; it may hold a listing open in
            this store object, and stays valid for at least ten minutes
            after its page (``ValueError`` when no longer valid: start
            again).
        @return: an awaitable firing with ``(names, cursor)``: at most
            ``limit`` names, and the cursor of the next page, or ``None``
            when the store has no more.  Blocks stored or removed during a
            scan may be listed or not.
        """


class IBlockFallback(IBlockStore):
    """A block store whose blocks are being moved from an older store,
    still read where it lacks a block (``[pithos] block_fallback``):
    ``missing`` answers for this store alone, so that writers store what
    it lacks here; a service about to reference blocks it did not upload
    (a volume cloned from an image) brings them over instead."""

    def bring(names):
        """Copy those of ``names`` that only the older store has into this
        one, each checked against its name (a block whose content does not
        match is not copied).
        @return: an awaitable firing with the names this store still
            lacks afterwards (in the older store neither, or not matching).
        """


class IBlockReferences(Interface):
    """Where services that keep their own references to blocks of the
    node's ``IBlockStore`` (volume maps) declare them, so that the storage
    service's garbage collection spares those blocks.  Provided by the
    storage service.

    The collection asks every holder once per run, before it marks the
    blocks no version references; a holder's answer may therefore be
    older than the deletions.  What keeps that safe is the block store's
    own rule, which every holder must follow: a holder refreshes the
    blocks it is about to reference (``IBlockStore.missing`` or ``put``)
    before it records the reference, and gives up when some are missing.
    A refreshed block outlives a collection already under way (its
    deletion spares blocks refreshed within the grace period).

    Every node that may lead the cluster must run the same holders: the
    collection spares only the references the leader's holders report.
    """

    def add_holder(name, referenced):
        """Register a holder.

        @param name: a short unique name (``"archip"``); registering a name
            again replaces its holder.
        @param referenced: a callable taking no argument and returning an
            awaitable firing with the ``set`` of block names (hex ``str``)
            the holder needs now.  A holder that fails makes the
            collection of that run delete nothing.
        """

    def remove_holder(name):
        """Forget the holder ``name`` (nothing happens when absent)."""


class IAuthenticator(Interface):
    """Token validation for every service (provided by the identity service,
    or by the node itself over HTTP when ``[node] identity_url`` names a
    remote one).  The web wrapper
    ``snfd.web.auth.TokenAuth`` calls it for every request that carries
    ``X-Auth-Token``.  Answers may be cached for a few seconds, but a
    renewal, revocation or deactivation made on any node of the cluster
    invalidates them everywhere before the change's call returns to its
    caller (within the time of one PostgreSQL NOTIFY round trip on the
    other nodes).
    """

    def authenticate(token):
        """Validate a user or component token.

        @param token: the token as the client sent it (``str``).
        @return: an awaitable firing with a ``snfd.web.auth.Principal``.
        @raise snfd.errors.Unauthorized: unknown, expired or revoked token
            ("Invalid token", "Authentication expired"), or the user is
            not active ("User inactive").  Never logs the token.
        """


class IQuotaHolder(Interface):
    """The commission protocol (Synnefo's quota holder), as services use it.

    In process when the identity service runs on the same node
    (``snfd.identity.quotaholder``), over HTTP with a component token
    otherwise (``snfd.quota.remote``); both pass the same contract tests.
    ``clientkey`` is the calling component's name: a component sees and
    resolves only its own commissions.  Provisions are
    ``snfd.quota.Provision`` values; ``source`` ``None`` means a project
    holding.
    """

    def register_resources(component, resources):
        """Create or update the component's resource definitions
        (``snfd.quota.Resource``); existing defaults set by an
        administrator are kept.  Idempotent.  Returns an awaitable."""

    def component_resources(component):
        """Awaitable firing with the component's resource definitions as
        they stand (``snfd.quota.Resource``, sorted by name): the defaults
        an administrator changed (``base_default`` for base projects,
        ``project_default`` for a new project's members) included."""

    def issue(clientkey, provisions, name="", force=False, auto_accept=False):
        """Issue one commission, all or nothing.

        Imports (``quantity >= 0``) raise ``usage_max`` and, unless
        ``force``, fail if it would exceed the limit; releases lower
        ``usage_min`` and fail if it would go below zero, even when forced.
        @return: an awaitable firing with the new serial (``int``),
            monotonically increasing.
        @raise snfd.quota.NoHoldingError, NoCapacityError, NoQuantityError:
            nothing was changed.
        """

    def resolve(clientkey, accept=(), reject=()):
        """Accept and reject pending commissions of ``clientkey``.

        @return: an awaitable firing with a ``snfd.quota.Resolution``
            (``accepted``, ``rejected``, ``failed`` as ``[(serial, fault)]``).
            A serial that is not pending, or listed in both, fails without
            affecting the others.
        """

    def pending(clientkey):
        """Awaitable firing with the sorted serials still pending for
        ``clientkey``."""

    def commission(clientkey, serial):
        """Awaitable firing with the pending ``snfd.quota.Commission``;
        raises ``snfd.errors.NotFound`` when it is not pending."""

    def quotas(holders=None, sources=None, resources=None):
        """Awaitable firing with the matching ``snfd.quota.Holding`` values
        (every holding when a filter is ``None``)."""


class IQuotaLedger(Interface):
    """A quota holder whose tables live in the caller's database: a
    service charges inside the very transaction that makes the change,
    instead of the commission round trips of ``IQuotaHolder`` (issue,
    change, record the decision, resolve).  The in-process holder provides
    it; the HTTP one cannot.
    """

    def charge_txn(txn, clientkey, provisions, name="", force=False):
        """Issue and accept one commission in ``txn`` (a database
        transaction of the node's ``IDatabase``).

        Checks as ``IQuotaHolder.issue`` does, then moves ``usage_min`` and
        ``usage_max`` together; the holdings stay locked until ``txn``
        ends, so a rollback undoes the charge with the change.
        @return: the serial logged for it (``int``), or ``None`` when the
            provisions sum to nothing.
        @raise snfd.quota.NoHoldingError, NoCapacityError, NoQuantityError:
            the caller's transaction must roll back.
        """

    def quotas_txn(txn, holders=None, sources=None, resources=None):
        """``IQuotaHolder.quotas`` read in ``txn``: the matching
        ``snfd.quota.Holding`` values, not locked."""

    def issue_txn(txn, clientkey, provisions, name="", force=False):
        """``IQuotaHolder.issue`` in ``txn``: the commission stays pending
        (``usage_max`` moved) until resolved; its serial (``int``).
        @raise snfd.quota.NoHoldingError, NoCapacityError, NoQuantityError:
            nothing issued; the caller's transaction must roll back.
        """

    def resolve_txn(txn, clientkey, accept=(), reject=()):
        """``IQuotaHolder.resolve`` in ``txn``: the ``Resolution`` (serials
        that cannot be resolved are listed as failed, not raised)."""


class IComputeBackends(Interface):
    """The compute service's registry of Ganeti clusters, for a plugin that
    brings its own cluster (the embedded default's simulated one)."""

    def register_backend(clustername, rapi_url, username, password, certificate,
                         hypervisor, disk_templates, events):
        """Add the cluster as a compute backend, or, when one by that name
        is registered, update its connection settings (RAPI URL,
        credentials, trusted certificate PEM, hypervisor, disk templates,
        ``events``: ``"watch"`` or ``"poll"``).  Returns an awaitable."""

    def seed_demo():
        """On a cloud without flavors, create a few small flavors and a
        small public system image, and on a cloud without a public network,
        a public network with a floating-IP pool and an IPv4 and an IPv6
        subnet, so that a new user can create a server at once; what exists
        is left alone (a second call creates nothing).  Returns an
        awaitable."""


class IAuthProvider(Interface):
    """A way to log in (local password, LDAP, trusted web-server headers).

    Providers are named in ``[identity] auth_providers``; the identity
    service asks each, in order, to authenticate a login attempt.  A
    provider proves *who* the person is; the identity service maps that
    to a user through the linked identities (``identity_auth_links``),
    creating the user on first login when the provider may create users.
    """

    name = Attribute("The provider's name (``str``): local, ldap, shibboleth.")

    creates_users = Attribute(
        "``True`` when a successful first login creates the user.")

    verified_email = Attribute(
        "``True`` when the emails the provider gives are verified, so the"
        " user skips email verification.")

    def authenticate(credentials):
        """Check one login attempt.

        @param credentials: a ``snfd.identity.providers.Credentials``
            (username, password, headers of the HTTP request, source address).
        @return: an awaitable firing with a
            ``snfd.identity.providers.ExternalIdentity`` (``identifier``,
            ``email``, ``first_name``, ``last_name``, ``info``), or ``None``
            when this provider does not handle these credentials.
        @raise snfd.identity.providers.LoginFailed: the provider handles
            them and they are wrong (counted by the login throttle).
        @raise snfd.identity.providers.ProviderUnavailable: the provider's
            backend (the LDAP server) cannot be reached.
        """


# -- the object store seam ----------------------------------------------------


@attrs.frozen
class Sharing:
    """The sharing set on one object's own path: who may read it, who may
    write it (write implies read).  Entries are user uuids,
    ``<owner uuid>:<group>`` or ``*`` (every user), kept as the object
    store keeps them: lowercased, without spaces, sorted, ``*`` absorbing
    the other entries of its list."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()

    @property
    def public(self) -> bool:
        """Whether every user may read the object (``*`` in ``read``)."""
        return "*" in self.read


@attrs.frozen
class StoredObject:
    """The current version of a file of the object store, as
    ``IObjectStore`` shows it.

    ``uuid`` names the object across its versions (a move keeps it, a copy
    gets a new one); ``serial`` names this version; ``hash`` is the Merkle
    root of its hashmap, ``checksum`` the MD5 of its content (hex; ``""``
    while unknown); ``type`` its content type; ``mtime`` the version's time
    (epoch seconds).  ``attributes`` are its attributes in the domain the
    call asked for (``{}`` when it asked for none); ``sharing`` is the
    sharing set on the object's own path, empty when there is none (then a
    directory object above it, its container or its account may share it).
    """

    account: str
    container: str
    name: str
    serial: int
    uuid: str
    hash: str
    checksum: str
    size: int
    type: str
    mtime: float
    attributes: dict[str, str] = attrs.Factory(dict)
    sharing: Sharing = Sharing()

    @property
    def path(self) -> str:
        """``<account>/<container>/<name>``."""
        return f"{self.account}/{self.container}/{self.name}"


@attrs.frozen
class ObjectHashmap:
    """The content of one version (``serial``): ``size`` bytes in blocks of
    the store's ``block_size``, named in order by ``hashes`` (names of the
    node's ``IBlockStore``; the last block may be short)."""

    serial: int
    size: int
    hashes: tuple[str, ...]


class IObjectStore(Interface):
    """What other services (images now; volumes and snapshots later) may do
    with the files of the object store (Pithos).  Provided by the storage
    service; nothing outside it reads its tables.

    Every method acts as ``user`` (a user uuid) and is checked exactly as
    the object store's own API checks that user: the account's owner may
    do anything; anyone else what the closest sharing of the path grants
    (the object's own, else that of a directory object above it, of the
    container, of the account), through an entry naming the user, one of
    their groups, ``*`` or, for the reads that take one, ``project``: the
    project the caller acts in (its token's scope; ``None``, the default,
    when no token is behind the call).  An object the user may not read raises
    ``snfd.errors.NotFound``, exactly as one that does not exist (or is
    deleted); one the user may read but not change raises
    ``snfd.errors.Forbidden``.  Names are checked as the API checks them
    (``snfd.errors.BadRequest``).  Every method returns an awaitable.

    A change of content or attributes makes a new version of the object,
    with the statistics, versioning, quota and garbage-collection rules of
    the object store; a change of sharing alone does not.

    Attribute domains.  Besides the metadata the object store's API shows
    (its own domain, ``pithos``, which this seam neither reads nor
    writes), an object holds attributes in named domains (images keep
    theirs in ``plankton``).  They belong to the object, not to one
    upload: every new version keeps them (new content, a metadata change
    through the API, a move); a copy takes its source's; deleting the
    object drops them.  A domain holds at most 32 keys per object; keys
    are non-empty text, values text, neither with NUL characters
    (``BadRequest``).  A domain name that is empty, ``pithos`` or holds a
    NUL is a ``ValueError``.
    """

    block_size = Attribute(
        "The size of a full block of a hashmap, in bytes (``int``; that of the"
        " node's ``IBlockStore``).")

    def object_at(user, account, container, name, domain=None, project=None):
        """The current version of the object ``<account>/<container>/<name>``.

        @param domain: the domain whose attributes the result carries
            (``None``: none).
        @return: an awaitable firing with a ``StoredObject``.
        @raise snfd.errors.NotFound: no such object, or ``user`` may not
            read it.
        """

    def object_by_uuid(user, uuid, domain=None, project=None):
        """The current version of the object whose uuid is ``uuid``,
        wherever it is now (as ``object_at``; ``NotFound`` likewise)."""

    def hashmap(user, account, container, name, project=None):
        """The hashmap of the object's current version.

        @return: an awaitable firing with an ``ObjectHashmap``.
        @raise snfd.errors.NotFound: as ``object_at``.
        """

    def create_from_hashmap(user, account, container, name, size, hashes,
                            content_type="application/octet-stream"):
        """Make a new version of the object (creating it if absent) whose
        content is ``size`` bytes in the blocks ``hashes`` (names of blocks
        already in the block store; nothing is copied).  Its other metadata,
        its attributes and its sharing stay.  Needs write permission on the
        path; the container is created when it is absent and ``user`` owns
        the account.

        @return: an awaitable firing with the new ``StoredObject`` (no
            attributes).
        @raise snfd.errors.Conflict: the block store lacks blocks of
            ``hashes`` (``snfd.pithos.backend.MissingBlocks``, listing them
            in ``hashes``); nothing was stored.
        @raise snfd.errors.BadRequest: ``size`` does not fit ``hashes`` and
            ``block_size``.
        @raise snfd.errors.OverLimit: a container or account quota would be
            exceeded; nothing was stored.
        """

    def store_file(user, account, container, name, source,
                   content_type="application/octet-stream"):
        """Store the local file ``source`` (a ``pathlib.Path``) as a new
        version of the object, as ``create_from_hashmap`` does with the
        blocks of the file: the file is read off the reactor, a block at a
        time, and blocks already stored are not written again.  For
        operator tools (``snf-manage image-register``, the embedded
        default's demo image): the stored bytes are operator content,
        charged to nobody's quota (container quotas still apply).

        @return: an awaitable firing with the new ``StoredObject``.
        @raise OSError: the file cannot be read.
        """

    def find(user, domain, key, project=None):
        """The current objects ``user`` may read that have the attribute
        ``key`` in ``domain`` (any value): the user's own, and those shared
        with the user, with ``project`` or with everybody.

        @return: an awaitable firing with a ``list`` of ``StoredObject``,
            ordered by path, each with its attributes in ``domain`` and its
            own sharing.
        """

    def set_attributes(user, account, container, name, domain, attributes,
                       replace=False, sharing=None):
        """Change the object's attributes in ``domain``: ``attributes`` (a
        mapping of text to text) are merged into them, an empty value
        deleting its key; with ``replace`` they become the whole domain
        (``{}`` deletes every key).  Needs write permission; makes a new
        version, in the same change as a ``sharing`` given (``Sharing``,
        owner only, as in ``set_sharing``).

        @return: an awaitable firing with the new ``StoredObject`` with its
            attributes in ``domain``.
        """

    def delete(user, account, container, name):
        """Delete the object, as the object store's API does (a deletion
        marker where the container keeps versions; its bytes leave the
        owner's quota).  Needs write permission.

        @return: an awaitable firing with ``None``.
        @raise snfd.errors.NotFound: as ``object_at``.
        """

    def set_sharing(user, account, container, name, sharing):
        """Make ``sharing`` (a ``Sharing``; ``Sharing()`` for none) the
        object's own sharing.  Owner only (``Forbidden`` for anyone else
        who may write it); entries are normalised as ``Sharing`` says and
        a malformed one is a ``BadRequest``.

        @return: an awaitable firing with ``None``.
        """


@attrs.frozen
class VolumeInfo:
    """What ``IVolumes.info`` says of a volume or snapshot: ``size`` bytes;
    ``read_only`` for snapshots and images; ``epoch`` the map's epoch;
    how many of its objects the volume owns (copied up or written),
    shares with images and snapshots, and are zero (no data)."""

    name: str
    size: int
    read_only: bool
    epoch: int
    owned: int
    shared: int
    zero: int


class IVolumes(Interface):
    """Thin block volumes (Archipelago), as other services use them: the
    compute service makes and snapshots the volumes of its servers here,
    and Ganeti's ExtStorage provider attaches them over NBD.  Provided by
    the volume service (``snfd.archip``).

    A volume is a map of ``block_size`` objects; a clone names the blocks
    of its origin (a Pithos hashmap, or a snapshot) and copies nothing; a
    write copies only the object it changes.  Names are 1 to 128 letters,
    digits, ``.``, ``_`` or ``-``, not starting with punctuation
    (``ValueError`` otherwise).  Sizes are bytes.  Every method returns an
    awaitable; ``KeyError`` means no such volume, ``FileExistsError`` that
    the name is taken, ``snfd.archip.io.VolumeBusy`` that it is open over
    NBD.
    """

    block_size = Attribute("Bytes per object (``int``; the block store's).")

    nbd = Attribute(
        "Where clients reach the NBD server that exports every volume by name:"
        " ``(host, port, tls)``; ``tls``: it requires STARTTLS.")

    def export_hashmap(name, hashes, image_size):
        """A read-only map ``name`` of the ``image_size`` bytes named by
        ``hashes`` (a Pithos hashmap), for reading over NBD (an image an OS
        definition writes onto a disk).  Nothing is copied; the blocks are
        refreshed first (``LookupError`` when some are gone).  An existing
        ``name`` is replaced."""

    def create(name, size):
        """A new volume of ``size`` bytes of zeros (no data stored)."""

    def clone_hashmap(name, hashes, image_size, size=None):
        """A new volume holding the ``image_size`` bytes named by
        ``hashes`` (a Pithos hashmap of this node's block store), grown
        with zeros to ``size`` (default: ``image_size``).  No data is
        copied; the blocks are refreshed first (``IBlockReferences``), and
        ``LookupError`` is raised, with nothing made, when some are gone.
        """

    def clone(name, origin, size=None):
        """A new volume with the bytes of the snapshot ``origin`` (grown
        with zeros to ``size``); ``ValueError`` when ``origin`` is a live
        volume or larger than ``size``."""

    def snapshot(name, snapshot):
        """Freeze volume ``name`` as the new read-only ``snapshot`` (works
        while the volume is open; later writes copy up).  Fires with its
        ``VolumeInfo``."""

    def hashmap(name):
        """The content of snapshot ``name`` as a Pithos hashmap: stores each
        object the snapshot owns as a content-addressed block (shared
        blocks already are) and fires with ``(size, hashes)``, what
        ``IObjectStore.create_from_hashmap`` takes.  ``ValueError`` for a
        live volume (its content could change while being read)."""

    def grow(name, size):
        """Make volume ``name`` ``size`` bytes (added bytes read as zeros);
        ``ValueError`` when smaller than it is.  Works while open."""

    def remove(name):
        """Delete a volume or snapshot and the objects only it owned."""

    def info(name):
        """Fires with the ``VolumeInfo`` of ``name``."""
