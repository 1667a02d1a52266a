"""Swift's static web (its ``staticweb`` middleware): a container served as
a web site, as a ``Filter`` (``snfd.pithos.middleware``).

The container's metadata say how::

    X-Container-Meta-Web-Index           index.html   (served for .../dir/)
    X-Container-Meta-Web-Error           error.html   (404error.html for a 404)
    X-Container-Meta-Web-Listings        true         (HTML listings)
    X-Container-Meta-Web-Listings-CSS    listing.css  (their style sheet)
    X-Container-Meta-Web-Listings-Label  example.com  (their title)
    X-Container-Meta-Web-Directory-Type  text/directory
                                         (default application/directory)

Static web answers ``GET`` and ``HEAD`` of a container or object from a
caller without a token (who reads a container open to all, ``X-Container-
Read: .r:*``; see ``snfd.pithos.permissions``), and from a caller with a
token who asks for it with ``X-Web-Mode: true``; anyone else gets the
plain API.  For them:

- A container (or a pseudo directory ``.../dir/``) with an index serves
  ``<dir>/<index>``; without one, or when it is missing, an HTML listing
  when listings are on (with a ``.r:*`` container this is as Swift's
  ``.rlistings``: in Pithos whoever may read may list), else a 404 page.
  A path to one without its trailing ``/`` is redirected (301) to it.
- A directory marker (an object of the directory type, at most one byte)
  reads as missing.
- A 404 (and a refused container read, 401/403) serves the object
  ``<status><error>`` at the container's top with the original status,
  when there is one.

Reads go through the rest of the chain as the caller, so they are
authorized as any request is; the metadata are read as the container's
settings (``container_settings``) and never sent as they are.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import attrs

from snfd import errors
from snfd.pithos import headers as hdr
from snfd.pithos.middleware import Handler, container_settings
from snfd.pithos.model import ObjectInfo, Subdir
from snfd.pithos.requests import TRUE, Call, Reply, Target

DIRECTORY_TYPE = "application/directory"
"""The type of directory markers unless the container names another."""

HTML = "text/html; charset=UTF-8"

_STYLE = ("  <style type=\"text/css\">\n"
          "   h1 {font-size: 1em; font-weight: bold;}\n"
          "   th {text-align: left; padding: 0px 1em 0px 1em;}\n"
          "   td {padding: 0px 1em 0px 1em;}\n"
          "   a {text-decoration: none;}\n"
          "  </style>\n")


@attrs.frozen
class Site:
    """A container's static web settings (empty strings when unset)."""

    index: str = ""
    error: str = ""
    listings: str = ""
    css: str = ""
    label: str = ""
    directory_type: str = ""

    @classmethod
    def of(cls, meta: Mapping[str, str]) -> Site:
        """The settings in a container's metadata."""
        def get(key: str) -> str:
            return meta.get(f"X-Container-Meta-Web-{key}", "").strip()
        return cls(get("Index"), get("Error"), get("Listings"), get("Listings-Css"),
                   get("Listings-Label"), get("Directory-Type"))

    @property
    def listing(self) -> bool:
        return self.listings.lower() in TRUE


def human_size(size: int) -> str:
    """A byte count as Swift's listings show it: ``999``, ``2Ki``, ``5Mi``
    (rounded to the nearest unit, binary prefixes)."""
    value, unit = size, ""
    for prefix in "KMGTPEZY":
        if value < 1024:
            break
        value, unit = round(value / 1024.0), prefix
    return f"{value}{unit}i" if unit else str(value)


def _href(name: str) -> str:
    # Dots are escaped so that a name like ``..`` stays a name.
    return "./" + quote(name).replace(".", "%2E")


def css_href(css: str, prefix: str) -> str:
    """The style sheet's link from a listing of ``prefix``: absolute URLs
    and paths as they are, others relative to the container."""
    if css.startswith(("/", "http://", "https://")):
        return quote(css, safe=":/")
    return "../" * prefix.count("/") + quote(css)


def listing_page(label: str, prefix: str, entries: list[ObjectInfo | Subdir],
                 css: str) -> bytes:
    """The HTML listing of ``entries`` (names under ``prefix``), in the
    structure Swift's listings have, for style sheets written for them."""
    title = html.escape(label)
    out = ["<!DOCTYPE html>\n<html>\n <head>\n",
           f"  <title>Listing of {title}</title>\n"]
    if css:
        out.append('  <link rel="stylesheet" type="text/css" '
                   f'href="{css_href(css, prefix)}" />\n')
    else:
        out.append(_STYLE)
    out += [" </head>\n <body>\n",
            f'  <h1 id="title">Listing of {title}</h1>\n',
            '  <table id="listing">\n',
            '   <tr id="heading">\n',
            '    <th class="colname">Name</th>\n',
            '    <th class="colsize">Size</th>\n',
            '    <th class="coldate">Date</th>\n',
            "   </tr>\n"]
    if prefix:
        out.append(_row('id="parent" class="item"', "../", "../", "&nbsp;", "&nbsp;"))
    for e in entries:
        if isinstance(e, Subdir):
            name = e.name[len(prefix):]
            out.append(_row('class="item subdir"', _href(name), html.escape(name),
                            "&nbsp;", "&nbsp;"))
    for e in entries:
        if isinstance(e, ObjectInfo):
            name = e.name[len(prefix):]
            kinds = " ".join("type-" + html.escape(t.lower()) for t in e.type.split("/"))
            date = hdr.iso_date(e.mtime).split(".")[0].replace("T", " ")
            out.append(_row(f'class="item {kinds}"', _href(name), html.escape(name),
                            human_size(e.size), date))
    out.append("  </table>\n </body>\n</html>\n")
    return "".join(out).encode("utf-8")


def _row(attrs_: str, href: str, text: str, size: str, date: str) -> str:
    return (f"   <tr {attrs_}>\n"
            f'    <td class="colname"><a href="{href}">{text}</a></td>\n'
            f'    <td class="colsize">{size}</td>\n'
            f'    <td class="coldate">{date}</td>\n'
            "   </tr>\n")


def disabled_page(label: str, site: Site, prefix: str) -> bytes:
    """The 404 page of a directory without an index when listings are off."""
    out = ["<!DOCTYPE html>\n<html>\n<head>\n",
           f"<title>Listing of {html.escape(label)}</title>\n"]
    if site.css:
        out.append('  <link rel="stylesheet" type="text/css" '
                   f'href="{css_href(site.css, prefix)}" />\n')
    out += ["</head>\n<body>\n",
            "  <h1>Web Listing Disabled</h1>\n",
            "  <p>The owner of this web site has disabled web listing.</p>\n",
            "  <p>If you are the owner of this web site, you can enable web listing"
            " by setting X-Container-Meta-Web-Listings.</p>\n"]
    if site.index:
        out.append("  <h1>Index File Not Found</h1>\n"
                   "  <p>The owner of this web site has set"
                   f" <b>X-Container-Meta-Web-Index: {html.escape(site.index)}</b>."
                   " However, this file is not found.</p>\n")
    out.append("</body>\n</html>\n")
    return "".join(out).encode("utf-8")


class StaticWeb:
    """The static web ``Filter``; see the module docstring."""

    def __init__(self, backend: Any):
        self.backend = backend

    @classmethod
    def from_api(cls, api: Any) -> StaticWeb:
        """The filter of ``api`` (a ``PithosAPI``)."""
        return cls(api.backend)

    def info(self) -> dict[str, Any]:
        return {"staticweb": {}}

    async def __call__(self, call: Call, app: Handler) -> Reply:
        t = call.target
        if call.method not in ("GET", "HEAD") or t.level not in ("container", "object"):
            return await app(call)
        if not call.anonymous and (call.header("X-Web-Mode") or "").strip().lower() \
                not in TRUE:
            return await app(call)
        assert t.account is not None and t.container is not None
        settings = await container_settings(call, self.backend, t.account, t.container)
        if settings is None:
            return await app(call)
        site = Site.of(settings.meta)
        if t.name is None:
            return await self._container(call, app, site)
        return await self._object(call, app, site)

    # -- the two kinds of request --------------------------------------------------

    async def _container(self, call: Call, app: Handler, site: Site) -> Reply:
        t = call.target
        try:
            # Whether the caller may read the container, as the API decides.
            await app(self._sub(call, "HEAD", t.account, t.container))
        except (errors.Unauthorized, errors.Forbidden, errors.NotFound) as e:
            return await self._error(call, app, site, e)
        if not site.listing and not site.index:
            if not call.anonymous:
                raise errors.NotFound("This container is not a web site.")
            return await app(call)
        if not _slashed(call):
            return _redirect(call)
        if not site.index:
            return await self._listing(call, app, site, "")
        try:
            return await app(self._sub(call, call.method, t.account, t.container,
                                       site.index, args=call.args))
        except errors.NotFound:
            return await self._listing(call, app, site, "")
        except errors.Fault as e:
            return await self._error(call, app, site, e)

    async def _object(self, call: Call, app: Handler, site: Site) -> Reply:
        t = call.target
        assert t.name is not None
        try:
            reply = await app(call)
        except errors.NotFound as e:
            missing: errors.Fault = e
        else:
            if not _is_directory(reply, site):
                return reply
            missing = errors.NotFound("Object does not exist.")
        if not site.listing and not site.index:
            raise missing
        if site.index:
            name = t.name if t.name.endswith("/") else t.name + "/"
            try:
                reply = await app(self._sub(call, call.method, t.account, t.container,
                                            name + site.index, args=call.args))
            except errors.NotFound:
                pass
            else:
                return reply if _slashed(call) else _redirect(call)
        if _slashed(call):
            return await self._listing(call, app, site, t.name)
        assert t.account is not None and t.container is not None
        below = await self.backend.objects(call.user, t.account, t.container,
                                           prefix=t.name + "/", delimiter="/", limit=1)
        if not below:
            return await self._error(call, app, site, missing)
        return _redirect(call)

    # -- pieces ----------------------------------------------------------------------

    async def _listing(self, call: Call, app: Handler, site: Site, prefix: str) -> Reply:
        """The HTML listing of ``prefix`` (a pseudo directory, ``/``-ended,
        or ``""`` for the container's top)."""
        t = call.target
        assert t.account is not None and t.container is not None
        label = _label(call, site, prefix)
        if not site.listing:
            page = Reply(404, body=disabled_page(label, site, prefix), content_type=HTML)
            return await self._error(call, app, site, page)
        try:
            entries = await self.backend.objects(call.user, t.account, t.container,
                                                 prefix=prefix, delimiter="/")
        except errors.Fault as e:
            return await self._error(call, app, site, e)
        if prefix and not entries:
            return await self._error(call, app, site,
                                     errors.NotFound("No such directory."))
        return Reply(200, body=listing_page(label, prefix, entries, site.css),
                     content_type=HTML)

    async def _error(self, call: Call, app: Handler, site: Site,
                     answer: errors.Fault | Reply) -> Reply:
        """``answer`` (a fault or an error page), or in its place the
        container's ``<status><error>`` object with ``answer``'s status."""
        code = answer.code
        if site.error:
            t = call.target
            try:
                page = await app(self._sub(call, "GET", t.account, t.container,
                                           f"{code}{site.error}"))
            except errors.Fault:
                pass
            else:
                if 200 <= page.code < 300:
                    return attrs.evolve(page, code=code)
        if isinstance(answer, Reply):
            return answer
        raise answer

    @staticmethod
    def _sub(call: Call, method: str, account: str | None, container: str | None,
             name: str | None = None, args: dict[str, str] | None = None) -> Call:
        """A request of the chain's own, for the same caller."""
        return Call(call.request, method, Target(account, container, name), args or {})


def _slashed(call: Call) -> bool:
    """Whether the request's path ends with ``/``."""
    return bool(call.request.path.endswith(b"/"))


def _redirect(call: Call) -> Reply:
    """301 to the request's path with a trailing ``/`` (no query)."""
    location = quote(unquote_to_bytes(call.request.path), safe="/") + "/"
    return Reply(301, [("Location", location)])


def _label(call: Call, site: Site, prefix: str) -> str:
    """What a listing says it lists: the request's path, or the
    container's label followed by the directory."""
    if site.label:
        return f"{site.label}/{prefix}"
    return unquote_to_bytes(call.request.path).decode("utf-8", "replace")


def _is_directory(reply: Reply, site: Site) -> bool:
    """A directory marker: an object of the directory type with at most
    one byte, which static web reads as missing."""
    if reply.code // 100 != 2:
        return False
    kind = reply.content_type or dict(reply.headers).get("Content-Type", "")
    size = reply.length if reply.stream is not None else len(reply.body)
    return kind == (site.directory_type or DIRECTORY_TYPE) and (size or 0) <= 1



__all__ = ["DIRECTORY_TYPE", "Site", "StaticWeb", "css_href", "disabled_page",
           "human_size", "listing_page"]
