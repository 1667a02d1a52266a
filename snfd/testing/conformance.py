"""``./dev conformance``: OpenStack's own API tests (tempest) against a
fresh snfd node.

Steps: make tempest's virtualenv if absent (pinned ``tempest==47.0.0``);
create a fresh database on the test PostgreSQL; start ``twistd snfd`` with
the plugins the chosen services need; provision tempest's accounts with
``snf-manage`` (pre-provisioned credentials: users without roles for the
primary/alt pools, users in the ``ResellerAdmin`` group for Swift's
reseller-admin tests); write ``tempest.conf`` and ``accounts.yaml``, with
every skip written and explained in the config; run tempest's API tests of
each service; print ``<service>: N passed, N failed, N skipped``.  The exit
status is non-zero when any test failed or errored.

Run it as ``python -m snfd.testing.conformance [--keep DIR] [--regex R]
[service ...]`` (services: ``object-storage``, ``identity``).  Everything it
starts is stopped and the database dropped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from snfd.testing.cloudnode import CloudNode
from snfd.testing.postgres import create_database, drop_database

TEMPEST = "tempest==47.0.0"

#: tempest's test package and the node plugins each service needs.
SERVICES: dict[str, tuple[str, str]] = {
    "object-storage": (r"^tempest\.api\.object_storage\.", "identity,pithos"),
    "identity": (r"^tempest\.api\.identity\.", "identity,pithos"),
}

#: How many accounts tempest gets per pool (about 2 x concurrency is the minimum).
ACCOUNTS_PER_POOL = 6
CONCURRENCY = 2


@attrs.frozen
class Account:
    username: str
    password: str
    project_name: str
    roles: tuple[str, ...]


def tempest_venv(path: Path) -> Path:
    """The ``tempest`` executable of the virtualenv at ``path``, made and
    installed on first use."""
    exe = path / "bin" / "tempest"
    stamp = path / f".installed-{TEMPEST}"
    if not stamp.exists():
        print(f"==> installing {TEMPEST} into {path}", file=sys.stderr)
        subprocess.run([_base_python(), "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", TEMPEST], check=True,
                       stdout=subprocess.DEVNULL)
        stamp.touch()
    return exe


def _base_python() -> str:
    """The system interpreter (tempest must not share snfd's virtualenv)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return base


def provision(node: CloudNode, count: int) -> list[Account]:
    """``count`` plain users, ``count`` operators (role ``member``) and two
    reseller administrators (group ``ResellerAdmin``, which tokens carry as
    a role)."""
    node.manage("group-add", "ResellerAdmin")
    accounts = []
    for pool, roles in (("plain", ()), ("operator", ("member",)),
                        ("reseller", ("ResellerAdmin",))):
        for i in range(count if pool != "reseller" else 2):
            user = node.add_user(f"tempest-{pool}-{i}@example.org")
            if pool == "reseller":
                node.manage("group-member-add", "ResellerAdmin", user.email)
            accounts.append(Account(user.email, user.password, _project_name(node, user),
                                    roles))
    return accounts


def _project_name(node: CloudNode, user: Any) -> str:
    """The name Keystone gives the user's own project (tempest logs in by
    project name)."""
    status, _, body = node.request(
        "POST", "/identity/v3/auth/tokens", None, json.dumps({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user.email, "domain": {"id": "default"},
                "password": user.password}}},
            "scope": {"project": {"id": user.uuid}}}}).encode(),
        {"Content-Type": "application/json"})
    if status != 201:
        raise SystemExit(f"cannot log in as {user.email}: {status} {body[:200]!r}")
    return str(json.loads(body)["token"]["project"]["name"])


def accounts_yaml(accounts: list[Account]) -> str:
    lines = []
    for a in accounts:
        lines += [f"- username: {json.dumps(a.username)}",
                  f"  password: {json.dumps(a.password)}",
                  f"  project_name: {json.dumps(a.project_name)}",
                  "  domain_name: Default"]
        if a.roles:
            lines.append(f"  roles: {json.dumps(list(a.roles))}")
    return "\n".join(lines) + "\n"


def tempest_conf(url: str, accounts_file: Path, info: dict[str, Any], services: list[str],
                 log_dir: Path) -> str:
    """The whole ``tempest.conf``: endpoints, credentials, what the node
    serves, and each skip with its reason."""
    apis = ",".join(sorted(k for k in info if k not in ("swift",) and not k.startswith("_")))
    swift = "object-storage" in services
    return f"""\
# Written by snfd's `./dev conformance` for one run against {url}.
[DEFAULT]
log_dir = {log_dir}
log_file = tempest.log
use_stderr = false

[auth]
# Pre-provisioned accounts made by snf-manage (see accounts.yaml).
use_dynamic_credentials = false
test_accounts_file = {accounts_file}
default_credentials_domain_name = Default
create_isolated_networks = false

[identity]
uri_v3 = {url}/identity/v3
auth_version = v3
region = RegionOne
v3_endpoint_type = public
disable_ssl_certificate_validation = true

[identity-feature-enabled]
api_v2 = false
# v2.0 is Synnefo's token call only; the admin API is v3's.
api_v2_admin = false

[service_available]
swift = {str(swift).lower()}
nova = false
glance = false
neutron = false
cinder = false

[object-storage]
operator_role = member
reseller_admin_role = ResellerAdmin
region = RegionOne
endpoint_type = public

[object-storage-feature-enabled]
# The middleware the node advertises in GET /info.
discoverable_apis = {apis}
# Container sync needs a second cluster to sync to; snfd serves none.
container_sync = false
discoverability = true

[validation]
run_validation = false
"""


_TOTALS = re.compile(r"^ - (Passed|Failed|Skipped|Expected Fail|Unexpected Success): (\d+)",
                     re.MULTILINE)


def run_tempest(exe: Path, workspace: Path, conf: Path, regex: str) -> tuple[dict[str, int], str]:
    """Run tempest's tests matching ``regex``; the totals and the output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["TEMPEST_CONFIG_DIR"] = str(conf.parent)
    env["TEMPEST_CONFIG"] = conf.name
    proc = subprocess.run(
        [str(exe), "run", "--config-file", str(conf), "--regex", regex,
         "--concurrency", str(CONCURRENCY)],
        cwd=workspace, env=env, capture_output=True, text=True, check=False, timeout=3600)
    output = proc.stdout + proc.stderr
    totals = {k.lower(): int(v) for k, v in _TOTALS.findall(output)}
    return totals, output


def failing(exe: Path, workspace: Path) -> list[str]:
    """The ids of the tests that failed in the last run."""
    stestr = exe.with_name("stestr")
    proc = subprocess.run([str(stestr), "failing", "--list"], cwd=workspace,
                          capture_output=True, text=True, check=False)
    return [line for line in proc.stdout.splitlines() if line.startswith("tempest.")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dev conformance", description=__doc__.split("\n\n")[0])
    p.add_argument("services", nargs="*", default=["object-storage", "identity"],
                   choices=sorted(SERVICES))
    p.add_argument("--venv", default=os.environ.get("SNFD_TEMPEST_VENV", ".tempest"),
                   help="tempest's virtualenv (made if absent)")
    p.add_argument("--keep", help="keep the workspace (config, logs) in this directory")
    p.add_argument("--regex", help="run only the tests matching this (all services)")
    args = p.parse_args(argv)

    exe = tempest_venv(Path(args.venv).resolve())
    root = (Path(args.keep).resolve() if args.keep
            else Path(tempfile.mkdtemp(prefix="snfd-tempest-")))
    if root.exists() and args.keep:
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    admin, dbname, dsn = create_database("snfd_conformance")
    plugins = ",".join(sorted({p for s in args.services for p in SERVICES[s][1].split(",")}))
    node = CloudNode(dsn, root / "node", plugins)
    failed_total = 0
    try:
        node.start(ready_path="/identity/v3")
        accounts = provision(node, ACCOUNTS_PER_POOL)
        (root / "accounts.yaml").write_text(accounts_yaml(accounts))
        status, info = node.api("GET", "/object-store/info")
        info = info if status == 200 and isinstance(info, dict) else {}
        workspace = root / "workspace"
        (workspace / "etc").mkdir(parents=True)
        (workspace / "logs").mkdir()
        conf = workspace / "etc" / "tempest.conf"
        conf.write_text(tempest_conf(node.url, root / "accounts.yaml", info, args.services,
                                     workspace / "logs"))
        (workspace / ".stestr.conf").write_text(
            f"[DEFAULT]\ntest_path={_tempest_tests(exe)}\ntop_dir={_tempest_top(exe)}\n")
        for service in args.services:
            started = time.monotonic()
            regex = args.regex or SERVICES[service][0]
            totals, output = run_tempest(exe, workspace, conf, regex)
            (root / f"{service}.log").write_text(output)
            bad = failing(exe, workspace)
            failed = totals.get("failed", 0) + totals.get("unexpected success", 0)
            if not totals:
                failed = 1
                print(output[-3000:], file=sys.stderr)
            failed_total += failed
            for test in bad:
                print(f"  FAILED {test}")
            print(f"{service}: {totals.get('passed', 0)} passed, {failed} failed, "
                  f"{totals.get('skipped', 0)} skipped ({time.monotonic() - started:.0f} s)")
    finally:
        node.stop()
        drop_database(admin, dbname)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"workspace kept in {root}", file=sys.stderr)
    return 1 if failed_total else 0


def _tempest_top(exe: Path) -> str:
    """The directory that holds tempest's package in its virtualenv."""
    py = exe.with_name("python")
    return subprocess.run([str(py), "-c", "import os, tempest; "
                           "print(os.path.dirname(os.path.dirname(tempest.__file__)))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _tempest_tests(exe: Path) -> str:
    return str(Path(_tempest_top(exe)) / "tempest" / "test_discover")


if __name__ == "__main__":
    sys.exit(main())
