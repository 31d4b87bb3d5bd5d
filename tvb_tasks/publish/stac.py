"""STAC catalogue of the releases (pystac): one Collection per territory, one Item per release.

* Item: ``releases/<t>/<id>/stac/item.json`` (immutable, part of the release and its manifest). Assets carry
  ``href`` (relative), ``type``, ``roles``, ``file:checksum`` (multihash sha2-256: ``"1220" + hex``) and
  ``file:size`` (File Info extension v2.1.0); the Version extension (v1.2.0) gives ``version`` = release id and
  links ``predecessor-version`` (previous live release) and ``latest-version`` (``releases/<t>/latest/stac/
  item.json``, a copy of the live release's Item refreshed after every pointer swap).
* Collection: ``releases/<t>/collection.json`` (mutable, regenerated from the manifests after each swap or prune,
  written with compare-and-swap), linking every complete release's Item.
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pystac
from pystac.extensions.file import FileExtension
from pystac.extensions.version import VersionExtension

from tvb_tasks.errors import InvalidInputError

from ..store import NotFound, PreconditionFailed, Store

log = logging.getLogger(__name__)

ITEM_PATH = "stac/item.json"
DEFAULT_LICENSE = "etalab-2.0"

_ROLES = (
    ("tvb.gpkg", ["data"], "GeoPackage : toutes les couches de la trame verte et bleue"),
    ("parquet/", ["data"], "GeoParquet : couche {stem}"),
    ("rasters/", ["data"], "Raster COG : {stem}"),
    ("web/tvb.pmtiles", ["tiles", "visual"], "Tuiles vectorielles PMTiles de la carte web"),
    ("web/index.html", ["visual"], "Carte web interactive"),
    ("report/index.html", ["overview"], "Rapport de l'observatoire"),
    ("indicators/", ["metadata"], "Indicateurs : {name}"),
    ("validation/", ["metadata"], "Validation : {name}"),
    ("qgis/", ["visual"], "Projet QGIS / Lizmap : {name}"),
)


def multihash_sha256(hex_digest: str) -> str:
    """Multihash of a sha2-256 digest: code 0x12, length 0x20, then the digest (hex)."""
    if len(hex_digest) != 64:
        raise InvalidInputError(f"not a sha256 hex digest: {hex_digest!r}")
    return "1220" + hex_digest.lower()


def _asset_meta(path: str) -> tuple[list[str], str] | None:
    """Roles and French title of a staged file, or None when it is not an Item asset (web libraries, deep files)."""
    p = Path(path)
    for prefix, roles, title in _ROLES:
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            if prefix.endswith("/") and path.count("/") > 1:
                return None
            return roles, title.format(stem=p.stem, name=p.name)
    return None


def wgs84_bounds(gpkg: Path) -> list[float] | None:
    """[west, south, east, north] (EPSG:4326) of all layers of a GeoPackage, or None if empty/unreadable."""
    import pyogrio
    from pyproj import CRS, Transformer

    bounds = None
    to_wgs84: dict[str, Transformer] = {}     # one per CRS (the layers share one): ~3 ms to build each
    try:
        layers = pyogrio.list_layers(gpkg)
    except Exception:  # noqa: BLE001
        return None
    for name, geom_type in layers:
        if geom_type is None:
            continue
        info = pyogrio.read_info(gpkg, layer=name, force_total_bounds=True)
        tb = info.get("total_bounds")
        if tb is None or info.get("features", 0) == 0 or not info.get("crs"):
            continue
        if info["crs"] not in to_wgs84:
            to_wgs84[info["crs"]] = Transformer.from_crs(CRS.from_user_input(info["crs"]), "EPSG:4326", always_xy=True)
        b = to_wgs84[info["crs"]].transform_bounds(*tb)
        bounds = list(b) if bounds is None else [min(bounds[0], b[0]), min(bounds[1], b[1]),
                                                 max(bounds[2], b[2]), max(bounds[3], b[3])]
    return [round(v, 7) for v in bounds] if bounds else None


def _bbox_geometry(bbox: list[float]) -> dict:
    w, s, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _source_credits(territory) -> list[dict]:
    """Licence and attribution of every source with a publisher's schema (config/schemas/)."""
    from tvb_tasks.sources.schemas import source_credits

    return source_credits(territory)


def build_item(territory, release_id: str, released_at: datetime, entries: list[dict], staging_dir: Path, *,
               previous_release_id: str | None, input_key: str, code_version: str) -> dict:
    """The release's STAC Item as a dict (hrefs relative to ``<release>/stac/item.json``)."""
    bbox = wgs84_bounds(Path(staging_dir) / "tvb.gpkg")
    label = territory.short_name or territory.name
    item = pystac.Item(
        id=f"{territory.id}-{release_id}",
        geometry=_bbox_geometry(bbox) if bbox else None,
        bbox=bbox,
        datetime=released_at.astimezone(UTC),
        properties={
            "title": f"Trame verte et bleue — {label} — publication {release_id}",
            "description": f"Observatoire de la trame verte et bleue de {territory.name} : couches, rasters, "
                           "indicateurs, rapport et carte web de la publication.",
            "tvb:territory": territory.id,
            "tvb:input_key": input_key,
            "tvb:code_version": code_version,
            "tvb:config_hash": territory.config_hash(),
            "tvb:sources": _source_credits(territory),
        },
        collection=f"tvb-{territory.id}",
    )
    for e in entries:
        meta = _asset_meta(e["path"])
        if meta is None:
            continue
        roles, title = meta
        asset = pystac.Asset(href=f"../{e['path']}", media_type=e["media_type"], roles=roles, title=title)
        item.add_asset(e["path"].replace("/", "-"), asset)
        fe = FileExtension.ext(asset, add_if_missing=True)
        fe.checksum = multihash_sha256(e["sha256"])
        fe.size = e["size"]
    ve = VersionExtension.ext(item, add_if_missing=True)
    ve.version = release_id
    ve.deprecated = False
    item.add_link(pystac.Link("latest-version", "../../latest/stac/item.json", media_type="application/geo+json",
                              title="Publication en ligne"))
    if previous_release_id:
        item.add_link(pystac.Link("predecessor-version", f"../../{previous_release_id}/{ITEM_PATH}",
                                  media_type="application/geo+json", title=f"Publication {previous_release_id}"))
    for rel in ("collection", "parent", "root"):
        item.add_link(pystac.Link(rel, "../../collection.json", media_type="application/json",
                                  title=f"Trame verte et bleue — {label}"))
    for url in dict.fromkeys(c["licence_url"] for c in item.properties["tvb:sources"] if c["licence_url"]):
        item.add_link(pystac.Link("license", url, media_type="text/html", title="Licence d'une source"))
    item.add_link(pystac.Link("describedby", "../manifest.json", media_type="application/json",
                              title="Manifeste de la publication (sommes de contrôle, sources, validation)"))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def relocate_item_for_latest(item: dict, release_id: str) -> dict:
    """A copy of an Item for ``releases/<t>/latest/stac/item.json``: asset hrefs point into the release."""
    out = json.loads(json.dumps(item))
    for asset in out.get("assets", {}).values():
        if asset["href"].startswith("../"):
            asset["href"] = f"../../{release_id}/{asset['href'][3:]}"
    for link in out.get("links", []):
        if link["href"] == "../manifest.json":
            link["href"] = f"../../{release_id}/manifest.json"
    return out


def build_collection(territory_id: str, items: list[dict], *, title: str, description: str,
                     license: str = DEFAULT_LICENSE) -> dict:
    """The territory's Collection (dict) linking ``items`` (Item dicts, newest first) by relative href."""
    bboxes = [i["bbox"] for i in items if i.get("bbox")]
    bbox = ([min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes),
             max(b[3] for b in bboxes)] if bboxes else [-180.0, -90.0, 180.0, 90.0])
    times = sorted(datetime.fromisoformat(i["properties"]["datetime"].replace("Z", "+00:00")) for i in items)
    start = times[0] if times else datetime.now(UTC)
    coll = pystac.Collection(
        id=f"tvb-{territory_id}", title=title, description=description, license=license,
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[start, None]])),
        keywords=["trame verte et bleue", "continuités écologiques", "corridors", "réservoirs de biodiversité"],
        providers=[pystac.Provider(name="Observatoire TVB", roles=[pystac.ProviderRole.PROCESSOR,
                                                                     pystac.ProviderRole.HOST])],
    )
    coll.add_link(pystac.Link("root", "./collection.json", media_type="application/json", title=title))
    for item in items:
        rid = item["properties"].get("version") or item["id"].split("-", 1)[-1]
        coll.add_link(pystac.Link("item", f"./{rid}/{ITEM_PATH}", media_type="application/geo+json",
                                  title=item["properties"].get("title")))
    return coll.to_dict(include_self_link=False, transform_hrefs=False)


def update_collection(store: Store, territory_id: str, attempts: int = 5) -> dict:
    """Regenerate ``releases/<t>/collection.json`` from the complete releases, with compare-and-swap retries."""
    from .admin import list_releases
    from .layout import collection_key, pretty_json, release_prefix

    key = collection_key(territory_id)
    for _ in range(attempts):
        info = store.head(key)
        items, name, lic = [], territory_id, DEFAULT_LICENSE
        for r in list_releases(store, territory_id):
            try:
                items.append(json.loads(store.get_bytes(f"{release_prefix(territory_id, r['release_id'])}/{ITEM_PATH}")))
            except NotFound:
                log.warning("release %s has no STAC item", r["release_id"])
        if items:
            from .release import load_manifest
            m = load_manifest(store, territory_id, items[0]["properties"]["version"])
            name = m.get("territory_name") or territory_id
        coll = build_collection(
            territory_id, items, title=f"Trame verte et bleue — {name}", license=lic,
            description=f"Publications successives de l'observatoire de la trame verte et bleue ({name}) : "
                        "réservoirs, zones relais, corridors, points de rupture, indicateurs.")
        try:
            store.put_bytes(key, pretty_json(coll), if_match=info.etag if info else "",
                            content_type="application/json")
            return coll
        except PreconditionFailed:
            continue
    raise PreconditionFailed(f"{store.url(key)}: changed concurrently {attempts} times; not updated")
