"""Compute requests checked into typed values (``snfd.cyclades.requests``):
what a create request may say about its boot disk (``openstack server
create --image`` sends the image as a one-entry block device mapping),
its files, and what an action body turns into."""

from __future__ import annotations

from twisted.trial import unittest

from snfd import errors
from snfd.cyclades.requests import (
    Console,
    CreateImage,
    Firewall,
    PersonalityFile,
    Reassign,
    Reboot,
    Rescue,
    Resize,
    Start,
    Stop,
    Unsupported,
    parse_action,
    parse_create,
)
from snfd.cyclades.servers import ComputeSettings

IMAGE = "8e5d4015-4e51-4e8c-8b99-3e9f9fc21556"


def local_boot(uuid: str = IMAGE, **extra: object) -> dict[str, object]:
    return {"uuid": uuid, "boot_index": 0, "source_type": "image",
            "destination_type": "local", "delete_on_termination": True, **extra}


class BlockDeviceMappingTests(unittest.TestCase):
    def parse(self, **server: object) -> object:
        return parse_create({"name": "vm", "flavorRef": 1, **server}, ComputeSettings())

    def test_image_boot_mapping_names_the_image(self):
        """A mapping that boots the image on a local disk stands for imageRef,
        with or without imageRef (openstackclient sends imageRef "")."""
        for extra in ({}, {"imageRef": ""}, {"imageRef": IMAGE}):
            req = self.parse(block_device_mapping_v2=[local_boot()], **extra)
            self.assertEqual(req.image_id, IMAGE)  # type: ignore[attr-defined]

    def test_volume_mappings(self):
        """A boot volume from an image, a snapshot or a volume, and existing
        volumes besides, become ``BlockDevice`` values; with a boot volume
        there is no image to deploy (``image_id`` empty)."""
        from snfd.cyclades.requests import BlockDevice

        req = self.parse(block_device_mapping_v2=[
            local_boot(destination_type="volume", volume_size="3"),
            {"source_type": "volume", "destination_type": "volume", "uuid": "v2"}])
        self.assertEqual(req.image_id, "")  # type: ignore[attr-defined]
        self.assertEqual(req.block_devices, (  # type: ignore[attr-defined]
            BlockDevice("image", IMAGE, True, 3, True),
            BlockDevice("volume", "v2", False, None, False)))
        req = self.parse(block_device_mapping_v2=[
            {"source_type": "snapshot", "destination_type": "volume", "uuid": "s",
             "boot_index": "0"}])
        self.assertEqual(req.block_devices[0].source, "snapshot")  # type: ignore[attr-defined]

    def test_other_mappings_refused(self):
        """Blank, swap and ephemeral disks, several boot disks, a volume on a
        local disk and a mapping that disagrees with imageRef are 400 with a
        message saying what is not supported."""
        bad = [
            {"block_device_mapping_v2": [local_boot(source_type="blank")]},
            {"block_device_mapping_v2": [local_boot(destination_type="volume"),
                                         local_boot(destination_type="volume",
                                                    source_type="volume")]},
            {"block_device_mapping_v2": [local_boot(destination_type="volume",
                                                    volume_size=0)]},
            {"block_device_mapping_v2": [local_boot(destination_type="volume",
                                                    delete_on_termination="x")]},
            {"block_device_mapping_v2": [local_boot(destination_type="volume", uuid="")]},
            {"block_device_mapping_v2": [{"source_type": "snapshot", "uuid": "s",
                                          "destination_type": "volume"}]},
            {"block_device_mapping_v2": [local_boot(), local_boot(boot_index=-1)]},
            {"block_device_mapping_v2": [local_boot(source_type="volume")]},
            {"block_device_mapping_v2": "x"},
            {"block_device_mapping": [{"volume_id": "v"}]},
            {"block_device_mapping_v2": [local_boot()], "imageRef": "other"},
            {},
        ]
        for extra in bad:
            with self.assertRaises(errors.BadRequest):
                self.parse(**extra)


class CreateRequestTests(unittest.TestCase):
    def test_personality_files(self):
        """Personality files become typed values that give snf-image the
        entries as sent (keys only when given); 413 past the limits."""
        req = parse_create({"name": "vm", "flavorRef": "https://x/flavors/3",
                            "imageRef": IMAGE, "personality": [
                                {"path": "/etc/motd", "contents": "aGk="},
                                {"path": "/root/x", "contents": "", "owner": "root",
                                 "mode": 0o600}]}, ComputeSettings())
        self.assertEqual(req.flavor_id, 3)
        self.assertEqual(req.personality, (
            PersonalityFile("/etc/motd", "aGk="),
            PersonalityFile("/root/x", "", owner="root", mode=0o600)))
        self.assertEqual([f.as_json() for f in req.personality], [
            {"path": "/etc/motd", "contents": "aGk="},
            {"path": "/root/x", "contents": "", "owner": "root", "mode": 0o600}])
        with self.assertRaises(errors.OverLimit):
            parse_create({"name": "vm", "flavorRef": 1, "imageRef": IMAGE,
                          "personality": [{"path": "/x", "contents": ""}] * 2},
                         ComputeSettings(max_personality=1))


class ActionRequestTests(unittest.TestCase):
    def test_actions(self):
        """Each action body becomes its typed value."""
        cases = [
            ({"os-start": None}, Start()),
            ({"shutdown": {}}, Stop()),
            ({"reboot": {"type": "hard"}}, Reboot(hard=True)),
            ({"reboot": {}}, Reboot(hard=False)),
            ({"resize": {"flavorRef": "7"}}, Resize(7)),
            ({"console": {"type": "vnc"}}, Console()),
            ({"firewallProfile": {"profile": "ENABLED", "nic": 1}}, Firewall("ENABLED", 1)),
            ({"reassign": {"project": "p2"}}, Reassign("p2", None)),
            ({"reassign": {"shared_to_project": True}}, Reassign(None, True)),
            ({"rescue": {}}, Rescue("default")),
            ({"rescue": {"rescue_image_ref": "r1"}}, Rescue("r1")),
            ({"createImage": {"name": "n", "metadata": {"k": "v"}}},
             CreateImage("n", {"k": "v"})),
            ({"createBackup": {"name": "b", "backup_type": "daily", "rotation": "2"}},
             CreateImage("b", None, ("daily", 2))),
            ({"changePassword": {}}, Unsupported("changePassword")),
            ({"suspend": None}, Unsupported("suspend", admin_only=True)),
        ]
        for body, expected in cases:
            self.assertEqual(parse_action(body), expected)

    def test_bad_actions(self):
        """Bad action bodies are 400 with the reference's messages."""
        cases = [
            ({}, "An action request has exactly one action."),
            ({"start": None, "stop": None}, "An action request has exactly one action."),
            ({"reboot": {"type": "gentle"}}, "The reboot type must be SOFT or HARD."),
            ({"resize": {}}, "resize needs a flavorRef."),
            ({"resize": {"flavorRef": "tiny"}}, "flavorRef 'tiny' is not a flavor id."),
            ({"console": {"type": "spice"}}, 'The console type must be "vnc".'),
            ({"firewallProfile": {"profile": "OPEN"}},
             "The firewall profile must be one of ENABLED, DISABLED, PROTECTED."),
            ({"reassign": {"shared_to_project": "yes"}},
             "shared_to_project must be true or false."),
            ({"reassign": {"project": ""}}, "project must be a non-empty string."),
            ({"fly": {}}, "Unknown action 'fly'."),
        ]
        for body, message in cases:
            with self.assertRaises(errors.BadRequest) as caught:
                parse_action(body)
            self.assertEqual(str(caught.exception), message)
