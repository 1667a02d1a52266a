"""The storage service's entries in the identity service's catalog
(Synnefo's service names): the Swift API per account, and public links.

The object store answers both at Synnefo's ``/object-store/v1/<account>``
and at Swift's own ``/v1/<account>``; ``[pithos] storage_url_path``
chooses which one the catalog (and v1 auth's ``X-Storage-Url``)
advertises."""

from typing import Any

from snfd.interfaces import CatalogService

STORAGE_URL_PATHS = ("object-store/v1", "v1")
"""Where the object store answers, below the cluster's public URL."""

CATALOG = (
    CatalogService("pithos_object-store", "object-store", "object-store/v1", "v1",
                   per_account=True),
    CatalogService("pithos_public", "public", "public", ""),
)


def storage_url_path(value: str) -> str:
    """The ``[pithos] storage_url_path`` value: one of ``STORAGE_URL_PATHS``
    (slashes around it ignored)."""
    v = value.strip().strip("/")
    if v not in STORAGE_URL_PATHS:
        raise ValueError(f"expected {' or '.join(STORAGE_URL_PATHS)}, got {value.strip()!r}")
    return v


def catalog_for(section: Any) -> tuple[CatalogService, ...]:
    """The entries as the ``[pithos]`` section configures them: the
    object store at its ``storage_url_path``."""
    path = getattr(section, "storage_url_path", "") or CATALOG[0].path
    store, *rest = CATALOG
    return (CatalogService(store.name, store.type, path, store.version,
                           per_account=store.per_account), *rest)
