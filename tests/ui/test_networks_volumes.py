"""The networks and volumes pages in a real browser, on a node with the
network and volume services over the simulated Ganeti cluster (identity,
pithos, archip, cyclades, ganeti-sim; its demo content gives the public
network with its floating-IP pool, the thin flavors and the image "Demo
Linux").  A server made through the API (a thin flavor, booted from a
volume of the image) is what the pages attach things to.

Networks: a network with a subnet is created and shown with its CIDR, a
server attached to it (a port with its device_id), the port listed,
detached; a floating IP allocated, attached to the server, detached and
released; the network deleted.  Volumes: a volume made from the image
becomes available, is attached (in-use), snapshotted (the snapshot becomes
available), a volume made from the snapshot, and the API's refusal to
delete a volume with snapshots is shown as it words it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from snfd.testing import demo
from tests.ui.case import BrowserCase

WAIT = 90.0


class NetworksVolumesTests(BrowserCase):
    plugins = "identity,pithos,archip,cyclades,ganeti-sim"
    config = ("[identity]\nmoderation = no\n"
              "[ganeti-sim]\nqueue_delay = 0.05\nexec_time = 0.1\nhypervisor = kvm\n"
              "[cyclades]\nreconcile_interval = 5\n"
              "default_server_networks = SNF:ANY_PUBLIC\n")
    ready_path = "/network/v2.0/networks"

    # -- helpers (blocking) ---------------------------------------------------------

    def until(self, what: str, probe: Callable[[], Any]) -> Any:
        return demo.until(self.node, what, probe, WAIT)

    def call(self, token: str, method: str, path: str, body: Any = None) -> Any:
        return demo.api(self.node, token, method, path, body)

    def row(self, list_id: str, text: str) -> str:
        """The CSS selector of the row of ``#list_id`` holding ``text``."""
        b = self.browser
        rid = b.wait(f"a row of {list_id} with {text!r}", lambda: b.run(
            "for (const tr of document.querySelectorAll(`#${arguments[0]} tbody tr`))"
            " if (tr.textContent.includes(arguments[1])) return tr.dataset.id;"
            " return null;", list_id, text), WAIT)
        return f"#{list_id} tr[data-id='{rid}']"

    def choose(self, select_css: str, text: str, button: str | None = None) -> None:
        """Pick the option holding ``text`` in the select ``select_css`` and,
        in the same turn of the page's loop (a poll may redraw the row
        between two steps), click ``button``."""
        b = self.browser
        b.wait(f"an option {text!r} in {select_css}", lambda: b.run(
            "const s = document.querySelector(arguments[0]); if (!s) return false;"
            " const o = [...s.options].find(o => o.textContent.includes(arguments[1]));"
            " if (!o) return false; s.value = o.value;"
            " if (arguments[2]) { const k = document.querySelector(arguments[2]);"
            "   if (!k || k.disabled) return false; k.click(); }"
            " return true;", select_css, text, button), WAIT)

    def press(self, css: str) -> None:
        """Click ``css`` once it is there (a redrawn list replaces its buttons)."""
        b = self.browser
        b.wait(f"a button {css!r}", lambda: b.run(
            "const k = document.querySelector(arguments[0]);"
            " if (!k || k.disabled) return false; k.click(); return true;", css), WAIT)

    # -- the scenario ----------------------------------------------------------------

    def test_networks_and_volumes(self):
        def steps() -> None:
            user = self.node.add_user("net@example.org")
            image, flavor = demo.boot_source(self.node, user.token)
            server = demo.thin_server(self.node, user.token, image, flavor)
            b = self.browser
            self.log_in(user)
            b.accept_dialogs()
            self.networks(server)
            self.volumes(server, image)
            # Chromium logs every refused request as an error: those the
            # scenario provokes on purpose (a bad CIDR, a network with a port
            # going, a volume with a snapshot) are the only ones allowed.
            errors = b.console_errors()
            refused = [e for e in errors
                       if "Failed to load resource" in e
                       and ("status of 400" in e or "status of 409" in e)]
            self.assertEqual([e for e in errors if e not in refused], [])
            self.assertTrue(any("/network/v2.0/subnets" in e for e in refused), refused)
        return self.drive(steps)

    def networks(self, server: str) -> None:
        b = self.browser
        b.click("#nav a[data-page=networks]")
        b.wait_text("#network-list", "public")
        # A refusal is shown as the API words it.
        b.fill_form("#network-form", {"name": "bad", "cidr": "not a cidr"})
        b.submit("#network-form")
        self.assertTrue(b.wait_text("#network-form .error", "").strip())
        b.fill_form("#network-form", {"name": "lan", "cidr": "10.9.0.0/24"})
        b.submit("#network-form")
        lan = self.row("network-list", "10.9.0.0/24")
        b.wait_text(lan, "lan")
        b.wait("no network 'bad'", lambda: "bad" not in b.text("#network-list"))

        self.choose(f"{lan} .server-select", "vm", f"{lan} button.attach-server")
        b.wait_text("#port-list", f"({server})")
        port = self.row("port-list", f"({server})")
        b.wait_text(port, "ACTIVE", WAIT)
        b.wait_text(port, "10.9.0.")

        b.click("#floating-ip-form button[type=submit]")
        ip = self.row("floating-ip-list", "192.0.2.")
        b.wait_text(ip, "DOWN")
        self.choose(f"{ip} .server-select", "vm", f"{ip} button.attach-ip")
        b.wait_text(ip, "ACTIVE")
        b.wait_text(ip, f"({server})")
        b.shot("networks")

        self.press(f"{ip} button.detach-ip")
        b.wait_text(ip, "DOWN")
        self.press(f"{ip} button.release-ip")
        b.wait("the floating IP released",
               lambda: "192.0.2." not in b.text("#floating-ip-list"), WAIT)

        self.press(f"{port} button.delete-port")
        b.wait("the port gone", lambda: f"({server})" not in b.text("#port-list"), WAIT)
        # The NIC goes when Ganeti reports it gone; until then the API
        # refuses to delete the network (the page shows why): ask again.
        def deleted() -> bool:
            if "10.9.0.0/24" not in b.text("#network-list"):
                return True
            self.press(f"{lan} button.delete-network")
            time.sleep(1)
            return "10.9.0.0/24" not in b.text("#network-list")
        b.wait("the network gone", deleted, WAIT)

    def volumes(self, server: str, image: dict[str, Any]) -> None:
        b = self.browser
        b.click("#nav a[data-page=volumes]")
        b.wait_text("#volume-list", "vm")  # the server's boot volume, in use
        b.fill_form("#volume-form", {"name": "data", "size": "2"})
        self.choose("#volume-form select[name=source]", "Demo Linux")
        b.submit("#volume-form")
        vol = self.row("volume-list", "data")
        b.wait_text(vol, "available", WAIT)
        b.wait_text(vol, "Demo Linux")

        self.choose(f"{vol} .server-select", "vm", f"{vol} button.attach-volume")
        b.wait_text(vol, "in-use", WAIT)
        b.wait_text(vol, f"({server})")
        self.assertFalse(b.run(f"return !!document.querySelector(\"{vol} .delete-volume\")"))

        self.press(f"{vol} button.snapshot-volume")
        snap = self.row("snapshot-list", "data-snapshot")
        b.wait_text(snap, "available", WAIT)
        self.press(f"{snap} button.volume-from-snapshot")
        copy = self.row("volume-list", "data-snapshot-volume")
        b.wait_text(copy, "available", WAIT)
        b.wait_text(copy, "snapshot data-snapshot")
        b.shot("volumes")

        self.press(f"{copy} button.delete-volume")
        b.wait("the copy deleted",
               lambda: "data-snapshot-volume" not in b.text("#volume-list"), WAIT)

        self.press(f"{vol} button.detach-volume")
        b.wait_text(vol, "available", WAIT)
        self.press(f"{vol} button.delete-volume")  # it has a snapshot: refused
        self.assertIn("snapshot", b.wait_text("#notice .error", "napshot"))
        self.press(f"{snap} button.delete-snapshot")
        b.wait("the snapshot deleted",
               lambda: "data-snapshot" not in b.text("#snapshot-list"), WAIT)
        self.press(f"{vol} button.delete-volume")
        b.wait("the volume deleted", lambda: not b.run(
            f"return !!document.querySelector(\"{vol}\")"), WAIT)

    def test_server_booted_from_a_new_volume_with_another_attached(self):
        """The wizard's disks: the boot disk a new volume of the image (a
        thin flavor), and an existing volume attached at create."""
        def steps() -> None:
            user = self.node.add_user("disks@example.org")
            image, shown = demo.boot_source(self.node, user.token)
            extra = self.call(user.token, "POST", "/volume/v3/volumes",
                              {"volume": {"name": "extra", "size": 1}})["volume"]
            self.until("the extra volume available", lambda: self.call(
                user.token, "GET", f"/volume/v3/volumes/{extra['id']}")["volume"]["status"]
                == "available")
            b = self.browser
            self.log_in(user)
            b.click("#nav a[data-page=servers]")
            b.click("#new-server")
            b.element("#server-form select[name=boot]")
            b.run("const f = document.getElementById('server-form');"
                  " for (const [k, v] of Object.entries(arguments[0])) {"
                  "   f.elements[k].value = v; f.elements[k].dispatchEvent(new Event('change')); }",
                  {"image": image["id"], "vcpus": str(shown["vcpus"]), "ram": str(shown["ram"]),
                   "disk": str(shown["disk"]), "template": "ext_archipelago",
                   "boot": "image-volume"})
            b.wait_text("#chosen-flavor", "ext_archipelago")
            b.click(f"#server-form input[name=extra][value='{extra['id']}']")
            b.fill_form("#server-form", {"name": "from-volume"})
            b.submit("#server-form")
            b.wait_text("#admin-pass", "")
            server = b.element("#created-link").get_attribute("href").rsplit("/", 1)[1]

            def attached() -> Any:
                got = self.call(user.token, "GET", f"/compute/v2.1/servers/{server}")["server"]
                if got["status"] == "ERROR":
                    raise AssertionError(f"the server failed: {got}")
                return got["status"] == "ACTIVE" and got[
                    "os-extended-volumes:volumes_attached"]
            volumes = {v["id"] for v in self.until("the server ACTIVE with volumes", attached)}
            self.assertIn(extra["id"], volumes)
            self.assertEqual(len(volumes), 2)
            b.click("#nav a[data-page=volumes]")
            b.wait_text(self.row("volume-list", "extra"), "in-use", WAIT)
            b.shot("server-volumes")
        return self.drive(steps)
