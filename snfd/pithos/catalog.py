"""The storage service's entries in the identity service's catalog
(Synnefo's service names): the Swift API per account, and public links."""

from snfd.interfaces import CatalogService

CATALOG = (
    CatalogService("pithos_object-store", "object-store", "object-store/v1", "v1",
                   per_account=True),
    CatalogService("pithos_public", "public", "public", ""),
)
