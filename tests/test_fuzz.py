"""Random requests to every API surface of a running stack (issue 12,
"Also"): identity (Keystone, sign-up), the account API, the object store
(Swift/Pithos, public links, Swift auth), compute (Nova) and images
(Glance v2, Plankton).  Every answer is a 2xx, 3xx or 4xx, never a 5xx,
and every request gets a complete answer (``HANG_AFTER`` seconds bound
a hang, they are not a speed requirement).

The stack is ``snfd.testing.compute.compute_stack``: the node as the
daemon builds it, served on a real port by the node's own ``Site``, with a
simulated Ganeti cluster, flavors and a public image.  Requests are
written as raw bytes (``snfd.testing.fuzz``), so odd header names and
values reach the server's parser as sent.  Hypothesis runs in a worker
thread and hands each request to the reactor (``fuzz.Bridge``); examples
are derandomized, so a run is reproducible, and every bad answer is
listed in the failure message (even one hypothesis could not reproduce
while shrinking: the node keeps state between examples).

``KNOWN_5XX`` lists inputs known to fail (by issue and finding): they are
not sent.  Remove an entry once its finding is fixed, and the test checks
those inputs again.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from snfd.testing import fuzz
from snfd.testing.compute import compute_stack
from snfd.testing.fuzz import Req

EXAMPLES = int(os.environ.get("SNFD_FUZZ_EXAMPLES", "200"))
"""Examples per surface (the object store gets twice as many)."""

# (issue and finding, what fails, predicate on the Req): inputs known to
# get a 5xx or no answer, not sent until their finding is fixed.
KNOWN_5XX: list[tuple[str, str, Callable[[Req], bool]]] = []

OBJECT_HEADERS = [
    "Content-Type", "Content-Encoding", "Content-Disposition", "Content-Range", "Content-MD5",
    "ETag", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
    "If-Range", "Range", "X-Object-Manifest", "X-Object-Sharing", "X-Object-Public",
    "X-Object-Bytes", "X-Object-Version", "X-Copy-From", "X-Move-From", "X-Source-Account",
    "X-Source-Version", "X-Source-Object", "X-Fresh-Metadata", "X-Static-Large-Object",
    "Destination", "Destination-Account", "X-Container-Read", "X-Container-Write",
    "X-Container-Policy-Quota", "X-Container-Policy-Versioning",
    "X-Container-Policy-Project", "X-Account-Policy-Quota", "X-Versions-Location",
    "X-Account-Access-Control", "X-Timestamp", "X-Delete-At", "X-Delete-After",
    "Accept", "Accept-Encoding", "Cookie", "Authorization", "X-Auth-Token",
    "X-Object-Data", "Origin", "X-Forwarded-For",
]
META_PREFIXES = [
    "X-Object-Meta-", "X-Container-Meta-", "X-Account-Meta-", "X-Account-Group-",
    "X-Remove-Object-Meta-", "X-Remove-Container-Meta-", "X-Remove-Account-Meta-",
    "X-Image-Meta-", "X-Image-Meta-Property-", "X-Subject-", "X-",
]
IMAGE_HEADERS = [
    "X-Image-Meta-Name", "X-Image-Meta-Location", "X-Image-Meta-Disk-Format",
    "X-Image-Meta-Container-Format", "X-Image-Meta-Is-Public", "X-Image-Meta-Owner",
    "X-Image-Meta-Size", "X-Image-Meta-Checksum", "X-Image-Meta-Id", "X-Image-Meta-Status",
    "X-Image-Meta-Store", "X-Image-Meta-Property-OS", "Content-Type",
]
PITHOS_QUERY = ["format", "limit", "marker", "end_marker", "prefix", "delimiter", "path",
                "meta", "until", "shared", "public", "version", "hashmap", "update",
                "ignore_content_type", "boundary", "name", "multipart-manifest", "sharing",
                "detail", "temp_url_sig", "temp_url_expires"]
COMPUTE_QUERY = ["name", "changes-since", "status", "image", "flavor", "limit", "marker",
                 "detail", "ip", "ip6", "tag", "tags", "not-tags", "sort_key", "sort_dir",
                 "all_tenants", "reservation_id", "minDisk", "minRam"]
IMAGE_QUERY = ["name", "status", "visibility", "owner", "limit", "marker", "sort_key",
               "sort_dir", "sort", "member_status", "tag", "size_min", "size_max",
               "container_format", "disk_format", "is_public", "os_hidden"]
IDENTITY_QUERY = ["name", "enabled", "domain_id", "nocatalog", "allow_expired", "user_id",
                  "parent_id", "limit", "marker", "mode", "state", "owner", "project"]
METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "MOVE", "PATCH", "OPTIONS"]


Route = st.SearchStrategy[tuple[str, str]]


def route(method: str, *parts: str | st.SearchStrategy[str]) -> Route:
    """``(method, path)``: the path joins ``parts``, text or strategies."""
    drawn = [st.just(p) if isinstance(p, str) else p for p in parts]
    return st.tuples(st.just(method), st.tuples(*drawn).map("".join))


def deliberate(answer: fuzz.Answer) -> bool:
    """A 501 fault the API declares for what it does not offer (Glance v2
    writes, volumes, server statistics, unsupported actions: each
    documented): an answer, not a failure."""
    return answer.status == 501 and answer.body.startswith(b'{"notImplemented"')


class FuzzTests(unittest.TestCase):
    """Random requests, every surface: 2xx-4xx, never a 5xx or a hang."""

    timeout = 900

    async def setUp(self) -> None:  # type: ignore[override]
        from twisted.internet import reactor

        self.reactor = reactor
        stack = self.stack = await compute_stack(self)
        self.port = int(stack.url.rsplit(":", 1)[1])
        self.alice, self.alice_token = await stack.user("alice")
        self.bob, self.bob_token = await stack.user("bob")
        self.image_id = stack.image.id
        self.flavor_id = stack.flavors["small"].id
        self.objects = ["o", "dir/o", "pub", "shared", "images/x"]
        for container in ("c", "d"):
            await self._ok("PUT", f"/object-store/v1/{self.alice}/{container}")
        for name in self.objects:
            await self._ok("PUT", f"/object-store/v1/{self.alice}/c/{name}", b"0123456789" * 50)
        await self._ok("POST", f"/object-store/v1/{self.alice}/c/pub",
                       headers=[(b"X-Object-Public", b"true")])
        await self._ok("POST", f"/object-store/v1/{self.alice}/c/shared",
                       headers=[(b"X-Object-Sharing", f"write={self.bob}".encode())])
        answer = await self._ok("GET", f"/object-store/v1/{self.alice}/c/o?hashmap&format=json")
        self.hashes = json.loads(answer.body)["hashes"]
        answer = await self._ok("HEAD", f"/object-store/v1/{self.alice}/c/pub")
        self.public = [line.split(b"/public/", 1)[1].decode() for line
                       in answer.head.split(b"\r\n")
                       if line.lower().startswith(b"x-object-public:")]
        answer = await self._ok("POST", "/compute/v2.0/servers", json.dumps({"server": {
            "name": "vm", "flavorRef": self.flavor_id, "imageRef": self.image_id}}).encode())
        self.server_id = str(json.loads(answer.body)["server"]["id"])
        answer = await self._ok("POST", "/compute/v2.0/os-keypairs", json.dumps(
            {"keypair": {"name": "kp"}}).encode())

    async def _ok(self, method: str, path: str, body: bytes = b"",
                  headers: list[tuple[bytes, bytes]] | None = None) -> fuzz.Answer:
        hdrs = [(b"X-Auth-Token", self.alice_token.encode()), *(headers or [])]
        answer = await fuzz.send(self.reactor, self.port, Req(method, path, tuple(hdrs), body))
        self.assertLess(answer.status, 300, (method, path, answer))
        return answer

    # -- the property --------------------------------------------------------------

    def fuzz(self, requests: st.SearchStrategy[Req], examples: int = EXAMPLES,
             ) -> defer.Deferred[None]:
        """Send ``examples`` requests drawn from ``requests`` (hypothesis in
        a worker thread, see the module docstring); fail listing every
        answer of 500 or more, every unparsable answer and every hang."""
        bridge = fuzz.Bridge(self.reactor, self.port)
        # Failures by status and method: the first seen and the last (the
        # smallest, once hypothesis has shrunk it).
        bad: dict[tuple[Any, str], list[str]] = {}
        tracebacks: dict[str, None] = {}
        statuses: Counter[int] = Counter()
        samples: dict[int, list[str]] = {}

        def observe(event: dict[str, Any]) -> None:
            failure = event.get("log_failure")
            if failure is not None:
                tracebacks[failure.getTraceback()] = None

        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), print_blob=False)
        @given(requests)
        def answers_below_500(req: Req) -> None:
            for _finding, _, known in KNOWN_5XX:
                if known(req):
                    return
            try:
                answer = bridge.send(req)
            except fuzz.Hang:
                # Shrinking repeats the failing input: later hangs need
                # not wait the full bound to show.
                bridge.timeout = 5.0
                text = f"HANG (no answer in {fuzz.HANG_AFTER}s)\n  {req.brief()}"
                bad.setdefault(("hang", req.method), []).append(text)
                raise AssertionError(text) from None
            statuses[answer.status] += 1
            samples.setdefault(answer.status, []).append(f"{req.method} {req.target[:100]}")
            if not answer.complete or not (100 <= answer.status < 500 or deliberate(answer)):
                text = (f"{answer.status or 'NO ANSWER'}"
                        f"{'' if answer.complete else ' (body cut short)'}\n  {req.brief()}\n"
                        f"  answer: {answer.head[:300]!r}\n  {answer.body[:300]!r}")
                bad.setdefault((answer.status, req.method), []).append(text)
                raise AssertionError(text)

        globalLogPublisher.addObserver(observe)

        def report(result: Any) -> Any:
            globalLogPublisher.removeObserver(observe)
            # The node's 500s are logged: their tracebacks go in the message.
            self.flushLoggedErrors()
            if bad:
                seen = "\n\n".join(t for texts in bad.values()
                                    for t in dict.fromkeys([texts[0], texts[-1]]))
                logged = "\n".join(tracebacks)[:20000]
                self.fail(f"{len(bad)} kinds of bad answer (issue 12):\n\n{seen}\n\n"
                          f"node tracebacks:\n{logged}\n\nhypothesis: {result}")
            if isinstance(result, Failure):
                return result
            if os.environ.get("SNFD_FUZZ_STATS"):
                print(f"{self.id()}: {sorted(statuses.items())}")
                for status, seen in sorted(samples.items()):
                    print(f"  {status}: {seen[:int(os.environ['SNFD_FUZZ_STATS'])]}")
            # Random input that never passes the first checks tests nothing.
            self.assertTrue(sum(n for s, n in statuses.items() if 200 <= s < 300) >= 5,
                            f"hardly any request succeeded: {sorted(statuses.items())}")
            return result

        return fuzz.in_thread(self.reactor, answers_below_500).addBoth(report)

    # -- pieces of requests -----------------------------------------------------------

    def tokens(self) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
        """Alice's token most often (three times in five), else Bob's,
        none, or junk."""
        def header(token: str) -> list[tuple[bytes, bytes]]:
            return [(b"X-Auth-Token", token.encode())]

        alice = st.just(header(self.alice_token))
        return st.one_of(alice, alice, alice, alice, alice, alice,
                         st.just(header(self.bob_token)),
                         st.text(fuzz.TCHAR, max_size=70).map(header), st.just([]),
                         fuzz.header_values().map(lambda v: [(b"X-Auth-Token", v)]))

    def requests(self, routes: list[Route], methods: list[str], paths: st.SearchStrategy[str],
                 queries: list[str], headers: st.SearchStrategy[list[tuple[bytes, bytes]]],
                 bodies: st.SearchStrategy[bytes]) -> st.SearchStrategy[Req]:
        """Requests to one of ``routes`` (three times in four: the routes the
        API has, with random ids) or with any of ``methods`` to any of
        ``paths``; a query over ``queries`` (or random keys) half the
        time, a token, ``headers`` and a body."""
        known = st.one_of(*routes)
        anything = st.tuples(st.sampled_from(methods), paths)
        query = st.one_of(st.just(""), fuzz.query_strings(queries).map(lambda q: "?" + q))
        return st.builds(
            lambda route, q, auth, h, b: Req(route[0], route[1] + q, tuple(auth + h), b),
            st.one_of(known, known, known, anything), query, self.tokens(), headers, bodies)

    def ids(self, *known: str) -> st.SearchStrategy[str]:
        """A path segment: one of ``known`` (three times in four) or a
        random name, encoded."""
        random = fuzz.tricky_names().flatmap(fuzz.encoded)
        if not known:
            return random
        return st.one_of(st.sampled_from(list(known)), st.sampled_from(list(known)),
                         st.sampled_from(list(known)), random)

    # -- the surfaces -----------------------------------------------------------------

    def test_identity(self) -> defer.Deferred[None]:
        """Keystone v3 and v2.0, sign-up and Swift auth: token bodies,
        random paths, queries and headers."""
        alice = self.alice
        v3_auth = {"auth": {
            "identity": {"methods": ["password", "token"],
                         "password": {"user": {"name": "alice@example.org", "id": alice,
                                               "password": "secret",
                                               "domain": {"id": "default", "name": "Default"}}},
                         "token": {"id": self.alice_token}},
            "scope": {"project": {"id": alice, "name": "alice",
                                  "domain": {"id": "default"}},
                      "domain": {"id": "default"}, "system": {"all": True}}}}
        v2_auth = {"auth": {"passwordCredentials": {"username": "alice@example.org",
                                                     "password": "secret"},
                            "token": {"id": self.alice_token}, "tenantId": alice,
                            "tenantName": "alice"}}
        signup = {"email": "eve@example.org", "first_name": "Eve", "last_name": "E",
                  "password": "long enough password", "auth": "code"}
        paths = st.one_of(
            st.sampled_from(["/identity", "/identity/", "/identity/v3", "/identity/v2.0",
                             "/identity/v3/auth/tokens", "/identity/v3/auth/projects",
                             "/identity/v3/auth/catalog", "/identity/v3/auth/domains",
                             "/identity/v3/domains", "/identity/v3/users",
                             "/identity/v3/projects", "/identity/v2.0/tokens",
                             "/identity/v2.0/tenants", "/ui/signup", "/ui/activate",
                             "/ui/login/shibboleth", "/auth/v1.0", "/auth", "/info",
                             "/_health", "/_cluster", "/metrics", "/"]),
            st.tuples(st.sampled_from(["/identity/v3/domains/", "/identity/v3/users/",
                                       "/identity/v3/projects/", "/identity/"]),
                      self.ids(alice, "default"),
                      st.sampled_from(["", "/projects", "/"])).map("".join),
        )
        names = fuzz.header_names(
            ["X-Subject-Token", "X-Auth-User", "X-Auth-Key", "X-Storage-User",
             "X-Storage-Pass", "Content-Type", "Accept", "X-Forwarded-For", "Eppn",
             "Shib-Identity-Provider", "Remote-User", "OpenStack-API-Version"],
            ["X-", "Shib-"])
        special = st.tuples(
            st.sampled_from([b"X-Subject-Token", b"X-Auth-User", b"X-Auth-Key"]),
            st.sampled_from([self.alice_token, self.bob_token, "alice@example.org",
                             "secret", alice]).map(str.encode))
        headers = st.lists(st.one_of(st.tuples(names, fuzz.header_values()), special),
                           max_size=6)
        bodies = st.one_of(st.just(b""), fuzz.json_bodies(v3_auth, v2_auth, signup))
        v3 = "/identity/v3"
        uid, pid = self.ids(alice, self.bob), self.ids(alice)
        routes = [
            route("POST", v3, "/auth/tokens"), route("POST", v3, "/auth/tokens"),
            *(route(m, v3, "/auth/tokens") for m in ("GET", "HEAD", "DELETE")),
            *(route("GET", v3, p) for p in ("/auth/projects", "/auth/catalog",
                                            "/auth/domains", "/domains", "/users",
                                            "/projects", "")),
            route("GET", v3, "/domains/", self.ids("default")),
            route("GET", v3, "/users/", uid), route("GET", v3, "/users/", uid, "/projects"),
            route("GET", v3, "/projects/", pid), route("GET", "/identity"),
            route("POST", "/identity/v2.0/tokens"), route("POST", "/identity/v2.0/tokens"),
            route("GET", "/identity/v2.0/tenants"), route("POST", "/ui/signup"),
            route("GET", "/ui/activate"), route("POST", "/ui/activate"),
            route("GET", "/auth/v1.0"), route("GET", "/auth/v1.0"),
            route("GET", "/ui/login/shibboleth"),
        ]
        methods = ["GET", "HEAD", "POST", "DELETE", "PUT", "PATCH"]
        return self.fuzz(self.requests(routes, methods, paths, IDENTITY_QUERY, headers,
                                       bodies))

    def test_account(self) -> defer.Deferred[None]:
        """The account API (quotas, commissions, projects, memberships):
        random bodies, ids, queries and headers."""
        alice = self.alice
        templates = [
            {"provisions": [{"holder": f"user:{alice}", "source": f"project:{alice}",
                             "resource": "pithos.diskspace", "quantity": 1}],
             "name": "c", "force": False, "auto_accept": True},
            {"accept": [1], "reject": [2]}, {"accept": {}}, {"reject": {}},
            {"uuids": [alice], "displaynames": ["alice@example.org"]},
            {"resources": {"x.y": {"desc": "d", "unit": "bytes", "service_type": "t",
                                   "service_origin": "o", "ui_visible": True}}},
            {"feedback_msg": "hi", "feedback_data": "x"}, {"project_id": alice},
            {"name": "p.example.org", "owner": alice, "homepage": "h", "description": "d",
             "comments": "c", "start_date": "2030-01-01T00:00:00Z",
             "end_date": "2031-01-01T00:00:00Z", "join_policy": "auto",
             "leave_policy": "auto", "max_members": 10,
             "resources": {"cyclades.vm": {"project_capacity": 1, "member_capacity": 1}}},
            {"project": alice}, {"join": {"reason": "r"}}, {"approve": {"reason": "r"}},
            {"suspend": {}}, {"leave": {}},
        ]
        tails = st.one_of(
            st.sampled_from(["resources", "quotas", "service_quotas", "service_project_quotas",
                             "commissions", "commissions/action", "user_catalogs",
                             "service/user_catalogs", "service/resources", "feedback",
                             "myaccount/default_project", "projects", "projects/memberships",
                             f"projects/{alice}", f"projects/{alice}/action"]),
            st.tuples(st.sampled_from(["commissions/", "projects/", "projects/memberships/"]),
                      st.one_of(st.integers(-1, 2 ** 70).map(str), self.ids(alice)),
                      st.sampled_from(["", "/action"])).map("".join),
        )
        paths = tails.map(lambda t: "/account/v1.0/" + t)
        headers = fuzz.header_lists(fuzz.header_names(["Content-Type", "Accept"], ["X-"]), 3)
        bodies = st.one_of(st.just(b""), fuzz.json_bodies(*templates))
        a = "/account/v1.0/"
        serial = st.one_of(st.integers(0, 5).map(str), st.integers(-1, 2 ** 70).map(str),
                           self.ids())
        pid = self.ids(alice, self.bob)
        routes = [
            *(route("GET", a, p) for p in ("resources", "quotas", "service_quotas",
                                           "service_project_quotas", "commissions",
                                           "projects", "projects/memberships")),
            *(route("POST", a, p) for p in ("commissions", "commissions/action",
                                            "user_catalogs", "service/user_catalogs",
                                            "service/resources", "feedback",
                                            "myaccount/default_project", "projects",
                                            "projects/memberships", "projects")),
            route("GET", a, "commissions/", serial),
            route("POST", a, "commissions/", serial, "/action"),
            route("GET", a, "projects/memberships/", serial),
            route("POST", a, "projects/memberships/", serial, "/action"),
            route("GET", a, "projects/", pid), route("PUT", a, "projects/", pid),
            route("POST", a, "projects/", pid, "/action"),
        ]
        methods = ["GET", "POST", "PUT", "DELETE", "HEAD"]
        return self.fuzz(self.requests(routes, methods, paths,
                                       ["mode", "state", "owner", "name", "project",
                                        "resource"], headers, bodies))

    def test_object_store(self) -> defer.Deferred[None]:
        """Swift/Pithos: random account, container and object names, meta
        header names and values, Range and other headers, queries,
        bodies and hashmaps, COPY/MOVE destinations, public links."""
        alice, bob = self.alice, self.bob
        accounts = self.ids(alice, alice, alice, bob)
        containers = self.ids("c", "c", "d", "new")
        objects = st.one_of(st.sampled_from(self.objects), st.sampled_from(self.objects),
                            fuzz.tricky_names()).flatmap(fuzz.encoded)
        base = "/object-store/v1"
        paths = st.one_of(
            st.sampled_from([base, base + "/", "/object-store", "/object-store/v1/info",
                             "/object-store/info"]),
            accounts.map(lambda a: f"{base}/{a}"),
            st.tuples(accounts, containers).map(lambda t: f"{base}/{t[0]}/{t[1]}"),
            st.tuples(accounts, containers, objects).map(
                lambda t: f"{base}/{t[0]}/{t[1]}/{t[2]}"),
            st.tuples(st.just(alice), containers, objects).map(
                lambda t: f"{base}/{t[0]}/{t[1]}/{t[2]}"),
            st.tuples(st.just(alice), containers, objects).map(
                lambda t: f"{base}/{t[0]}/{t[1]}/{t[2]}"),
            st.one_of(st.sampled_from(self.public or ["x"]), self.ids()).map(
                lambda t: f"/public/{t}"),
        )
        names = fuzz.header_names(OBJECT_HEADERS, META_PREFIXES)
        path_values = st.tuples(st.sampled_from(["", "/"]), containers, objects).map(
            lambda t: f"{t[0]}{t[1]}/{t[2]}".encode())
        special = st.one_of(
            st.tuples(st.just(b"Range"), fuzz.range_values()),
            st.tuples(st.sampled_from([b"Destination", b"X-Copy-From", b"X-Move-From",
                                       b"X-Object-Manifest"]), path_values),
            st.tuples(st.sampled_from([b"Destination-Account", b"X-Source-Account"]),
                      st.sampled_from([alice, bob, "x"]).map(str.encode)),
            st.tuples(st.just(b"Content-Range"), st.one_of(
                fuzz.range_values().map(lambda r: r.replace(b"=", b" ", 1)),
                st.tuples(st.integers(-1, 2000), st.integers(-1, 2000),
                          st.one_of(st.just("*"), st.integers(-1, 3000).map(str))).map(
                    lambda t: f"bytes {t[0]}-{t[1]}/{t[2]}".encode()))),
            st.tuples(st.just(b"X-Object-Sharing"), st.one_of(
                fuzz.header_values(),
                st.lists(st.sampled_from([f"read={bob}", f"write={bob}", "read=*",
                                          f"read={alice}:g", "write=", "read=a,b"]),
                         max_size=3).map(lambda s: ";".join(s).encode()))),
        )
        headers = st.lists(st.one_of(st.tuples(names, fuzz.header_values()), special),
                           max_size=6)
        bodies = st.one_of(st.just(b""), st.binary(max_size=2000),
                           st.integers(0, fuzz.MAX_BODY).map(lambda n: b"z" * n),
                           fuzz.hashmaps(self.hashes))
        account = st.tuples(st.just(f"{base}/"), accounts).map("".join)
        container = st.tuples(account, st.just("/"), containers).map("".join)
        obj = st.tuples(container, st.just("/"), objects).map("".join)
        public = st.tuples(st.just("/public/"), st.one_of(
            st.sampled_from(self.public or ["x"]), self.ids())).map("".join)
        routes = [
            *(route(m, account) for m in ("GET", "HEAD", "POST")),
            *(route(m, container) for m in ("GET", "HEAD", "PUT", "POST", "DELETE")),
            *(route(m, obj) for m in ("GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "MOVE",
                                      "GET", "PUT", "POST")),
            route("GET", public), route("HEAD", public),
        ]
        return self.fuzz(self.requests(routes, METHODS, paths, PITHOS_QUERY, headers, bodies),
                         EXAMPLES * 2)

    def test_compute(self) -> defer.Deferred[None]:
        """Nova: server bodies, actions, metadata, tags, keypairs, random
        ids, filters (``?name=`` is a regular expression) and headers."""
        flavor, image = self.flavor_id, self.image_id
        server = {"server": {"name": "vm", "flavorRef": flavor, "imageRef": image,
                             "metadata": {"k": "v"}, "key_name": "kp", "user_data": "aGk=",
                             "personality": [{"path": "/etc/x", "contents": "aGk=",
                                              "owner": "root", "group": "root",
                                              "mode": 420}],
                             "networks": [{"uuid": "x", "fixed_ip": "1.2.3.4"}],
                             "tags": ["t"], "project": self.alice,
                             "SNF:port_forwarding": {}}}
        templates = [
            server, {"server": {"name": "renamed"}},
            {"reboot": {"type": "SOFT"}}, {"start": {}}, {"shutdown": {}},
            {"resize": {"flavorRef": flavor}}, {"rebuild": {"imageRef": image}},
            {"changePassword": {"adminPass": "p"}}, {"console": {"type": "vnc"}},
            {"os-getConsoleOutput": {"length": 10}}, {"reassign": {"project": self.alice}},
            {"addFloatingIp": {"address": "1.2.3.4"}}, {"createImage": {"name": "i"}},
            {"metadata": {"k": "v"}}, {"meta": {"k": "v"}}, {"tags": ["a", "b"]},
            {"keypair": {"name": "kp2", "public_key": "ssh-rsa AAAA x"}},
        ]
        sid = self.ids(self.server_id, self.server_id, "0", "-1")
        subs = st.sampled_from(["", "/action", "/ips", "/ips/public", "/metadata",
                                "/metadata/k", "/tags", "/tags/t", "/stats", "/diagnostics",
                                "/password", "/os-volume_attachments"])
        paths = st.one_of(
            st.sampled_from(["/compute", "/compute/", "/compute/v2.0", "/compute/v2.0/",
                             "/compute/v2.0/servers", "/compute/v2.0/servers/detail",
                             "/compute/v2.0/flavors", "/compute/v2.0/flavors/detail",
                             "/compute/v2.0/images", "/compute/v2.0/images/detail",
                             "/compute/v2.0/os-keypairs", "/compute/v2.0/extensions",
                             "/compute/v2.0/limits", "/compute/v2.0/os-availability-zone"]),
            st.tuples(sid, subs, st.sampled_from(["", "", "/", "/x"])).map(
                lambda t: f"/compute/v2.0/servers/{t[0]}{t[1]}{t[2]}"),
            st.tuples(st.sampled_from(["flavors/", "images/", "os-keypairs/"]),
                      self.ids(str(flavor), image, "kp"),
                      st.sampled_from(["", "/metadata", "/metadata/OS"])).map(
                lambda t: f"/compute/v2.0/{t[0]}{t[1]}{t[2]}"),
            self.ids().map(lambda k: f"/vmapi/server-params/{k}"),
        )
        headers = fuzz.header_lists(fuzz.header_names(
            ["Content-Type", "Accept", "OpenStack-API-Version",
             "X-OpenStack-Nova-API-Version"], ["X-"]), 3)
        bodies = st.one_of(st.just(b""), fuzz.json_bodies(*templates))
        # Both dialects (Synnefo's v2.0, Nova's v2.1) share the handlers.
        v2 = st.sampled_from(["/compute/v2.0", "/compute/v2.1"])
        srv = st.tuples(v2, st.just("/servers/"), sid).map("".join)
        key, tag = self.ids("k", "OS"), self.ids("t")
        fid, iid, kid = self.ids(str(flavor)), self.ids(image), self.ids("kp")
        routes = [
            route("GET", v2, "/servers"), route("GET", v2, "/servers/detail"),
            route("POST", v2, "/servers"), route("POST", v2, "/servers"),
            route("GET", srv), route("PUT", srv), route("DELETE", srv),
            route("POST", srv, "/action"), route("POST", srv, "/action"),
            route("POST", srv, "/action"), route("GET", srv, "/ips"),
            route("GET", srv, "/ips/", self.ids("public", "private")),
            *(route(m, srv, "/metadata") for m in ("GET", "POST", "PUT")),
            *(route(m, srv, "/metadata/", key) for m in ("GET", "PUT", "DELETE")),
            *(route(m, srv, "/tags") for m in ("GET", "PUT", "DELETE")),
            *(route(m, srv, "/tags/", tag) for m in ("GET", "PUT", "DELETE")),
            *(route("GET", srv, sub) for sub in ("/stats", "/diagnostics", "/password",
                                                  "/os-volume_attachments")),
            route("GET", v2, "/flavors"), route("GET", v2, "/flavors/detail"),
            route("GET", v2, "/flavors/", fid), route("GET", v2, "/images"),
            route("GET", v2, "/images/detail"), route("GET", v2, "/images/", iid),
            route("GET", v2, "/images/", iid, "/metadata"),
            route("GET", v2, "/images/", iid, "/metadata/", key),
            route("GET", v2, "/os-keypairs"), route("POST", v2, "/os-keypairs"),
            route("GET", v2, "/os-keypairs/", kid), route("DELETE", v2, "/os-keypairs/", kid),
            route("GET", v2, "/extensions"), route("GET", v2, "/limits"),
            route("GET", v2, "/os-availability-zone"),
            route("GET", v2, "/os-availability-zone/detail"),
            *(route("GET", v2, "/os-quota-sets/", self.ids(self.alice, "x"), sub)
              for sub in ("", "/detail", "/defaults")),
            *(route(m, v2, "/images/", iid, "/metadata") for m in ("POST", "PUT")),
            *(route(m, v2, "/images/", iid, "/metadata/", key) for m in ("PUT", "DELETE")),
            route("GET", "/vmapi/server-params/", self.ids()),
        ]
        methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]
        return self.fuzz(self.requests(routes, methods, paths, COMPUTE_QUERY, headers,
                                       bodies))

    def test_image(self) -> defer.Deferred[None]:
        """Glance v2 and Plankton: image bodies and JSON patches, image
        headers, members, random ids, queries and headers."""
        image, alice, bob = self.image_id, self.alice, self.bob
        location = f"pithos://{alice}/c/images/x"
        templates = [
            {"name": "i", "disk_format": "diskdump", "container_format": "bare",
             "visibility": "private", "location": location, "tags": ["t"], "id": image,
             "protected": False, "properties": {"OS": "x"}},
            [{"op": "replace", "path": "/name", "value": "n"},
             {"op": "add", "path": "/OS", "value": "x"}, {"op": "remove", "path": "/tags"}],
            {"member": bob, "status": "accepted"}, {"memberships": [{"member_id": bob}]},
        ]
        iid = self.ids(image, image, "x")
        paths = st.one_of(
            st.sampled_from(["/image", "/image/", "/image/v2/", "/image/v2/images",
                             "/image/v1.0/images/", "/image/v1.0/images/detail",
                             "/image/v1.0/images", f"/image/v1.0/shared-images/{bob}"]),
            st.tuples(iid, st.sampled_from(["", "/file", "/members", f"/members/{bob}",
                                            "/members/x"])).map(
                lambda t: f"/image/v2/images/{t[0]}{t[1]}"),
            st.tuples(iid, st.sampled_from(["", "/members", f"/members/{bob}"])).map(
                lambda t: f"/image/v1.0/images/{t[0]}{t[1]}"),
            self.ids().map(lambda m: f"/image/v1.0/shared-images/{m}"),
        )
        names = fuzz.header_names(IMAGE_HEADERS, ["X-Image-Meta-", "X-Image-Meta-Property-"])
        special = st.tuples(st.sampled_from([b"X-Image-Meta-Location", b"Content-Type"]),
                            st.sampled_from([location.encode(), b"pithos://x",
                                             f"pithos://{alice}/c/o".encode(),
                                             b"application/openstack-images-v2.1-json-patch",
                                             b"application/json", b"pithos://",
                                             f"pithos://{alice}/c/../c/o".encode()]))
        headers = st.lists(st.one_of(st.tuples(names, fuzz.header_values()), special),
                           max_size=6)
        bodies = st.one_of(st.just(b""), fuzz.json_bodies(*templates))
        v1, v2 = "/image/v1.0/images/", "/image/v2/images"
        member = self.ids(bob, alice)
        routes = [
            route("GET", v1), route("GET", v1, "detail"), route("POST", v1), route("POST", v1),
            *(route(m, v1, iid) for m in ("GET", "HEAD", "PUT", "DELETE", "PUT")),
            route("GET", v1, iid, "/members"), route("PUT", v1, iid, "/members"),
            route("PUT", v1, iid, "/members/", member),
            route("DELETE", v1, iid, "/members/", member),
            route("GET", "/image/v1.0/shared-images/", member),
            route("GET", v2), route("GET", v2), route("POST", v2),
            *(route(m, v2, "/", iid) for m in ("GET", "GET", "PATCH", "DELETE", "PUT")),
            route("GET", v2, "/", iid, "/file"), route("PUT", v2, "/", iid, "/file"),
            route("GET", v2, "/", iid, "/members"), route("POST", v2, "/", iid, "/members"),
            *(route(m, v2, "/", iid, "/members/", member) for m in ("GET", "PUT", "DELETE")),
        ]
        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        return self.fuzz(self.requests(routes, methods, paths, IMAGE_QUERY, headers, bodies))
