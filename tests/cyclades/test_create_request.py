"""What a create request may say about its boot disk: ``openstack server
create --image`` sends the image as a one-entry block device mapping."""

from __future__ import annotations

from twisted.trial import unittest

from snfd import errors
from snfd.cyclades.servers import ComputeSettings, parse_create

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

    def test_other_mappings_refused(self):
        """Volumes, several disks and a mapping that disagrees with imageRef
        are 400 with a message saying what is not supported."""
        bad = [
            {"block_device_mapping_v2": [local_boot(destination_type="volume")]},
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
