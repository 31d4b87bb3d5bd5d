"""OGC encodings of the WFS fetcher (:mod:`.wfs`): safe XML parsing, OGC exception reports, CRS URNs and axis
order, BBOX and filter (FES 2.0 / OGC Filter 1.1) parameters."""
from __future__ import annotations

import io
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import requests
from lxml import etree

from tvb_tasks.errors import InvalidInputError

from .errors import SourceError

log = logging.getLogger("tvb_tasks.sources.wfs")

NS = {
    "wfs20": "http://www.opengis.net/wfs/2.0", "wfs11": "http://www.opengis.net/wfs",
    "ows11": "http://www.opengis.net/ows/1.1", "ows10": "http://www.opengis.net/ows",
    "fes": "http://www.opengis.net/fes/2.0", "ogc": "http://www.opengis.net/ogc",
    "gml32": "http://www.opengis.net/gml/3.2", "gml": "http://www.opengis.net/gml",
    "xsd": "http://www.w3.org/2001/XMLSchema",
}


# --- safe XML -----------------------------------------------------------------------------------------------------
def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=True)


def parse_xml(content: bytes, what: str) -> etree._Element:
    """Parse untrusted XML: no external entities, no network, no DTD; entity declarations are refused."""
    try:
        root = etree.fromstring(content, _safe_parser())
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"{what}: malformed XML ({exc})") from None
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and list(dtd.iterentities()):
        raise SourceError(f"{what}: XML with entity declarations refused")
    return root


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def sniff_root(content: bytes) -> tuple[str, dict[str, str]] | None:
    """Local name and attributes of the root element of an XML document, or None when it is not XML."""
    head = content[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"<"):
        return None
    try:
        for _event, elem in etree.iterparse(io.BytesIO(content), events=("start",), resolve_entities=False,
                                            no_network=True, load_dtd=False, huge_tree=False):
            return _local(elem.tag), {_local(k): v for k, v in elem.attrib.items()}
    except etree.XMLSyntaxError:
        return None
    return None


def exception_message(content: bytes, what: str) -> str | None:
    """The text of an OGC ExceptionReport / ServiceExceptionReport, or None when ``content`` is not one."""
    root_info = sniff_root(content)
    if not root_info or root_info[0] not in ("ExceptionReport", "ServiceExceptionReport"):
        return None
    root = parse_xml(content, what)
    parts = []
    for exc in root.iter():
        if _local(exc.tag) not in ("Exception", "ServiceException"):
            continue
        code = exc.get("exceptionCode") or exc.get("code")
        locator = exc.get("locator")
        texts = [t.strip() for t in exc.itertext() if t and t.strip()]
        label = code or "exception"
        if locator:
            label += f" (locator {locator})"
        parts.append(f"{label}: {' '.join(texts) or 'no message'}")
    return "; ".join(parts) or "empty exception report"


def raise_for_exception(resp: requests.Response, what: str, typename: str | None) -> None:
    """Raise :class:`SourceError` for an ExceptionReport (even with HTTP 200) or an HTTP error status."""
    layer = f" layer {typename}" if typename else ""
    message = exception_message(resp.content, what)
    if message is not None:
        raise SourceError(f"WFS {what}{layer}: server exception (HTTP {resp.status_code}): {message}")
    if resp.status_code >= 400:
        snippet = re.sub(r"\s+", " ", resp.text[:300]).strip()
        raise SourceError(f"WFS {what}{layer}: HTTP {resp.status_code} {resp.reason or ''}: {snippet}")


# --- CRS / bbox / filter ------------------------------------------------------------------------------------------
def crs_urn(crs: str) -> str:
    """``EPSG:2154`` → ``urn:ogc:def:crs:EPSG::2154`` (URNs and other strings are returned as given)."""
    m = re.fullmatch(r"(?i)epsg:(\d+)", crs.strip())
    return f"urn:ogc:def:crs:EPSG::{m.group(1)}" if m else crs.strip()


def _north_first(crs: str) -> bool:
    from pyproj import CRS

    axes = CRS.from_user_input(crs).axis_info
    return bool(axes) and axes[0].direction.lower() in ("north", "south")


def bbox_corners(bbox: Sequence[Any]) -> tuple[tuple[float, float], tuple[float, float], str]:
    """Lower / upper corners in the CRS's authority axis order and the CRS URN, from ``(minx, miny, maxx, maxy, crs)``."""
    if len(bbox) != 5:
        raise InvalidInputError(f"bbox must be (minx, miny, maxx, maxy, crs), got {bbox!r}")
    minx, miny, maxx, maxy = (float(v) for v in bbox[:4])
    crs = str(bbox[4])
    if not (minx < maxx and miny < maxy):
        raise InvalidInputError(f"empty bbox {bbox!r}")
    if _north_first(crs):
        return (miny, minx), (maxy, maxx), crs_urn(crs)
    return (minx, miny), (maxx, maxy), crs_urn(crs)


def bbox_param(bbox: Sequence[Any]) -> str:
    """KVP ``BBOX`` value in the CRS's axis order, e.g. ``'680000,7030000,700000,7040000,urn:ogc:def:crs:EPSG::2154'``."""
    lower, upper, urn = bbox_corners(bbox)
    return ",".join(f"{v:.10g}" for v in (*lower, *upper)) + f",{urn}"


def _filters_list(filters: Any) -> list[dict]:
    if filters is None:
        return []
    items = [filters] if isinstance(filters, Mapping) else list(filters)
    for f in items:
        if not isinstance(f, Mapping) or "property" not in f or "value" not in f:
            raise InvalidInputError(f"a WFS filter is {{property: NAME, value: VALUE, op: equal|like}}, got {f!r}")
        if f.get("op", "equal") not in ("equal", "like"):
            raise InvalidInputError(f"WFS filter op must be 'equal' or 'like' ('*' wildcard), got {f.get('op')!r}")
    return [dict(f) for f in items]


def build_filter(version: str, filters: Any = None, bbox: Sequence[Any] | None = None,
                 geometry_name: str | None = None) -> str:
    """An FES 2.0 (WFS 2.0) or OGC Filter 1.1 (WFS 1.1) ``<Filter>``: property tests AND a BBOX.

    Each filter is ``{property, value, op}`` with ``op`` ``equal`` (default) or ``like`` (``*`` any characters,
    ``.`` one character, ``!`` escape).
    """
    v2 = version.startswith("2")
    fes = NS["fes"] if v2 else NS["ogc"]
    gml = NS["gml32"] if v2 else NS["gml"]
    ref = "ValueReference" if v2 else "PropertyName"
    E = lambda ns, tag, **kw: etree.Element(f"{{{ns}}}{tag}", nsmap={"fes" if v2 else "ogc": fes, "gml": gml}, **kw)  # noqa: E731
    predicates = []
    for f in _filters_list(filters):
        if f.get("op", "equal") == "like":
            test = E(fes, "PropertyIsLike", wildCard="*", singleChar=".", escapeChar="!")
        else:
            test = E(fes, "PropertyIsEqualTo")
        etree.SubElement(test, f"{{{fes}}}{ref}").text = str(f["property"])
        etree.SubElement(test, f"{{{fes}}}Literal").text = str(f["value"])
        predicates.append(test)
    if bbox is not None:
        lower, upper, urn = bbox_corners(bbox)
        box = E(fes, "BBOX")
        if geometry_name:
            etree.SubElement(box, f"{{{fes}}}{ref}").text = geometry_name
        env = etree.SubElement(box, f"{{{gml}}}Envelope", srsName=urn)
        etree.SubElement(env, f"{{{gml}}}lowerCorner").text = f"{lower[0]:.10g} {lower[1]:.10g}"
        etree.SubElement(env, f"{{{gml}}}upperCorner").text = f"{upper[0]:.10g} {upper[1]:.10g}"
        predicates.append(box)
    root = E(fes, "Filter")
    if len(predicates) == 1:
        root.append(predicates[0])
    elif predicates:
        both = etree.SubElement(root, f"{{{fes}}}And")
        both.extend(predicates)
    return etree.tostring(root, encoding="unicode")
