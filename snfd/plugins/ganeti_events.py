"""Ganeti's job queue as update-path events (what snf-ganeti-eventd does), as
a node plugin.  See ``snfd.ganeti.watcher``.

Run it on the Ganeti master: it watches the job queue directory and
publishes each job's progress on the bus exchange ``ganeti``, where the
Cyclades dispatcher consumes it.  It is opt-in by nature: without the
queue directory it logs one warning and waits for the directory to appear.
"""

from __future__ import annotations

from pathlib import Path

from twisted.plugin import IPlugin
from zope.interface import implementer

from snfd.config import Key, number, path, text
from snfd.interfaces import ISnfdPlugin
from snfd.plugins import ServicePlugin


@implementer(IPlugin, ISnfdPlugin)
class GanetiEventsPlugin(ServicePlugin):
    name = "ganeti-events"
    factory = "snfd.ganeti.service:from_config"
    config_keys = (
        Key("queue_dir", path, Path("/var/lib/ganeti/queue"),
            "Ganeti's job queue directory, watched for job changes; when it does"
            " not exist the plugin waits for it."),
        Key("cluster", text, "",
            "Cluster name put in the messages; empty: ssconf_cluster_name next to"
            " the queue directory, else this host's name."),
        Key("exchange", text, "ganeti", "Topic exchange the events are published to."),
        Key("rapi_url", text, "",
            "https://host:5080 of the cluster's RAPI, asked for the NICs, disks"
            " and hvparams some events carry; empty: events go without them."),
        Key("rapi_username", text, "", "RAPI user (read access is enough)."),
        Key("rapi_password", text, "", "RAPI password.", secret=True),
        Key("rapi_certificate", text, "",
            "PEM file of the RAPI's certificate (rapi.pem), trusted instead of the"
            " platform store; empty: the platform store."),
        Key("rapi_timeout", number, 10.0, "Seconds a RAPI call may take."),
    )


plugin = GanetiEventsPlugin()
