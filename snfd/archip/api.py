"""The volume API Ganeti's ExtStorage provider ``archipelago`` calls
(``share/ganeti/extstorage/archipelago``), mounted at ``/archip``.

For services only: a component token, or an administrator's.  JSON in and
out, sizes in bytes, errors as snfd's JSON faults.

- ``GET /archip/v1`` -> ``{"nbd": {"host", "port", "tls"}, "block_size"}``:
  where the NBD server listens (a volume's export name is its name) and
  whether it requires TLS (STARTTLS).
- ``GET /archip/v1/volumes/<name>`` -> the volume's info: ``name``,
  ``size``, ``read_only``, ``epoch``, ``objects`` (``owned``, ``shared``,
  ``zero``); 404 when absent.
- ``PUT /archip/v1/volumes/<name>`` ``{"size", "origin", "exist_ok"}`` ->
  201 and the info: a clone of the snapshot ``origin`` (nothing copied) or
  zeros when ``origin`` is null.  When the volume exists: 200, grown to
  ``size`` when smaller, if ``exist_ok``; else 409.  Unknown origin 404,
  blocks of the origin gone 409.
- ``DELETE /archip/v1/volumes/<name>`` -> 204; 404 when absent; 409 while
  open.
- ``POST /archip/v1/volumes/<name>/grow`` ``{"size"}`` -> 200 and the
  info; 400 when smaller than it is.
- ``POST /archip/v1/volumes/<name>/snapshot`` ``{"snapshot"}`` -> 201 and
  the snapshot's info.
"""

from __future__ import annotations

from typing import Any

import attrs
from klein import Klein

from snfd import errors
from snfd.archip.io import VolumeBusy
from snfd.archip.volumes import OriginIncomplete
from snfd.interfaces import IVolumes, VolumeInfo
from snfd.web.app import json_body, json_object, make_app, read_json
from snfd.web.auth import Principal

_MAX_BODY = 4096
#: The largest volume: 64 TiB (Ganeti's sizes are MiB in 32-bit fields
#: elsewhere; a map of 16 Mi entries is 2 GiB).
MAX_SIZE = 64 * 1024 ** 4


def info_json(info: VolumeInfo) -> dict[str, Any]:
    out = attrs.asdict(info)
    out["objects"] = {k: out.pop(k) for k in ("owned", "shared", "zero")}
    return out


def _caller(request: Any) -> Principal:
    p: Principal | None = getattr(request, "principal", None)
    if p is None:
        raise errors.Unauthorized("This request needs a service token (X-Auth-Token).")
    if not (p.is_component or p.is_admin):
        raise errors.Forbidden("The volume API is for services and administrators.")
    return p


def _size(body: dict[str, Any], key: str = "size") -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_SIZE:
        raise errors.BadRequest(f"{key} must be a whole number of bytes from 1 to {MAX_SIZE}.")
    return value


class VolumeExists(errors.Conflict):
    """409: the name is taken."""


async def _call(coro: Any, name: str) -> Any:
    """Await a volume call, its errors as HTTP faults."""
    try:
        return await coro
    except OriginIncomplete as e:
        raise errors.Conflict(str(e)) from None
    except KeyError:
        raise errors.NotFound(f"Volume {name} not found.") from None
    except FileExistsError:
        raise VolumeExists(f"Volume {name} exists.") from None
    except VolumeBusy as e:
        raise errors.Conflict(str(e) or f"Volume {name} is open.") from None
    except ValueError as e:
        raise errors.BadRequest(str(e)) from None


class ArchipAPI:
    def __init__(self, volumes: IVolumes, nbd: tuple[str, int], tls: bool = False):
        self._volumes = volumes
        self._nbd = nbd
        self._tls = tls
        self.app = self._routes()

    def resource(self) -> Any:
        return self.app.resource()

    def _routes(self) -> Klein:
        app = make_app()
        volumes = self._volumes

        @app.route("/v1", methods=["GET"])
        async def root(request: Any) -> bytes:
            _caller(request)
            host, port = self._nbd
            return json_body(request, {"nbd": {"host": host, "port": port, "tls": self._tls},
                                       "block_size": volumes.block_size})

        @app.route("/v1/volumes/<name>", methods=["GET"])
        async def show(request: Any, name: str) -> bytes:
            _caller(request)
            return json_body(request, info_json(await _call(volumes.info(name), name)))

        @app.route("/v1/volumes/<name>", methods=["PUT"])
        async def create(request: Any, name: str) -> bytes:
            _caller(request)
            body = json_object(read_json(request, _MAX_BODY))
            size = _size(body)
            origin = body.get("origin")
            if origin is not None and not isinstance(origin, str):
                raise errors.BadRequest("origin must be a volume name or null.")
            exist_ok = body.get("exist_ok", False)
            if not isinstance(exist_ok, bool):
                raise errors.BadRequest("exist_ok must be true or false.")
            try:
                if origin:
                    info = await _call(volumes.clone(name, origin, size), origin)
                else:
                    info = await _call(volumes.create(name, size), name)
            except VolumeExists:
                if not exist_ok:
                    raise
                info = await _call(volumes.info(name), name)
                if info.read_only:
                    raise errors.Conflict(f"{name} is a snapshot, not a volume.") from None
                if info.size < size:
                    info = await _call(volumes.grow(name, size), name)
                return json_body(request, info_json(info))
            return json_body(request, info_json(info), 201)

        @app.route("/v1/volumes/<name>", methods=["DELETE"])
        async def remove(request: Any, name: str) -> bytes:
            _caller(request)
            await _call(volumes.remove(name), name)
            request.setResponseCode(204)
            return b""

        @app.route("/v1/volumes/<name>/grow", methods=["POST"])
        async def grow(request: Any, name: str) -> bytes:
            _caller(request)
            size = _size(json_object(read_json(request, _MAX_BODY)))
            return json_body(request, info_json(await _call(volumes.grow(name, size), name)))

        @app.route("/v1/volumes/<name>/snapshot", methods=["POST"])
        async def snapshot(request: Any, name: str) -> bytes:
            _caller(request)
            body = json_object(read_json(request, _MAX_BODY))
            snap = body.get("snapshot")
            if not isinstance(snap, str) or not snap:
                raise errors.BadRequest("snapshot must name the new snapshot.")
            info = await _call(volumes.snapshot(name, snap), snap)
            return json_body(request, info_json(info), 201)

        return app


__all__ = ["MAX_SIZE", "ArchipAPI", "info_json"]
