"""What the real-Ganeti integration tests share: a real Ganeti 3.0
cluster in a network namespace and a real snfd node whose cyclades
service drives it, with the cluster's job events coming back through
the ganeti-events watcher and a private RabbitMQ."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import reactor, threads
from twisted.trial import unittest

from snfd.testing.cloudnode import CloudNode
from snfd.testing.ganeti import RealGanetiCluster, real_ganeti_unavailable
from snfd.testing.node import free_port
from snfd.testing.postgres import fresh_database
from snfd.testing.rabbitmq import private_rabbit


async def start_node(testcase: Any, prefix: str, cyclades: str, ready_path: str,
                     archip: bool = False, guest_os: str = "noop+default",
                     public_on_host: bool = False) -> Path:
    """Bring up the cluster and the node for ``testcase`` (skipped where
    real Ganeti cannot run), stopped by its cleanups; sets its
    ``cluster``, ``dsn`` and ``node``.  ``cyclades``: more ``[cyclades]``
    lines.  ``archip``: the node also runs the volume service, reachable
    from the cluster's namespace on the root end of its veth pair
    (``testcase.host``, 10.77.N.1): the HTTP site listens there beside
    127.0.0.1, the NBD server (``testcase.nbd_port``) only there.  Returns
    the run's directory (the RAPI certificate is ``rapi.pem`` in it).
    ``guest_os``: the Ganeti OS of new servers; ``public_on_host`` (with
    ``archip``): the compute service's public URL, hence the OS's
    ``config_url``, is on ``testcase.host``, which the cluster reaches."""
    reason = await threads.deferToThread(real_ganeti_unavailable)
    if reason:
        raise unittest.SkipTest(reason)
    root = Path(tempfile.mkdtemp(prefix=prefix))
    testcase.addCleanup(shutil.rmtree, root, True)
    cluster = testcase.cluster = RealGanetiCluster(reactor)
    # Torn down last (cleanups run in reverse), after the node stopped.
    testcase.addCleanup(threads.deferToThread, cluster.down)
    await threads.deferToThread(cluster.up)
    rabbit = await threads.deferToThread(private_rabbit, testcase)
    testcase.dsn = fresh_database(testcase)
    cert = root / "rapi.pem"
    cert.write_text(cluster.certificate)
    config = (
        f"[cyclades]\nos = {guest_os}\nreconcile_interval = 86400\n" + cyclades +
        "[ganeti-events]\n"
        f"queue_dir = {cluster.queue_dir}\ncluster = {cluster.name}\n"
        f"rapi_url = {cluster.url}\nrapi_username = {cluster.username}\n"
        f"rapi_password = {cluster.password}\nrapi_certificate = {cert}\n")
    plugins = "identity,pithos,cyclades,ganeti-events"
    env = {"SNFD_BUS_URL": rabbit.url}
    if archip:
        host = testcase.host = f"10.77.{cluster.number}.1"
        testcase.nbd_port = free_port()
        plugins = "identity,pithos,archip,cyclades,ganeti-events"
        env["SNFD_NBD_LISTEN"] = f"tcp:{testcase.nbd_port}:interface={host}"
    testcase.node = CloudNode(testcase.dsn, root / "node", plugins, config, env)
    if archip:
        port = testcase.node.process.port
        testcase.node.process.env["SNFD_LISTEN"] = \
            f"tcp:{port}:interface=127.0.0.1 tcp:{port}:interface={host}"
        if public_on_host:
            conf = testcase.node.config_path
            conf.write_text(conf.read_text().replace(
                "[cyclades]\n", f"[cyclades]\npublic_url = http://{host}:{port}\n", 1))
    testcase.addCleanup(testcase.node.stop)
    await threads.deferToThread(testcase.node.start, 180.0, ready_path)
    return root


def rapi_get(cluster: RealGanetiCluster, path: str) -> tuple[int, Any]:
    """A GET on the cluster's RAPI (its own certificate trusted): the
    status and the parsed answer (text when it is not JSON).  Blocking."""
    context = ssl.create_default_context(cadata=cluster.certificate)
    context.check_hostname = False
    auth = base64.b64encode(f"{cluster.username}:{cluster.password}".encode()).decode()
    parts = urlsplit(cluster.url)
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=30,
                                       context=context)
    try:
        conn.request("GET", path, headers={"Authorization": f"Basic {auth}"})
        answer = conn.getresponse()
        data = answer.read()
    finally:
        conn.close()
    try:
        return answer.status, json.loads(data)
    except ValueError:
        return answer.status, data.decode("utf-8", "replace")
