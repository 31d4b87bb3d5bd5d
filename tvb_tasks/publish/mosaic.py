"""The regional mosaic release: the LIVE releases of a region's member territories assembled into one release.

The mosaic **assembles, it does not recompute**: each member's layers are the ones its own run published; corridors
are not joined across a border between members, connectivity is not recomputed over the union (for continuity
across the borders, run the region as one tiled territory). Member releases are only read, never modified.

What it holds (published under ``releases/<region id>/<release id>/`` with the territories' protocol of
:func:`.release.publish_release`: create-only objects, manifest written last, compare-and-swap of ``latest.json``):

* ``tvb.gpkg`` — for every layer of the members' ``tvb.gpkg``, the concatenation of the members' features, with a
  ``territoire`` column (member territory id); identifiers made unique by prefixing ``<territory>:`` to the
  columns ``id``, ``*_id`` and to every item of ``*_ids`` lists (so ``corridor_id`` still points at its corridor).
* ``indicators/key_figures.csv`` and ``indicators/mosaic.json`` — the key figures per member and for the region:
  figures in ha, km or counts (:data:`~tvb_tasks.indicators.key_figures.KEY_FIGURES` units) are summed; shares of
  the territory area (``*_share_pct``) are recomputed as area-weighted means (Σ share × area / Σ area, exact since
  each share is a surface over ``territory_area_ha``); any other figure (a ratio or mean that cannot be summed, or
  one missing in a member) is omitted from the region totals and listed as such.
* ``report/index.html`` — a French page listing the members with their release ids and relative links to their
  reports, web maps and manifests, the key figures, and what the mosaic does not do.
* the manifest (``sources``: one entry per member: its release id, manifest key and manifest sha256, so the mosaic's
  provenance is checkable) and the STAC Item.

Unchanged detection: the mosaic's input key is the sha256 of the member release ids and the region's configuration,
so a run whose members all have the same live release as the live mosaic publishes nothing ("unchanged").
Bad input — a member with no live release, a manifest or GeoPackage that does not match its recorded checksum,
another CRS or another layer schema — raises :class:`MosaicError` naming the member; nothing is published.
"""
from __future__ import annotations

import csv
import hashlib
import html
import json
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from ..contracts import MosaicMember, MosaicResult
from ..errors import DeterministicError
from ..store import NotFound, Store, sha256_file
from .layout import input_key, manifest_key, new_run_nonce, release_id_for
from .release import PublishError, publish_release, read_latest

MOSAIC_FORMAT = "tvb-mosaic/1"
TERRITORY_COLUMN = "territoire"
ADDITIVE_UNITS = ("ha", "km", "nombre")
AREA_FIGURE = "territory_area_ha"


class MosaicError(PublishError, DeterministicError):
    """A member release cannot be assembled (named in the message); nothing was published."""


@dataclass(frozen=True)
class MemberRelease:
    """The live release of one member, as read from the store (``manifest_sha256`` checked against the pointer)."""

    territory: str
    release_id: str
    manifest: dict
    manifest_sha256: str

    def file(self, path: str) -> dict:
        """The manifest entry of ``path`` (``tvb.gpkg``…); :class:`MosaicError` when the release has none."""
        for entry in self.manifest.get("files", []):
            if entry.get("path") == path:
                return entry
        raise MosaicError(f"member {self.territory}: release {self.release_id} has no {path}")


@dataclass(frozen=True)
class MosaicPublisher:
    """What :func:`.release.publish_release` and the STAC Item read of a territory, for a region: id, names,
    configuration hash, profile, publish settings and (for the Item's source credits) the members' sources."""

    id: str
    name: str
    short_name: str | None
    publish: Any
    region_hash: str
    sources: dict = field(default_factory=dict)
    profile: str = "default"

    def config_hash(self) -> str:
        return self.region_hash


# --- reading the members ------------------------------------------------------------------------------------------
def read_member_release(store: Store, territory_id: str) -> MemberRelease:
    """The live release of ``territory_id``: its pointer, and its manifest checked against the pointer's sha256."""
    latest, _ = read_latest(store, territory_id)
    if not latest or not latest.get("release_id"):
        raise MosaicError(f"member {territory_id}: no live release (releases/{territory_id}/latest.json missing): "
                          f"run tvb_observatory_{territory_id} first; nothing published")
    rid = latest["release_id"]
    try:
        data = store.get_bytes(manifest_key(territory_id, rid))
    except NotFound:
        raise MosaicError(f"member {territory_id}: its live release {rid} has no manifest; nothing published"
                          ) from None
    sha = hashlib.sha256(data).hexdigest()
    if latest.get("manifest_sha256") and latest["manifest_sha256"] != sha:
        raise MosaicError(f"member {territory_id}: the manifest of release {rid} does not match the sha256 recorded "
                          "in its latest.json (changed after publication?); nothing published")
    return MemberRelease(territory_id, rid, json.loads(data), sha)


def download_member_gpkg(store: Store, member: MemberRelease, folder: Path) -> Path:
    """The member's ``tvb.gpkg`` downloaded into ``folder``, checked against its manifest's sha256."""
    entry = member.file("tvb.gpkg")
    path = store.download(entry["key"], Path(folder) / f"{member.territory}.gpkg")
    if sha256_file(path) != entry["sha256"]:
        raise MosaicError(f"member {member.territory}: {entry['key']} does not match the sha256 of its manifest; "
                          "nothing published")
    return path


def mosaic_input_key(region_hash: str, members: list[MemberRelease]) -> str:
    """The mosaic's input key: member release ids + region configuration (+ mosaic format)."""
    return input_key({m.territory: m.release_id for m in members}, region_hash, MOSAIC_FORMAT)


# --- layers -------------------------------------------------------------------------------------------------------
def _prefix(value: Any, territory: str) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return f"{territory}:{value}"


def unique_ids(frame, territory: str):
    """``frame`` with ``territoire`` = ``territory`` first and ``<territory>:`` before every value of the columns
    ``id`` and ``*_id`` and every item of ``*_ids`` (items separated by ``,`` or ``;``)."""
    out = frame.copy()
    for col in out.columns:
        if col == "id" or col.endswith("_id"):
            out[col] = out[col].map(lambda v: _prefix(v, territory)).astype(object)
        elif col.endswith("_ids"):
            out[col] = out[col].map(lambda v: v if not isinstance(v, str) else
                                    re.sub(r"[^,;\s]+", lambda m: f"{territory}:{m.group(0)}", v))
    out.insert(0, TERRITORY_COLUMN, territory)
    return out


def assemble_layers(gpkgs: dict[str, Path], crs: str, out: Path) -> dict[str, int]:
    """Write into ``out`` (GeoPackage) every layer of the members' GeoPackages (``{territory: path}``, in order),
    concatenated with :func:`unique_ids`. Every member must have the same layers, each with the same columns, in
    ``crs``; otherwise :class:`MosaicError` naming the member, the layer and the difference. Returns features per
    layer."""
    import geopandas as gpd
    import pandas as pd
    import pyogrio
    from pyproj import CRS

    want = CRS.from_user_input(crs)
    layer_sets = {tid: [str(name) for name, _ in pyogrio.list_layers(p)] for tid, p in gpkgs.items()}
    first = next(iter(gpkgs))
    for tid, names in layer_sets.items():
        if set(names) != set(layer_sets[first]):
            raise MosaicError(f"member {tid}: its layers differ from member {first}'s (missing "
                              f"{sorted(set(layer_sets[first]) - set(names))}, extra "
                              f"{sorted(set(names) - set(layer_sets[first]))}); nothing published")
    counts: dict[str, int] = {}
    for layer in layer_sets[first]:
        frames, columns = [], None
        for tid, path in gpkgs.items():
            frame = pyogrio.read_dataframe(path, layer=layer)
            if frame.crs is None or not CRS.from_user_input(frame.crs).equals(want):
                raise MosaicError(f"member {tid}: layer {layer} is in {frame.crs}, the region's CRS is {crs}; "
                                  "nothing published")
            cols = [c for c in frame.columns if c != frame.geometry.name]
            if columns is None:
                columns = cols
            elif set(cols) != set(columns):
                raise MosaicError(f"member {tid}: layer {layer} has other columns than member {first}'s (missing "
                                  f"{sorted(set(columns) - set(cols))}, extra {sorted(set(cols) - set(columns))}); "
                                  "nothing published")
            frames.append(unique_ids(frame, tid))
        merged = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry=frames[0].geometry.name, crs=want)
        pyogrio.write_dataframe(merged, out, layer=layer, driver="GPKG",
                                promote_to_multi=len({t for f in frames for t in f.geom_type.dropna().unique()}) > 1)
        counts[layer] = len(merged)
    return counts


# --- key figures --------------------------------------------------------------------------------------------------
def region_key_figures(members: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"members": {territory: figures}, "region": totals, "summed": [...], "recomputed": [...], "omitted":
    [...]}`` from each member's key figures (the ``indicators`` of its manifest). Summed: figures whose unit is
    ha, km or a count; recomputed: ``*_share_pct`` as Σ share × area / Σ area (area ``territory_area_ha``);
    omitted: any other figure, and any figure missing in a member."""
    from ..indicators.key_figures import KEY_FIGURES

    keys = list(dict.fromkeys(k for figures in members.values() for k in figures))
    region: dict[str, Any] = {}
    summed, recomputed, omitted = [], [], []
    for key in keys:
        raw = [figures.get(key) for figures in members.values()]
        values: list[int | float] = [v for v in raw if isinstance(v, (int, float)) and not isinstance(v, bool)]
        unit = KEY_FIGURES.get(key, ("", ""))[1]
        if len(values) != len(raw):
            omitted.append(key)
        elif unit in ADDITIVE_UNITS:
            total = sum(values)
            region[key] = int(total) if all(isinstance(v, int) for v in values) else float(total)
            summed.append(key)
        elif unit == "%" and key.endswith("_share_pct") and all(
                isinstance(f.get(AREA_FIGURE), (int, float)) for f in members.values()):
            area = sum(f[AREA_FIGURE] for f in members.values())
            region[key] = sum(f[key] * f[AREA_FIGURE] for f in members.values()) / area if area else None
            recomputed.append(key)
        else:
            omitted.append(key)
    return {"members": members, "region": region, "summed": summed, "recomputed": recomputed, "omitted": omitted}


def _label(key: str) -> tuple[str, str]:
    from ..indicators.key_figures import KEY_FIGURES

    return KEY_FIGURES.get(key, (key, ""))


def write_key_figures_csv(figures: dict[str, Any], path: Path) -> None:
    """One row per (territoire, figure): members first, then ``region`` (totals)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["territoire", "id", "libelle", "value", "unit"])
        for tid, values in [*figures["members"].items(), ("region", figures["region"])]:
            for key, value in values.items():
                w.writerow([tid, key, _label(key)[0], value, _label(key)[1]])


# --- the page -----------------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    from .report.reading import fr

    if isinstance(value, bool) or value is None:
        return "—"
    if isinstance(value, (int, float)):
        return fr(value, 0 if isinstance(value, int) else 1)
    return html.escape(str(value))


def mosaic_page(region_name: str, region_id: str, members: list[MemberRelease], names: dict[str, str],
                figures: dict[str, Any], layer_counts: dict[str, int]) -> str:
    """The French HTML page of the mosaic (``report/index.html``): members, release ids, relative links, key
    figures, what the mosaic does and does not do."""
    e = html.escape
    rows = []
    for m in members:
        base = f"../../../{e(m.territory)}/{e(m.release_id)}"
        rows.append(f"<tr><td>{e(names.get(m.territory, m.territory))} (<code>{e(m.territory)}</code>)</td>"
                    f"<td><code>{e(m.release_id)}</code></td><td><a href=\"{base}/report/index.html\">rapport</a> · "
                    f"<a href=\"{base}/web/index.html\">carte</a> · <a href=\"{base}/manifest.json\">manifeste</a>"
                    "</td></tr>")
    head = "".join(f"<th>{e(m.territory)}</th>" for m in members)
    fig_rows = []
    for key in dict.fromkeys(k for f in figures["members"].values() for k in f):
        label, unit = _label(key)
        cells = "".join(f"<td>{_fmt(figures['members'][m.territory].get(key))}</td>" for m in members)
        total = (_fmt(figures["region"][key]) + (" (recalculé)" if key in figures["recomputed"] else "")
                 if key in figures["region"] else "non additionné")
        fig_rows.append(f"<tr><td>{e(label)}</td><td>{e(unit)}</td>{cells}<td>{total}</td></tr>")
    layers = ", ".join(f"{e(k)} ({v})" for k, v in layer_counts.items())
    return f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Mosaïque régionale — {e(region_name)}</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}</style></head>
<body>
<h1>Trame verte et bleue — mosaïque régionale {e(region_name)}</h1>
<p>Région <code>{e(region_id)}</code> : assemblage des publications en ligne de {len(members)} territoires.</p>
<p class="avertissement"><strong>La mosaïque assemble, elle ne recalcule pas.</strong> Chaque couche est celle
publiée par le territoire ; les corridors qui traversent une frontière entre territoires ne sont pas raccordés et la
connectivité n'est pas recalculée sur l'ensemble. Pour la continuité, calculer la région comme un seul territoire
découpé en tuiles. Les publications des territoires ne sont pas modifiées.</p>
<h2>Territoires et publications</h2>
<table><tr><th>Territoire</th><th>Publication</th><th>Liens</th></tr>
{''.join(rows)}
</table>
<h2>Chiffres clés</h2>
<p>Surfaces, longueurs et nombres : somme des territoires. Parts de la surface : recalculées (moyenne pondérée par
la surface). Autres chiffres (ratios, moyennes) : non additionnés.</p>
<table><tr><th>Chiffre</th><th>Unité</th>{head}<th>Région</th></tr>
{''.join(fig_rows)}
</table>
<h2>Couches (GeoPackage <code>tvb.gpkg</code>)</h2>
<p>Colonne <code>territoire</code> ; identifiants préfixés par le territoire. {layers}</p>
</body></html>
"""


# --- publishing ---------------------------------------------------------------------------------------------------
def publish_mosaic(region, members: list, store: Store, work_dir: Path, *, code_version: str,
                   dry_run: bool = False, force: bool = False, released_at: datetime | None = None) -> MosaicResult:
    """Assemble the live releases of ``members`` (the region's :class:`~tvb_tasks.config.Territory` objects, in
    order) and publish the mosaic of ``region`` (:class:`~tvb_tasks.config_regions.Region`).

    Returns :func:`.release.publish_release`'s result plus ``members`` (``[{territory, release_id}]``):
    ``status`` ``published``, ``unchanged`` (the live mosaic has these member releases; nothing is downloaded) or
    ``dry_run``. Raises :class:`MosaicError` naming the member on bad input (nothing published).
    """
    releases = [read_member_release(store, t.id) for t in members]
    ikey = mosaic_input_key(region.config_hash(), releases)
    listed: list[MosaicMember] = [{"territory": m.territory, "release_id": m.release_id} for m in releases]
    publisher = MosaicPublisher(id=region.id, name=region.name, short_name=region.short_name, publish=region.publish,
                                region_hash=region.config_hash(),
                                sources={k: v for t in members for k, v in t.sources.items()})
    latest, _ = read_latest(store, region.id)
    if latest and latest.get("input_key") == ikey and not force:
        return cast(MosaicResult, {**publish_release(publisher, store, work_dir, input_key=ikey, sources={},
                                                     validation={}, indicators={}, code_version=code_version),
                                   "members": listed})
    now = (released_at or datetime.now(UTC)).replace(microsecond=0)
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"tvb-mosaic-{region.id}-", dir=work_dir) as tmp:
        downloads, staging = Path(tmp) / "members", Path(tmp) / "staging"
        downloads.mkdir()
        (staging / "report").mkdir(parents=True)
        gpkgs = {m.territory: download_member_gpkg(store, m, downloads) for m in releases}
        counts = assemble_layers(gpkgs, members[0].crs, staging / "tvb.gpkg")
        figures = region_key_figures({m.territory: dict(m.manifest.get("indicators") or {}) for m in releases})
        write_key_figures_csv(figures, staging / "indicators" / "key_figures.csv")
        (staging / "indicators" / "mosaic.json").write_text(json.dumps(
            {"region": region.id, "members": listed, "layers": counts, "key_figures": figures},
            ensure_ascii=False, indent=2), encoding="utf-8")
        names = {t.id: t.name for t in members}
        (staging / "report" / "index.html").write_text(
            mosaic_page(region.name, region.id, releases, names, figures, counts), encoding="utf-8")
        provenance = {m.territory: {"snapshot_id": m.release_id, "key": manifest_key(m.territory, m.release_id),
                                    "sha256": m.manifest_sha256, "kind": "release", "role": "member"}
                      for m in releases}
        result = publish_release(
            publisher, store, staging, input_key=ikey, sources=provenance,
            validation={"success": True, "members": {m.territory: (m.manifest.get("validation") or {}).get("success")
                                                     for m in releases}},
            indicators=figures, code_version=code_version, dry_run=dry_run, force=force, released_at=now,
            release_id=release_id_for(ikey, now, new_run_nonce()))
    result.pop("web_url", None)         # no web map of its own: the page links the members' web maps
    return cast(MosaicResult, {**result, "members": listed})


def publish_region_mosaic(region_id: str, store_uri: str | None = None, *, dry_run: bool = False,
                          force: bool = False) -> MosaicResult:
    """:func:`publish_mosaic` of the region ``config/regions/<region_id>.yaml`` (members loaded and checked) into
    the store ``store_uri`` (default: ``TVB_STORE_URI`` / ``var/store``), working under ``TVB_WORK_DIR``; what the
    ``publish_mosaic`` task of ``tvb_region_<id>`` and ``tvb mosaic`` run."""
    from ..config_regions import load_region, region_members
    from ..pipeline import code_version, work_root
    from ..store import open_store

    region = load_region(region_id)
    return publish_mosaic(region, region_members(region), open_store(store_uri), work_root() / "mosaic",
                          code_version=code_version(), dry_run=dry_run, force=force)
