"""``snf``'s clouds: profiles of the config file (two real nodes, the old
one-cloud file migrated), ``clouds.yaml`` entries (``--os-cloud``), the
browser login through a provider with a loopback listener (a node with
the Shibboleth provider; the test plays the front server that sets the
identity headers), and shell completion.  ``snf`` runs as a child
process, as a user runs it; the config, ``clouds.yaml`` and loopback
pieces are also checked in process."""

from __future__ import annotations

import http.client
import json
import os
import re
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from snfd.client import clouds_yaml
from snfd.client import config as cfg
from snfd.client.loopback import LoopbackLogin, s256_challenge
from snfd.client.pithos import ClientError
from snfd.testing.node import NodeProcess, free_port
from snfd.testing.postgres import fresh_database
from tests.client.test_snf_integration import MANAGE, PASSWORD, SNF, SnfNodeTestCase

#: What the environment of the test run must not decide for ``snf``.
_UNSET = ("SNF_CLOUD", "OS_CLOUD", "OS_CLIENT_CONFIG_FILE", "SNF_PASSWORD")


class NodeCase(SnfNodeTestCase):
    """``SnfNodeTestCase`` with ``node_config`` added to the node's config
    file, ``snf`` run without the caller's ``$SNF_CLOUD``/``$OS_CLOUD``,
    and more nodes on demand (``another_node``)."""

    node_config = ""

    @defer.inlineCallbacks
    def setUp(self):
        self.node = yield self.another_node()
        self.work = Path(self.mktemp()).absolute()
        self.work.mkdir()
        self.home = self.work / "home"
        (self.home / ".config").mkdir(parents=True)

    @defer.inlineCallbacks
    def another_node(self) -> Any:
        dsn = fresh_database(self)
        config = Path(self.mktemp()).absolute()
        config.write_text("[database]\nauto_upgrade = yes\n" + self.node_config)
        node = NodeProcess(env={"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": "identity,pithos"},
                           args=["--config", str(config)])
        self.addCleanup(node.cleanup)
        node.start()
        yield defer.ensureDeferred(node.wait_ready(reactor, timeout=120))
        return node

    def add_user(self, node: Any, email: str) -> Any:
        """``snf-manage user-add`` on ``node``: its JSON (uuid, token)."""
        env = dict(os.environ, SNFD_DATABASE_URL=node.env["SNFD_DATABASE_URL"],
                   SNFD_PLUGINS="identity,pithos", SNFD_STATE_DIR=str(node.state_dir))
        out = subprocess.run([*MANAGE, "user-add", "--email", email, "--password", PASSWORD,
                              "--first-name", "Test", "--activate", "--json"], env=env,
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            self.fail(f"snf-manage user-add: {out.stderr}")
        return json.loads(out.stdout)

    def environment(self, who: str, env: dict[str, str] | None = None) -> dict[str, str]:
        full = {k: v for k, v in os.environ.items() if k not in _UNSET}
        full.update(SNF_CONFIG=str(self.config_of(who)), HOME=str(self.home),
                    XDG_CONFIG_HOME=str(self.home / ".config"))
        full.update(env or {})
        return full

    def snf(self, who: str, *argv: str, ok: bool = True, env: dict[str, str] | None = None,
            text: bool = True) -> defer.Deferred[subprocess.CompletedProcess[Any]]:
        full = self.environment(who, env)

        def run() -> subprocess.CompletedProcess[Any]:
            proc = subprocess.run([*SNF, *argv], env=full, capture_output=True, text=text,
                                  timeout=240, cwd=self.work, stdin=subprocess.DEVNULL)
            if ok and proc.returncode != 0:
                raise AssertionError(f"snf {' '.join(argv)} failed ({proc.returncode}):\n"
                                     f"{proc.stderr!r}\n{self.node.tail(30)}")
            if not ok and proc.returncode == 0:
                raise AssertionError(f"snf {' '.join(argv)} succeeded:\n{proc.stdout!r}")
            return proc

        return threads.deferToThread(run)

    def stored(self, who: str) -> Any:
        return json.loads(self.config_of(who).read_text())


class ProfileTests(NodeCase):
    @defer.inlineCallbacks
    def test_two_clouds_as_profiles(self):
        """A one-cloud config file of the first format keeps working (as
        the profile ``default``) and is migrated, mode 0600, when a login
        into a second cloud writes it; ``--cloud``, ``$SNF_CLOUD`` and
        ``snf cloud use`` choose which cloud a command talks to; logout
        forgets the current profile's token only; ``cloud remove`` drops a
        profile; an unknown profile is an error, not an empty login."""
        other = yield self.another_node()
        yield threads.deferToThread(self.add_user, self.node, "ann@one.example")
        yield threads.deferToThread(self.add_user, other, "bob@two.example")
        me = "me"
        yield self.snf(me, "login", "--url", self.node.url, "--user", "ann@one.example",
                       env={"SNF_PASSWORD": PASSWORD})
        # What the first snf wrote: the settings themselves, one cloud.
        old = self.stored(me)["clouds"]["default"]
        self.config_of(me).write_text(json.dumps(old))
        yield self.snf(me, "container", "create", "one-box")
        proc = yield self.snf(me, "container", "list")
        self.assertEqual(proc.stdout.split(), ["one-box"])
        self.assertEqual(self.stored(me), old, "a read-only command rewrote the file")

        proc = yield self.snf(me, "login", "--cloud", "two", "--url", other.url, "--user",
                              "bob@two.example", env={"SNF_PASSWORD": PASSWORD})
        self.assertIn("logged in as bob@two.example", proc.stdout)
        self.assertIn("snf cloud use two", proc.stderr)
        stored = self.stored(me)
        self.assertEqual(stored["current"], "default")
        self.assertEqual(stored["clouds"]["default"], old)
        self.assertTrue(stored["clouds"]["two"]["storage_url"].startswith(other.url))
        self.assertEqual(stat.S_IMODE(self.config_of(me).stat().st_mode), 0o600)

        yield self.snf(me, "--cloud", "two", "container", "create", "two-box")
        proc = yield self.snf(me, "container", "list", env={"SNF_CLOUD": "two"})
        self.assertEqual(proc.stdout.split(), ["two-box"])
        proc = yield self.snf(me, "container", "list")
        self.assertEqual(proc.stdout.split(), ["one-box"])
        proc = yield self.snf(me, "-o", "json", "cloud", "list")
        self.assertEqual([(c["name"], c["current"], c["url"], c["logged_in"])
                          for c in json.loads(proc.stdout)],
                         [("default", True, self.node.url, True),
                          ("two", False, other.url, True)])
        self.assertNotIn(old["token"], proc.stdout)

        yield self.snf(me, "cloud", "use", "two")
        proc = yield self.snf(me, "container", "list")
        self.assertEqual(proc.stdout.split(), ["two-box"])
        proc = yield self.snf(me, "cloud", "list")
        self.assertRegex(proc.stdout, r"\*\s+two\s")

        yield self.snf(me, "logout")
        stored = self.stored(me)
        self.assertEqual(stored["clouds"]["two"]["token"], "")
        self.assertEqual(stored["clouds"]["default"]["token"], old["token"])
        proc = yield self.snf(me, "container", "list", ok=False)
        self.assertIn("not logged in", proc.stderr)
        proc = yield self.snf(me, "--cloud", "default", "container", "list")
        self.assertEqual(proc.stdout.split(), ["one-box"])

        yield self.snf(me, "cloud", "remove", "two")
        self.assertEqual(sorted(self.stored(me)["clouds"]), ["default"])
        proc = yield self.snf(me, "container", "list")
        self.assertEqual(proc.stdout.split(), ["one-box"])
        for argv in (("--cloud", "two", "container", "list"), ("cloud", "use", "two"),
                     ("cloud", "remove", "two")):
            proc = yield self.snf(me, *argv, ok=False)
            self.assertIn("no cloud named 'two'", proc.stderr)
            self.assertEqual(proc.returncode, 1)


class OsCloudTests(NodeCase):
    def clouds(self, path: Path, entries: dict[str, Any]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"clouds": entries}))  # JSON is YAML
        return path

    @defer.inlineCallbacks
    def test_clouds_yaml(self):
        """``--os-cloud`` (or ``$OS_CLOUD``) logs in as a clouds.yaml entry
        says, with a password (v3, Default domain) or a token, and writes
        nothing; ``$OS_CLIENT_CONFIG_FILE`` comes before ./clouds.yaml,
        which comes before ~/.config/openstack/clouds.yaml; ``snf login
        --os-cloud`` stores the entry as a profile; a wrong password and
        an auth_url that is not a snfd identity URL fail in one line."""
        made = yield threads.deferToThread(self.add_user, self.node, "yam@example.org")
        auth_url = f"{self.node.url}/identity/v3"
        self.clouds(self.work / "clouds.yaml", {
            "pw": {"auth": {"auth_url": auth_url, "username": "yam@example.org",
                            "password": PASSWORD, "user_domain_name": "Default",
                            "project_name": "ignored"},
                   "region_name": "RegionOne", "identity_api_version": 3},
            "tok": {"auth_type": "v3token", "auth": {"auth_url": auth_url + "/",
                                                     "token": made["token"]}},
            "bad": {"auth": {"auth_url": auth_url, "username": "yam@example.org",
                             "password": "not it"}},
            "nobase": {"auth": {"auth_url": self.node.url + "/v3",
                                "username": "yam@example.org", "password": PASSWORD}}})
        me = "yam"
        yield self.snf(me, "--os-cloud", "pw", "container", "create", "yaml-box")
        proc = yield self.snf(me, "container", "list", env={"OS_CLOUD": "tok"})
        self.assertEqual(proc.stdout.split(), ["yaml-box"])
        self.assertFalse(self.config_of(me).exists(), "--os-cloud wrote the config file")

        # A profile chosen on the command line wins over $OS_CLOUD.
        proc = yield self.snf(me, "--cloud", "nothere", "container", "list", ok=False,
                              env={"OS_CLOUD": "tok"})
        self.assertIn("no cloud named 'nothere'", proc.stderr)

        elsewhere = self.clouds(self.work / "other.yaml", {"pw": {"auth": {
            "auth_url": "http://127.0.0.1:9/identity/v3", "username": "x", "password": "y"}}})
        proc = yield self.snf(me, "--os-cloud", "pw", "container", "list", ok=False,
                              env={"OS_CLIENT_CONFIG_FILE": str(elsewhere)})
        self.assertEqual(proc.returncode, 7, proc.stderr)
        self.clouds(self.home / ".config" / "openstack" / "clouds.yaml", {"home": {"auth": {
            "auth_url": auth_url, "token": made["token"]}}})
        proc = yield self.snf(me, "--os-cloud", "home", "container", "list", ok=False)
        self.assertIn("no cloud 'home'", proc.stderr)
        (self.work / "clouds.yaml").rename(self.work / "aside.yaml")
        proc = yield self.snf(me, "--os-cloud", "home", "container", "list")
        self.assertEqual(proc.stdout.split(), ["yaml-box"])
        (self.work / "aside.yaml").rename(self.work / "clouds.yaml")

        proc = yield self.snf(me, "--os-cloud", "bad", "container", "list", ok=False)
        self.assertEqual((proc.returncode, len(proc.stderr.splitlines())), (4, 1), proc.stderr)
        proc = yield self.snf(me, "--os-cloud", "nobase", "container", "list", ok=False)
        self.assertIn("not a snfd identity URL", proc.stderr)
        self.assertFalse(self.config_of(me).exists())

        proc = yield self.snf(me, "login", "--os-cloud", "pw")
        self.assertIn("logged in as yam@example.org", proc.stdout)
        stored = self.stored(me)
        self.assertEqual((stored["current"], list(stored["clouds"])), ("pw", ["pw"]))
        self.assertEqual(stored["clouds"]["pw"]["url"], self.node.url)
        self.assertEqual(stat.S_IMODE(self.config_of(me).stat().st_mode), 0o600)
        proc = yield self.snf(me, "container", "list")
        self.assertEqual(proc.stdout.split(), ["yaml-box"])


    def identity(self, method: str, path: str, body: Any = None,
                 token: str = "") -> tuple[int, dict[str, str], Any]:
        """A call of the node's identity API (``/identity/v3`` + ``path``):
        ``(status, headers, JSON body or None)``."""
        conn = http.client.HTTPConnection("127.0.0.1", urlsplit(self.node.url).port, timeout=60)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        try:
            conn.request(method, "/identity/v3" + path, headers=headers,
                         body=None if body is None else json.dumps(body).encode())
            answer = conn.getresponse()
            text = answer.read().decode()
            return answer.status, dict(answer.getheaders()), json.loads(text) if text else None
        finally:
            conn.close()

    def app_credential(self, email: str) -> tuple[str, dict[str, Any]]:
        """A new user ``email``, a token scoped to its base project and an
        application credential made with it (its JSON, with the secret)."""
        uid = self.add_user(self.node, email)["uuid"]
        status, headers, _ = self.identity("POST", "/auth/tokens", {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": email, "password": PASSWORD, "domain": {"id": "default"}}}},
            "scope": {"project": {"id": uid}}}})
        self.assertEqual(status, 201)
        token = headers["X-Subject-Token"]
        status, _, made = self.identity("POST", f"/users/{uid}/application_credentials",
                                        {"application_credential": {"name": "snf-ci"}}, token)
        self.assertEqual(status, 201, made)
        return token, made["application_credential"]

    @defer.inlineCallbacks
    def test_application_credential(self):
        """An entry with an application credential (by id, or by name and
        user), its secret kept in secure.yaml ($OS_CLIENT_SECURE_FILE), logs
        in with the application_credential method: the token is the
        credential's, scoped to its project; the object store works with
        it; ``snf login --os-cloud`` stores its token, not the secret; the
        secret is neither printed nor logged; once the credential is
        deleted the login fails in one line (4: not allowed), and so does
        the stored token."""
        token, made = yield threads.deferToThread(self.app_credential, "app@example.org")
        uid, secret = made["user_id"], made["secret"]
        auth_url = f"{self.node.url}/identity/v3"
        self.clouds(self.work / "clouds.yaml", {
            "app": {"auth_type": "v3applicationcredential", "region_name": "RegionOne",
                    "auth": {"auth_url": auth_url, "application_credential_id": made["id"]}},
            "named": {"auth_type": "v3applicationcredential",
                      "auth": {"auth_url": auth_url, "application_credential_name": "snf-ci",
                               "username": "app@example.org", "user_domain_name": "Default"}}})
        secure = self.clouds(self.work / "private" / "secure.yaml", {
            "app": {"auth": {"application_credential_secret": secret}},
            "named": {"auth": {"application_credential_secret": secret}}})
        env = {"OS_CLIENT_SECURE_FILE": str(secure)}
        me = "app"
        for name in ("app", "named"):
            proc = yield self.snf(me, "-o", "json", "--os-cloud", name, "user", "info", env=env)
            shown = json.loads(proc.stdout)
            self.assertEqual(shown["methods"], ["application_credential"])
            self.assertEqual(shown["application_credential"]["id"], made["id"])
            self.assertEqual((shown["user"]["id"], shown["project"]["id"]),
                             (uid, made["project_id"]))
            self.assertNotIn(secret, proc.stdout + proc.stderr)
        yield self.snf(me, "--os-cloud", "app", "container", "create", "app-box", env=env)
        proc = yield self.snf(me, "container", "list", env=dict(env, OS_CLOUD="named"))
        self.assertEqual(proc.stdout.split(), ["app-box"])
        self.assertFalse(self.config_of(me).exists(), "--os-cloud wrote the config file")
        proc = yield self.snf(me, "login", "--os-cloud", "named", env=env)
        self.assertIn("logged in as app@example.org", proc.stdout)
        self.assertNotIn(secret, self.config_of(me).read_text())
        proc = yield self.snf(me, "container", "list")
        self.assertEqual(proc.stdout.split(), ["app-box"])

        # Without secure.yaml the secret is missing: said in one line.
        proc = yield self.snf(me, "--os-cloud", "app", "user", "info", ok=False)
        self.assertIn("cloud 'app': auth.application_credential_secret is missing", proc.stderr)
        self.assertEqual(len(proc.stderr.splitlines()), 1, proc.stderr)

        status, _, _ = yield threads.deferToThread(
            self.identity, "DELETE", f"/users/{uid}/application_credentials/{made['id']}",
            None, token)
        self.assertEqual(status, 204)
        proc = yield self.snf(me, "--os-cloud", "app", "user", "info", ok=False, env=env)
        self.assertEqual((proc.returncode, len(proc.stderr.splitlines())), (4, 1), proc.stderr)
        self.assertNotIn(secret, proc.stdout + proc.stderr)
        proc = yield self.snf(me, "container", "list", ok=False)
        self.assertEqual(proc.returncode, 4, proc.stderr)
        self.assertNotIn(secret, self.node.log_path.read_text(errors="replace"))


class ProviderLoginTests(NodeCase):
    """A node offering the Shibboleth login, its identity headers believed
    from 127.0.0.1 (where the test plays the front web server)."""

    node_config = ("[identity]\nauth_providers = local, shibboleth\n"
                   "shibboleth_trusted = 127.0.0.1\n")

    def start_login(self, who: str, *argv: str) -> tuple[subprocess.Popen[str], str]:
        """Start ``snf login --provider ...`` (blocking: call in a thread);
        the process and the address it printed."""
        proc = subprocess.Popen(
            [*SNF, "login", "--url", self.node.url, "--no-browser", "--timeout", "120",
             *argv], env=self.environment(who), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=self.work)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        seen = []
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("  http"):
                return proc, line.strip()
        raise AssertionError(f"snf printed no address: {seen!r} {proc.wait()}")

    def play_idp(self, address: str, eppn: str) -> str:
        """What the front web server does once the person logged in at the
        IdP: the login URL with the identity headers; the Location."""
        parts = urlsplit(address)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request("GET", f"{parts.path}?{parts.query}", headers={
                "eppn": eppn, "mail": eppn, "givenName": "Carol",
                "Accept": "text/html"})
            answer = conn.getresponse()
            answer.read()
            self.assertEqual(answer.status, 303)
            return answer.getheader("location") or ""
        finally:
            conn.close()

    def browse(self, url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - loopback
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def post_json(self, url: str, body: Any) -> tuple[int, str]:
        """POST ``body`` as JSON to ``url``: ``(status, text)``."""
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request("POST", parts.path, body=json.dumps(body).encode(), headers={
                "Content-Type": "application/json", "Accept": "application/json"})
            answer = conn.getresponse()
            return answer.status, answer.read().decode()
        finally:
            conn.close()

    def flow(self) -> None:
        proc, address = self.start_login("carol", "--provider", "shibboleth")
        self.assertTrue(address.startswith(self.node.url + "/ui/login/shibboleth?"), address)
        query = parse_qs(urlsplit(address).query)
        self.assertEqual(sorted(query),
                         ["code_challenge", "code_challenge_method", "next", "state"])
        callback = urlsplit(query["next"][0])
        self.assertEqual((callback.scheme, callback.hostname, callback.path),
                         ("http", "127.0.0.1", "/callback"))
        state = query["state"][0]
        self.assertGreaterEqual(len(state), 32)
        self.assertEqual(query["code_challenge_method"], ["S256"])
        self.assertRegex(query["code_challenge"][0], r"\A[A-Za-z0-9_-]{43}\Z")

        # Another local process guessing the port, or a stale page: refused,
        # and snf keeps waiting.
        status, text = self.browse(f"{query['next'][0]}?code=forged&state=guess")
        self.assertEqual(status, 400, text)
        self.assertIn("state does not match", text)
        self.assertIsNone(proc.poll())

        location = self.play_idp(address, "carol@uni.example")
        back = urlsplit(location)
        self.assertEqual((back.netloc, back.path), (callback.netloc, "/callback"))
        handed = parse_qs(back.query)
        self.assertEqual(sorted(handed), ["code", "state"])
        self.assertEqual(handed["state"], [state])
        status, text = self.browse(location)
        self.assertEqual(status, 200, text)
        self.assertIn("You may close this page", text)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("logged in as carol@uni.example", out)
        # As with --token: the token the code was exchanged for (unscoped)
        # was exchanged for one scoped to the user's project, with the
        # catalog; neither is in the redirect the browser's history keeps.
        stored = self.stored("carol")["clouds"]["default"]
        self.assertEqual((stored["email"], stored["url"]), ("carol@uni.example", self.node.url))
        self.assertTrue(stored["token"] and stored["storage_url"].startswith(self.node.url))
        self.assertNotIn(stored["token"], location)
        # Whoever reads the code in that history gets nothing with it (no
        # verifier; single use and expiry are pinned in tests.identity).
        status, text = self.post_json(self.node.url + "/ui/token/exchange",
                                      {"code": handed["code"][0], "code_verifier": "x" * 43})
        self.assertEqual(status, 400, text)
        self.assertIn("Invalid or expired code", text)

    @defer.inlineCallbacks
    def test_login_through_the_browser(self):
        """``snf login --provider shibboleth`` prints the provider's login
        address with a loopback ``next`` and a random state and waits; a
        callback with another state is refused; once the front server
        (the test) brings the person to that address with the identity
        headers, the node sends the browser to the loopback with a
        one-time code (no token), snf checks the state, exchanges the code
        and its PKCE verifier for the token, logs in with it, answers the
        browser "you may close this page" and stores the profile, which
        then works; the code alone gets no token."""
        yield threads.deferToThread(self.flow)
        yield self.snf("carol", "container", "create", "from-browser")
        proc = yield self.snf("carol", "container", "list")
        self.assertEqual(proc.stdout.split(), ["from-browser"])

    @defer.inlineCallbacks
    def test_unknown_provider(self):
        """A provider the cloud does not offer fails, naming what it offers."""
        proc = yield self.snf("carol", "login", "--url", self.node.url, "--provider", "corp",
                              "--no-browser", ok=False)
        self.assertIn("no browser login 'corp' (it offers: shibboleth)", proc.stderr)
        self.assertFalse(self.config_of("carol").exists())


class CompletionTests(unittest.TestCase):
    def run_snf(self, *argv: str, env: dict[str, str] | None = None) -> Any:
        full = {k: v for k, v in os.environ.items() if k not in _UNSET}
        full.update(env or {})
        return subprocess.run([*SNF, *argv], env=full, capture_output=True, text=True,
                              timeout=60)

    def test_scripts(self):
        """``snf completion SHELL`` prints click's script for that shell."""
        for shell, mark in (("bash", "complete -o nosort -F _snf_completion snf"),
                            ("zsh", "#compdef snf"), ("fish", "complete --no-files")):
            proc = self.run_snf("completion", shell)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn("_SNF_COMPLETE", proc.stdout)
            self.assertIn(mark, proc.stdout)
        self.assertEqual(self.run_snf("completion", "tcsh").returncode, 2)

    def test_completes_commands(self):
        """Click's protocol completes ``snf ser`` to ``server`` and ``snf
        cloud u`` to ``use``; the bash script, sourced in a real bash,
        does the same through the ``snf`` of this virtualenv."""
        proc = self.run_snf(env={"_SNF_COMPLETE": "bash_complete", "COMP_WORDS": "snf ser",
                                 "COMP_CWORD": "1"})
        self.assertEqual(proc.stdout.split(), ["plain,server"])
        proc = self.run_snf(env={"_SNF_COMPLETE": "bash_complete",
                                 "COMP_WORDS": "snf cloud u", "COMP_CWORD": "2"})
        self.assertEqual(proc.stdout.split(), ["plain,use"])
        script = self.run_snf("completion", "bash").stdout
        bin_dir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if k not in _UNSET}
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        shell = subprocess.run(
            ["bash", "-c", script + '\nCOMP_WORDS=(snf ser); COMP_CWORD=1;'
             ' _snf_completion snf; echo "${COMPREPLY[@]}"'],
            env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(shell.stdout.split(), ["server"], shell.stderr)


class ConfigFileTests(unittest.TestCase):
    def test_old_format_is_read_and_migrated(self):
        """A file of the first format is the profile ``default``; a save
        into another profile writes the new format with both, 0600."""
        path = Path(self.mktemp())
        path.write_text(json.dumps({"url": "http://a", "token": "t1", "user": "u1"}))
        profiles = cfg.load_profiles(path)
        self.assertEqual((profiles.current, list(profiles.clouds), profiles.legacy),
                         ("default", ["default"], True))
        self.assertEqual(cfg.load(path).token, "t1")
        cfg.save(cfg.Settings(url="http://b", token="t2"), path, "b")
        data = json.loads(path.read_text())
        self.assertEqual(data["current"], "default")
        self.assertEqual({n: c["token"] for n, c in data["clouds"].items()},
                         {"default": "t1", "b": "t2"})
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(cfg.load(path, "b").url, "http://b")
        self.assertEqual(cfg.load(path, "none").token, "")

    def test_first_save_makes_the_current_profile(self):
        path = Path(self.mktemp())
        cfg.save(cfg.Settings(token="x"), path, "work")
        self.assertEqual(cfg.load_profiles(path).current, "work")
        self.assertEqual(cfg.load(path).token, "x")

    def test_bad_files_and_names(self):
        """Malformed files and bad profile names are ConfigErrors."""
        path = Path(self.mktemp())
        for text in ("[]", '{"clouds": []}', '{"clouds": {"a b": {}}}',
                     '{"clouds": {"a": {"token": 5}}}', '{"clouds": {}, "current": 1}', "{"):
            path.write_text(text)
            self.assertRaises(cfg.ConfigError, cfg.load_profiles, path)
        for name in ("", "a/b", "../x", "-x", "x" * 65):
            self.assertRaises(cfg.ConfigError, cfg.check_name, name)

    def test_concurrent_saves_keep_each_other(self):
        """Saves of different profiles from many threads (each rereads the
        file under its lock) lose none of them."""
        path = Path(self.mktemp())
        done = [threading.Thread(target=cfg.save, args=(cfg.Settings(token=f"t{n}"), path,
                                                        f"p{n}")) for n in range(20)]
        for t in done:
            t.start()
        for t in done:
            t.join()
        self.assertEqual(len(cfg.load_profiles(path).clouds), 20)


class CloudsYamlTests(unittest.TestCase):
    def test_search_order(self):
        """$OS_CLIENT_CONFIG_FILE, then the working directory, then
        $XDG_CONFIG_HOME/openstack, then /etc/openstack (as openstacksdk)."""
        paths = clouds_yaml.search_paths({"OS_CLIENT_CONFIG_FILE": "/x/c.yaml",
                                          "XDG_CONFIG_HOME": "/home/u/.config"}, Path("/w"))
        self.assertEqual([str(p) for p in paths if p.suffix == ".yaml"],
                         ["/x/c.yaml", "/w/clouds.yaml", "/home/u/.config/openstack/clouds.yaml",
                          "/etc/openstack/clouds.yaml"])

    def test_base_url(self):
        for auth_url, base in (("http://h:1/identity/v3", "http://h:1"),
                               ("https://h/p/identity/v3/", "https://h/p"),
                               ("https://h/identity", "https://h")):
            self.assertEqual(clouds_yaml.base_url(auth_url), base)
        for auth_url in ("https://h/v3", "https://h:5000", "identity/v3"):
            self.assertRaises(cfg.ConfigError, clouds_yaml.base_url, auth_url)

    def test_entries(self):
        """Password and token entries; other auth types and domains are
        refused with the file and the cloud named."""
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "clouds.yaml").write_text(
            "clouds:\n"
            "  a:\n    auth:\n      auth_url: http://h/identity/v3\n"
            "      username: ann\n      password: pw\n      user_domain_id: default\n"
            "  t:\n    auth_type: token\n    auth:\n      auth_url: http://h/identity/v3\n"
            "      token: tok\n"
            "  oidc:\n    auth_type: v3oidcpassword\n    auth:\n"
            "      auth_url: http://h/identity/v3\n"
            "  dom:\n    auth:\n      auth_url: http://h/identity/v3\n      username: a\n"
            "      user_domain_name: Other\n")
        env = {"XDG_CONFIG_HOME": str(folder / "none")}
        a = clouds_yaml.find("a", env, folder)
        self.assertEqual((a.url, a.username, a.password, a.token), ("http://h", "ann", "pw", ""))
        t = clouds_yaml.find("t", env, folder)
        self.assertEqual((t.url, t.token), ("http://h", "tok"))
        for name, words in (("oidc", "not supported"), ("dom", "one user domain"),
                            ("zz", "no cloud 'zz'")):
            with self.assertRaises(cfg.ConfigError) as caught:
                clouds_yaml.find(name, env, folder)
            self.assertIn(words, str(caught.exception))
            self.assertIn(str(folder / "clouds.yaml"), str(caught.exception))


    def write(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def test_secure_search_order(self):
        """secure.yaml: $OS_CLIENT_SECURE_FILE, then the directories of
        clouds.yaml in the same order."""
        paths = clouds_yaml.secure_search_paths({"OS_CLIENT_SECURE_FILE": "/x/s.yaml",
                                                 "OS_CLIENT_CONFIG_FILE": "/x/c.yaml",
                                                 "XDG_CONFIG_HOME": "/home/u/.config"},
                                                Path("/w"))
        self.assertEqual([str(p) for p in paths],
                         ["/x/s.yaml", "/w/secure.yaml", "/w/secure.yml",
                          "/home/u/.config/openstack/secure.yaml",
                          "/home/u/.config/openstack/secure.yml",
                          "/etc/openstack/secure.yaml", "/etc/openstack/secure.yml"])

    def test_merge(self):
        """Mappings in both are merged key by key, at any depth; any other
        value of the second wins; neither argument is changed."""
        base = {"auth": {"auth_url": "u", "username": "a", "password": "old",
                         "deep": {"x": 1}}, "region_name": "R", "auth_type": "password"}
        over = {"auth": {"password": "new", "deep": {"y": 2}}, "auth_type": "v3password",
                "region_name": {"name": "R2"}}
        self.assertEqual(clouds_yaml.merge(base, over),
                         {"auth": {"auth_url": "u", "username": "a", "password": "new",
                                   "deep": {"x": 1, "y": 2}},
                          "region_name": {"name": "R2"}, "auth_type": "v3password"})
        self.assertEqual(base["auth"]["password"], "old")
        self.assertEqual(over["auth"], {"password": "new", "deep": {"y": 2}})

    def test_secure_yaml_merged(self):
        """secure.yaml's entry is merged into clouds.yaml's (auth key by
        key, its values winning); an entry of secure.yaml alone is used;
        $OS_CLIENT_SECURE_FILE comes before ./secure.yaml; .yml is found;
        only the first secure.yaml is read."""
        folder = Path(self.mktemp()).absolute()
        home = folder / "home"
        self.write(folder / "clouds.yaml",
                   "clouds:\n  a:\n    auth:\n      auth_url: http://h/identity/v3\n"
                   "      username: ann\n      password: in-clouds\n"
                   "  b:\n    auth:\n      auth_url: http://b/identity/v3\n"
                   "      username: bob\n")
        self.write(folder / "secure.yaml",
                   "clouds:\n  a:\n    auth:\n      password: in-secure\n"
                   "  b:\n    auth:\n      password: bob-secret\n"
                   "  s:\n    auth_type: token\n    auth:\n"
                   "      auth_url: http://s/identity/v3\n      token: tok\n")
        self.write(home / "openstack" / "secure.yaml",
                   "clouds:\n  a:\n    auth:\n      password: in-home\n")
        env = {"XDG_CONFIG_HOME": str(home)}
        a = clouds_yaml.find("a", env, folder)
        self.assertEqual((a.url, a.username, a.password), ("http://h", "ann", "in-secure"))
        self.assertEqual(a.sources, (folder / "clouds.yaml", folder / "secure.yaml"))
        b = clouds_yaml.find("b", env, folder)
        self.assertEqual((b.url, b.username, b.password), ("http://b", "bob", "bob-secret"))
        s = clouds_yaml.find("s", env, folder)
        self.assertEqual((s.url, s.token, s.sources), ("http://s", "tok",
                                                       (folder / "secure.yaml",)))

        given = self.write(folder / "elsewhere" / "mine.yaml",
                           "clouds:\n  a:\n    auth:\n      password: from-env\n")
        a = clouds_yaml.find("a", dict(env, OS_CLIENT_SECURE_FILE=str(given)), folder)
        self.assertEqual(a.password, "from-env")
        (folder / "secure.yaml").unlink()
        self.assertEqual(clouds_yaml.find("a", env, folder).password, "in-home")
        self.write(folder / "secure.yml", "clouds:\n  a:\n    auth:\n      password: yml\n")
        self.assertEqual(clouds_yaml.find("a", env, folder).password, "yml")
        # An empty secure.yaml, or one without clouds, adds nothing.
        for text in ("", "other: 1\n"):
            self.write(folder / "secure.yml", text)
            self.assertEqual(clouds_yaml.find("a", env, folder).password, "in-clouds")

    def test_bad_secure_yaml(self):
        """A secure.yaml that is not YAML, or whose clouds is not a
        mapping, is an error naming it, as a bad clouds.yaml is; an entry
        of neither file names both."""
        folder = Path(self.mktemp()).absolute()
        self.write(folder / "clouds.yaml", "clouds:\n  a:\n    auth:\n"
                   "      auth_url: http://h/identity/v3\n      username: ann\n")
        env = {"XDG_CONFIG_HOME": str(folder / "none")}
        secure = folder / "secure.yaml"
        for text, words in (("clouds: [unclosed\n", "not YAML"),
                            ("- a list\n", "no 'clouds' mapping"),
                            ("clouds: 3\n", "no 'clouds' mapping"),
                            (b"clouds: \xff\n", "not YAML")):
            if isinstance(text, bytes):
                secure.write_bytes(text)
            else:
                secure.write_text(text)
            with self.assertRaises(cfg.ConfigError) as caught:
                clouds_yaml.find("a", env, folder)
            self.assertTrue(str(caught.exception).startswith(f"{secure}: {words}"),
                            str(caught.exception))
            self.assertEqual(len(str(caught.exception).splitlines()), 1)
        secure.write_text("clouds:\n  other: {}\n")
        with self.assertRaises(cfg.ConfigError) as caught:
            clouds_yaml.find("zz", env, folder)
        self.assertEqual(str(caught.exception), f"{folder / 'clouds.yaml'} + {secure}:"
                                                " no cloud 'zz' (clouds: a, other)")

    def test_unreadable_secure_yaml(self):
        """An unreadable secure.yaml (mode 000; as root, which reads it
        anyway, its read fails as it would) is an error naming it
        (openstacksdk would skip it)."""
        folder = Path(self.mktemp()).absolute()
        self.write(folder / "clouds.yaml", "clouds:\n  a:\n    auth:\n"
                   "      auth_url: http://h/identity/v3\n      username: ann\n")
        secure = self.write(folder / "secure.yaml", "clouds: {}\n")
        secure.chmod(0)
        self.addCleanup(secure.chmod, 0o600)
        if os.geteuid() == 0:
            read_text = Path.read_text

            def refused(path: Path, *args: Any, **kwargs: Any) -> str:
                if path == secure:
                    raise PermissionError(13, "Permission denied", str(path))
                return read_text(path, *args, **kwargs)

            self.patch(Path, "read_text", refused)
        with self.assertRaises(cfg.ConfigError) as caught:
            clouds_yaml.find("a", {"XDG_CONFIG_HOME": str(folder / "none")}, folder)
        self.assertEqual(str(caught.exception), f"{secure}: Permission denied")

    def test_app_credentials(self):
        """v3applicationcredential (or applicationcredential): the secret
        with the id, or with the name and the user (domain Default); the
        id wins over the name; a missing piece is named; the secret is not
        in the entry's repr."""
        folder = Path(self.mktemp()).absolute()
        url = "      auth_url: http://h/identity/v3\n"
        self.write(folder / "clouds.yaml", "clouds:\n"
                   "  byid:\n    auth_type: v3applicationcredential\n    auth:\n" + url +
                   "      application_credential_id: c1d\n"
                   "      application_credential_secret: s3cret\n"
                   "  byname:\n    auth_type: applicationcredential\n    auth:\n" + url +
                   "      application_credential_name: ci\n"
                   "      application_credential_secret: s3cret\n"
                   "      username: ann@example.org\n      user_domain_name: Default\n"
                   "  both:\n    auth_type: v3applicationcredential\n    auth:\n" + url +
                   "      application_credential_id: c1d\n"
                   "      application_credential_name: ci\n"
                   "      application_credential_secret: s3cret\n"
                   "  nosecret:\n    auth_type: v3applicationcredential\n    auth:\n" + url +
                   "      application_credential_id: c1d\n"
                   "  noid:\n    auth_type: v3applicationcredential\n    auth:\n" + url +
                   "      application_credential_secret: s3cret\n"
                   "  nouser:\n    auth_type: v3applicationcredential\n    auth:\n" + url +
                   "      application_credential_name: ci\n"
                   "      application_credential_secret: s3cret\n"
                   "  otherdomain:\n    auth_type: v3applicationcredential\n    auth:\n" + url +
                   "      application_credential_name: ci\n"
                   "      application_credential_secret: s3cret\n"
                   "      username: ann@example.org\n      user_domain_id: elsewhere\n")
        env = {"XDG_CONFIG_HOME": str(folder / "none")}
        byid = clouds_yaml.find("byid", env, folder)
        self.assertEqual((byid.url, byid.app_credential_id, byid.app_credential_name,
                          byid.app_credential_secret, byid.username, byid.password, byid.token),
                         ("http://h", "c1d", "", "s3cret", "", "", ""))
        self.assertNotIn("s3cret", repr(byid))
        byname = clouds_yaml.find("byname", env, folder)
        self.assertEqual((byname.app_credential_id, byname.app_credential_name,
                          byname.username, byname.app_credential_secret),
                         ("", "ci", "ann@example.org", "s3cret"))
        both = clouds_yaml.find("both", env, folder)
        self.assertEqual((both.app_credential_id, both.app_credential_name), ("c1d", ""))
        for name, message in (
                ("nosecret", "auth.application_credential_secret is missing"),
                ("noid", "auth.application_credential_id (or _name) is missing"),
                ("nouser", "auth.username is missing"),
                ("otherdomain", "a snfd cloud has one user domain, Default")):
            with self.assertRaises(cfg.ConfigError) as caught:
                clouds_yaml.find(name, env, folder)
            self.assertEqual(str(caught.exception),
                             f"{folder / 'clouds.yaml'}: cloud {name!r}: {message}")

    def test_app_credential_secret_in_secure_yaml(self):
        """The usual split: the credential in clouds.yaml, its secret in
        secure.yaml; without secure.yaml the secret is missing."""
        folder = Path(self.mktemp()).absolute()
        self.write(folder / "clouds.yaml", "clouds:\n  app:\n"
                   "    auth_type: v3applicationcredential\n    auth:\n"
                   "      auth_url: http://h/identity/v3\n"
                   "      application_credential_id: c1d\n")
        secure = self.write(folder / "secure.yaml", "clouds:\n  app:\n    auth:\n"
                            "      application_credential_secret: s3cret\n")
        env = {"XDG_CONFIG_HOME": str(folder / "none")}
        app = clouds_yaml.find("app", env, folder)
        self.assertEqual((app.app_credential_id, app.app_credential_secret), ("c1d", "s3cret"))
        secure.unlink()
        with self.assertRaises(cfg.ConfigError) as caught:
            clouds_yaml.find("app", env, folder)
        self.assertIn("auth.application_credential_secret is missing", str(caught.exception))


class LoopbackTests(unittest.TestCase):
    def get(self, url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def test_one_shot(self):
        """Requests for another path or with another state are refused and
        the listener waits on; the right state gets ``complete``'s result
        and the browser the closing text; the port is closed after."""
        login: LoopbackLogin[str] = LoopbackLogin()
        self.assertRegex(login.redirect_uri, r"\Ahttp://127\.0\.0\.1:\d+/callback\Z")
        url = login.url("http://cloud.test/", "/ui/login/x")
        self.assertEqual(parse_qs(urlsplit(url).query),
                         {"next": [login.redirect_uri], "state": [login.state],
                          "code_challenge": [s256_challenge(login.verifier)],
                          "code_challenge_method": ["S256"]})
        self.assertRegex(login.verifier, r"\A[A-Za-z0-9_-]{43,128}\Z")
        self.assertNotIn(login.verifier, url)
        answers = []

        def browser() -> None:
            base = login.redirect_uri
            answers.append(self.get(base.replace("/callback", "/other")))
            answers.append(self.get(f"{base}?code=c&state=wrong"))
            answers.append(self.get(f"{base}?state={login.state}"))
            answers.append(self.get(f"{base}?token=t&state={login.state}"))
            answers.append(self.get(f"{base}?code=good&state={login.state}"))

        thread = threading.Thread(target=browser)
        thread.start()
        result = login.wait(lambda code: f"checked {code}", timeout=30)
        thread.join()
        self.assertEqual(result, "checked good")
        self.assertEqual([a[0] for a in answers], [404, 400, 400, 400, 200])
        self.assertIn("You may close this page", answers[4][1])
        port = int(re.findall(r":(\d+)/", login.redirect_uri)[0])
        self.assertRaises(OSError, http.client.HTTPConnection("127.0.0.1", port,
                                                              timeout=5).connect)

    def test_s256_challenge(self):
        """The challenge is RFC 7636's S256 (its appendix B example)."""
        self.assertEqual(s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
                         "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        first: LoopbackLogin[str] = LoopbackLogin()
        self.addCleanup(first.close)
        second: LoopbackLogin[str] = LoopbackLogin()
        self.addCleanup(second.close)
        self.assertNotEqual(first.verifier, second.verifier)

    def test_given_port(self):
        """A port may be given (one an SSH tunnel forwards)."""
        port = free_port()
        login: LoopbackLogin[str] = LoopbackLogin(port=port)
        self.addCleanup(login.close)
        self.assertEqual(login.redirect_uri, f"http://127.0.0.1:{port}/callback")

    def test_times_out(self):
        login: LoopbackLogin[str] = LoopbackLogin()
        with self.assertRaises(ClientError) as caught:
            login.wait(lambda token: token, timeout=0.5)
        self.assertIn("no login came back", str(caught.exception))

    def test_failed_completion_is_told_to_the_browser(self):
        """When the code does not work, the browser is told why and
        ``wait`` raises the error."""
        login: LoopbackLogin[str] = LoopbackLogin()
        answers = []

        def refuse(code: str) -> str:
            raise ClientError(400, "Invalid or expired code.")

        thread = threading.Thread(target=lambda: answers.append(
            self.get(f"{login.redirect_uri}?code=bad&state={login.state}")))
        thread.start()
        with self.assertRaises(ClientError):
            login.wait(refuse, timeout=30)
        thread.join()
        self.assertEqual(answers[0][0], 401)
        self.assertIn("Invalid or expired code", answers[0][1])
