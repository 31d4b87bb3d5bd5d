"""Generate docs/method.md "10.0 Current sample figures" from published releases of the bundled sample.

Every figure of the method page that describes the sample run comes from this table, so the prose cannot drift
from the releases: corridor km by status (dissolved across sous-trames, as the key figures, and summed per
sous-trame), missing links, rupture points by kind and severity, fractures per infrastructure, points de vigilance,
corridor polygons, meff (CUT / CBC) per sous-trame and the wetland connectivity graph.

Usage::

    tvb run --territory call --store file:///tmp/s25 --force --resolution 25
    tvb run --territory call --store file:///tmp/s10 --force --resolution 10
    python scripts/sample_figures.py /tmp/s25/releases/call/<id> /tmp/s10/releases/call/<id> [--write]

The first release is the reference (25 m), the others are shown beside it. ``--write`` replaces the block between
the ``<!-- sample-figures:begin -->`` and ``<!-- sample-figures:end -->`` markers of docs/method.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import geopandas as gpd
import pyogrio

ROOT = Path(__file__).resolve().parents[1]
METHOD_MD = ROOT / "docs" / "method.md"
BEGIN, END = "<!-- sample-figures:begin -->", "<!-- sample-figures:end -->"
STATUSES = ("existing", "to_restore", "to_create")


def _layer(gpkg: Path, name: str) -> gpd.GeoDataFrame:
    return gpd.read_file(gpkg, layer=name) if name in {r[0] for r in pyogrio.list_layers(gpkg)} \
        else gpd.GeoDataFrame()


def figures(release: Path) -> dict:
    """The sample figures of one release folder (``tvb.gpkg`` + ``indicators/indicators.json``)."""
    release = Path(release)
    gpkg = release / "tvb.gpkg"
    doc = json.loads((release / "indicators" / "indicators.json").read_text(encoding="utf-8"))
    k = doc["key_figures"]
    cor, pts = _layer(gpkg, "corridors"), _layer(gpkg, "rupture_points")
    vig, areas = _layer(gpkg, "vigilance_points"), _layer(gpkg, "corridor_areas")
    res = (doc.get("provenance") or {}).get("resolution_m")
    f: dict = {"resolution_m": res, "key": k}
    terr = cor[cor["sous_trame"] != "wetland"] if len(cor) else cor
    f["sum_by_st"] = {st: {s: float(g.loc[g["status"] == s, "length_m"].sum() / 1000) for s in STATUSES}
                      | {"n": {s: int((g["status"] == s).sum()) for s in STATUSES}}
                      for st, g in terr.groupby("sous_trame")}
    stretches = _layer(gpkg, "corridor_stretches")
    f["stretch_sum"] = {s: float(stretches.loc[stretches["status"] == s, "length_m"].sum() / 1000)
                        for s in STATUSES} if len(stretches) else {}
    ml = cor[cor["missing_link"] == 1]
    f["missing"] = {"n": len(ml), "km": float(ml["length_m"].sum() / 1000),
                    **{s: float(ml.loc[ml["status"] == s, "length_m"].sum() / 1000) for s in STATUSES}}
    f["downgraded"] = int(((cor["downgraded"] == 1) & (cor["missing_link"] == 0)).sum())
    kind, infra = pts["corridor_kind"], pts["infrastructure"]
    f["points"] = {
        "all": len(pts), "sites": int(pts["site_id"].nunique()),
        "terrestrial": {t: int(((kind == "terrestre") & (infra == t)).sum()) for t in ("road", "railway", "canal")},
        "bridges": int(((kind == "aquatique") & infra.isin(["road", "railway"])).sum()),
        "culverts": int((infra == "culvert").sum()),
        "culverts_off_corridor": int(((infra == "culvert") & (pts["corridor_id"] == "hors corridor")).sum()),
        "reservoir": int((kind == "reservoir").sum()),
        "by_severity": {int(s): int(n) for s, n in pts["severity"].value_counts().sort_index().items()},
        "missing_link": int((pts["missing_link"] == 1).sum()),
    }
    f4 = pts[pts["severity"] >= 4]
    f["fractures"] = {str(n): int(c) for n, c in f4["infra_name"].fillna("").value_counts().items()}
    f["vigilance"] = len(vig)
    f["areas"] = {"ha": float(areas["area_ha"].sum()) if len(areas) else 0.0,
                  "median_width_m": float(areas["mean_width_m"].median()) if len(areas) else 0.0}
    f["meff"] = {st: {c: d["territory"][c] for c in ("habitat_ha", "n_patches", "meff_cut_ha", "meff_cbc_ha")}
                 for st, d in (doc.get("fragmentation") or {}).items()}
    f["connectivity"] = {st: {c: d.get(c) for c in ("n_nodes", "n_links", "n_components", "distance_kind")}
                         for st, d in (doc.get("connectivity") or {}).items()}
    return f


def _n(x, d: int = 1) -> str:
    if x is None:
        return "—"
    return f"{x:,.{d}f}" if isinstance(x, float) else f"{x:,}"


def render(figs: list[dict]) -> str:
    """The markdown block (between the markers)."""
    head = "| figure | " + " | ".join(f"{_n(f['resolution_m'], 0)} m" for f in figs) + " |"
    sep = "|---|" + "---:|" * len(figs)

    def row(label: str, fn) -> str:
        return f"| {label} | " + " | ".join(fn(f) for f in figs) + " |"

    def k(f: dict, key: str, d: int = 1) -> str:
        return _n(f["key"].get(key), d)

    lines = [BEGIN, "### 10.0 Current sample figures (generated)", "",
             ("Generated by `scripts/sample_figures.py` from the releases of `tvb run --territory call --force "
              "--resolution R` on the bundled sample; the figures quoted in this page's sections refer to this table "
              "(25 m unless stated)."), "", head, sep,
             row("terrestrial corridors, dissolved (km)", lambda f: k(f, "terrestrial_corridors_km")),
             row("… existing / to restore / to create, dissolved (km)", lambda f: " / ".join(
                 k(f, f"terrestrial_corridors_{s}_km") for s in STATUSES)),
             row("… summed per sous-trame (km)", lambda f: " / ".join(
                 f"{st} {_n(sum(v[s] for s in STATUSES))}" for st, v in f["sum_by_st"].items()))]
    for st in figs[0]["sum_by_st"]:
        lines.append(row(f"… {st}, by corridor status: existing / to restore / to create (km; corridors)",
                         lambda f, st=st: (
            " / ".join(_n(f["sum_by_st"].get(st, {}).get(s, 0.0)) for s in STATUSES) + " ("
            + " / ".join(_n(f["sum_by_st"].get(st, {}).get("n", {}).get(s, 0)) for s in STATUSES) + ")")))
    lines += [
        row("… by stretch status, summed over sous-trames: existing / to restore / to create (km)", lambda f: (
            " / ".join(_n(f["stretch_sum"].get(s)) for s in STATUSES) if f["stretch_sum"] else "—")),
        row("missing links (n, km; to restore / to create km)", lambda f: (
            f"{f['missing']['n']}, {_n(f['missing']['km'])} ({_n(f['missing']['to_restore'])} / "
            f"{_n(f['missing']['to_create'])})")),
        row("real corridors downgraded by a rupture point (existing → to restore; whole corridor)", lambda f: _n(f["downgraded"])),
        row("rupture points / sites", lambda f: f"{f['points']['all']} / {f['points']['sites']}"),
        row("… terrestrial roads / railways / canals", lambda f: " / ".join(
            _n(f["points"]["terrestrial"][t]) for t in ("road", "railway", "canal"))),
        row("… bridges (severity 2) / culverts (of which hors corridor)", lambda f: (
            f"{f['points']['bridges']} / {f['points']['culverts']} ({f['points']['culverts_off_corridor']})")),
        row("… in split reservoirs", lambda f: _n(f["points"]["reservoir"])),
        row("… by severity (1 / 2 / 3 / 4)", lambda f: " / ".join(
            _n(f["points"]["by_severity"].get(s, 0)) for s in (1, 2, 3, 4))),
        row("… on missing links", lambda f: _n(f["points"]["missing_link"])),
        row("severity-4 points by infrastructure", lambda f: "; ".join(
            f"{n} {c}" for n, c in f["fractures"].items())),
        row("points de vigilance (roads of importance 4, severity 2)", lambda f: _n(f["vigilance"])),
        row("corridor polygons (ha; median width m)", lambda f: (
            f"{_n(f['areas']['ha'], 0)}; {_n(f['areas']['median_width_m'], 0)}")),
        row("terrestrial / wet reservoirs + relays, dissolved (ha)", lambda f: (
            f"{k(f, 'terrestrial_reservoirs_relays_ha', 0)} / {k(f, 'wet_reservoirs_relays_ha', 0)}")),
        row("nature en ville (ha) / artificialised share (%)", lambda f: (
            f"{k(f, 'urban_nature_ha')} / {k(f, 'artificialised_share_pct')}")),
    ]
    for st in figs[0]["meff"]:
        lines.append(row(f"meff {st}: habitat ha, patches, CUT / CBC (ha)", lambda f, st=st: (
            f"{_n(f['meff'][st]['habitat_ha'], 0)}, {_n(f['meff'][st]['n_patches'])}, "
            f"{_n(f['meff'][st]['meff_cut_ha'], 2)} / {_n(f['meff'][st]['meff_cbc_ha'], 2)}")))
    for st in figs[0]["connectivity"]:
        lines.append(row(f"connectivity {st}: nodes / links / components", lambda f, st=st: " / ".join(
            _n(f["connectivity"].get(st, {}).get(c)) for c in ("n_nodes", "n_links", "n_components"))))
    lines += [END]
    return "\n".join(lines)


def replace_block(text: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    """``text`` with the block between the markers replaced (ValueError when the markers are missing)."""
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{METHOD_MD}: markers {begin} … {end} not found")
    return text[:i] + block + text[j + len(end):]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("releases", nargs="+", type=Path)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    block = render([figures(r) for r in args.releases])
    if args.write:
        METHOD_MD.write_text(replace_block(METHOD_MD.read_text(encoding="utf-8"), block), encoding="utf-8")
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
