"""The one Keystone domain of an Astakos cloud: ``Default`` (id
``default``).  Every user, project, group and grant belongs to it."""

from __future__ import annotations

DOMAIN_ID = "default"
DOMAIN_NAME = "Default"
DOMAIN = {"id": DOMAIN_ID, "name": DOMAIN_NAME}
