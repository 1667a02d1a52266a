"""The ganeti-events plugin's service: on a Ganeti master, the job-queue
watcher and the publisher of its events (what snf-ganeti-eventd does)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from twisted.application import service

from snfd.ganeti.publisher import EventPublisher
from snfd.ganeti.rapi import GanetiRapi, RapiTarget
from snfd.ganeti.watcher import JobQueueWatcher


def cluster_name(queue_dir: Path) -> str:
    """The Ganeti cluster's name: ``ssconf_cluster_name`` in the queue
    directory's parent (``/var/lib/ganeti``) if readable, else this host's
    name."""
    try:
        name = (queue_dir.parent / "ssconf_cluster_name").read_text().strip()
    except (OSError, UnicodeDecodeError):
        name = ""
    return name or socket.gethostname()



def from_config(node: Any, section: Any, deps: Any = None) -> service.MultiService:
    """The watcher and publisher from the node and the ``[ganeti-events]``
    section (nothing of other services is required)."""
    queue_dir = Path(section.queue_dir)
    cluster = section.cluster or cluster_name(queue_dir)
    rapi = None
    if section.rapi_url:
        certificate = ""
        if section.rapi_certificate:
            certificate = Path(section.rapi_certificate).read_text()
        rapi = GanetiRapi(node.http, RapiTarget(
            cluster=cluster, url=section.rapi_url, username=section.rapi_username,
            password=section.rapi_password, certificate=certificate,
            timeout=section.rapi_timeout or 10.0))
    top = service.MultiService()
    top.setName("ganeti-events")
    # Started in this order (the exchange is declared first); stopped
    # together, so the publisher's stop ends retries the watcher awaits.
    publisher = EventPublisher(node.bus, section.exchange, clock=node.clock)
    publisher.setServiceParent(top)
    JobQueueWatcher(node.reactor, queue_dir, cluster, publisher,
                    rapi=rapi).setServiceParent(top)
    return top
