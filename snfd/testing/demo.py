"""The embedded default's demo content, as tests on a whole node wait for
it and boot from it (blocking calls over ``snfd.testing.cloudnode``).

A node with the compute service makes its demo flavors, the public image
"Demo Linux" and the public network a moment after it starts; these
helpers wait for them and make what many tests need first: a server of a
thin flavor booted from a volume of that image.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from snfd.testing.cloudnode import CloudNode

__all__ = ["api", "boot_source", "thin_server", "until", "wait_flavors"]


def until(node: CloudNode, what: str, probe: Callable[[], Any], timeout: float = 90.0,
          pause: float = 0.3) -> Any:
    """``probe()``'s first true answer within ``timeout`` seconds; else an
    ``AssertionError`` naming ``what``, with the node's log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(pause)
    raise AssertionError(f"timed out waiting for {what}\n{node.tail(60)}")


def api(node: CloudNode, token: str, method: str, path: str, body: Any = None,
        ok: tuple[int, ...] = (200, 201, 202, 204)) -> Any:
    """One API call whose status must be in ``ok``; its JSON answer."""
    status, reply = node.api(method, path, token, body)
    if status not in ok:
        raise AssertionError(f"{method} {path}: {status} {reply}")
    return reply


def wait_flavors(node: CloudNode, timeout: float = 60.0) -> None:
    """Until the demo flavors exist."""
    until(node, "the demo flavors",
          lambda: json.loads(node.manage("flavor-list", "--json")), timeout)


def boot_source(node: CloudNode, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The image "Demo Linux" and a thin flavor (``ext_archipelago``) as
    the compute API shows them, once the demo content, the public network
    with its subnets included, is there."""
    def probe() -> Any:
        nets = api(node, token, "GET", "/network/v2.0/networks?name=public")["networks"]
        flavors = json.loads(node.manage("flavor-list", "--json"))
        images = api(node, token, "GET", "/image/v2/images")["images"]
        thin = [f for f in flavors if "ext_archipelago" in str(f)]
        image = [i for i in images if i["name"] == "Demo Linux"]
        return nets and nets[0]["subnets"] and thin and image and (image[0], thin[0])
    image, flavor = until(node, "the demo content", probe)
    flavor_id = str(flavor.get("id", flavor.get("flavor_id")))
    return image, api(node, token, "GET", f"/compute/v2.1/flavors/{flavor_id}")["flavor"]


def thin_server(node: CloudNode, token: str, image: dict[str, Any], flavor: dict[str, Any],
                name: str = "vm") -> str:
    """The id of an ACTIVE server of the thin ``flavor`` booted from a new
    volume of ``image`` (the two ``boot_source`` gives)."""
    made = api(node, token, "POST", "/compute/v2.1/servers", {"server": {
        "name": name, "flavorRef": str(flavor["id"]), "block_device_mapping_v2": [{
            "source_type": "image", "destination_type": "volume", "uuid": image["id"],
            "boot_index": 0, "volume_size": flavor["disk"],
            "delete_on_termination": True}]}})["server"]

    def active() -> bool:
        got = api(node, token, "GET", f"/compute/v2.1/servers/{made['id']}")["server"]
        if got["status"] == "ERROR":
            raise AssertionError(f"the server failed: {got}")
        return bool(got["status"] == "ACTIVE")
    until(node, "the server ACTIVE", active)
    return str(made["id"])
