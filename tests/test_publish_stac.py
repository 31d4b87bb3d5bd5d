"""The release catalogue validates against the STAC JSON schemas (core 1.1.0, File Info 2.1.0, Version 1.2.0),
read offline from tests/fixtures/stac_schemas/ (see its README for where each schema comes from)."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
from jsonschema_specifications import REGISTRY as META_SCHEMAS
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from helpers.release_outputs import do_publish, make_outputs, territory
from tvb_tasks import publish
from tvb_tasks.store import LocalStore

SCHEMAS = Path(__file__).parent / "fixtures" / "stac_schemas"
CORE = "https://schemas.stacspec.org/v1.1.0/{0}-spec/json-schema/{0}.json"


def _retrieve(uri: str) -> Resource:
    if uri.startswith("http://json-schema.org/"):
        return META_SCHEMAS.get_or_retrieve(uri).value
    if not uri.startswith("https://"):
        raise NoSuchResource(ref=uri)
    path = SCHEMAS / uri[len("https://"):].split("#")[0]
    if not path.is_file():
        raise NoSuchResource(ref=uri)          # no network: an unknown schema is an error, never a download
    return Resource.from_contents(json.loads(path.read_text(encoding="utf-8")))


REGISTRY = Registry(retrieve=_retrieve)


def stac_errors(obj: dict) -> list[str]:
    """Schema errors of a STAC object against its core schema and every extension it declares."""
    kind = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}[obj["type"]]
    schemas = [CORE.format(kind)] + list(obj.get("stac_extensions", []))
    errors = []
    for uri in schemas:
        schema = REGISTRY.get_or_retrieve(uri).value.contents
        validator = jsonschema.Draft7Validator(schema, registry=REGISTRY)
        errors += [f"{uri}: {e.json_path}: {e.message}" for e in validator.iter_errors(obj)]
    return errors


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stac")
    staged = publish.stage_release(territory(), tmp / "release", **make_outputs(tmp / "in"))
    store = LocalStore(tmp / "store")
    r1 = do_publish(store, staged, 1)
    r2 = do_publish(store, staged, 2)
    return store, r1["release_id"], r2["release_id"]


def test_items_and_collection_validate(published):
    store, r1, r2 = published
    docs = {k: json.loads(store.get_bytes(k)) for k in (
        f"releases/call/{r1}/stac/item.json", f"releases/call/{r2}/stac/item.json",
        "releases/call/latest/stac/item.json", "releases/call/collection.json")}
    for key, doc in docs.items():
        assert stac_errors(doc) == [], key
    item = docs[f"releases/call/{r2}/stac/item.json"]
    assert "https://stac-extensions.github.io/file/v2.1.0/schema.json" in item["stac_extensions"]
    assert "https://stac-extensions.github.io/version/v1.2.0/schema.json" in item["stac_extensions"]


def test_item_content(published):
    store, r1, r2 = published
    base = f"releases/call/{r2}"
    item = json.loads(store.get_bytes(f"{base}/stac/item.json"))
    assert item["properties"]["version"] == r2 and item["properties"]["datetime"].startswith("2026-11-25T18:17:00")
    links = {lk["rel"]: lk["href"] for lk in item["links"]}
    assert links["predecessor-version"] == f"../../{r1}/stac/item.json"
    assert links["latest-version"] == "../../latest/stac/item.json"
    assert links["collection"] == "../../collection.json"
    w, s, e, n = item["bbox"]
    assert 2.7 < w < e < 3.0 and 50.3 < s < n < 50.5
    gpkg = item["assets"]["tvb.gpkg"]
    assert gpkg["type"] == "application/geopackage+sqlite3" and gpkg["roles"] == ["data"]
    for asset in item["assets"].values():
        data = store.get_bytes(_normalise(f"{base}/stac/{asset['href']}"))
        assert asset["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest()
        assert asset["file:size"] == len(data)
    assert {"parquet-corridors.parquet", "rasters-friction_forest.tif", "web-tvb.pmtiles", "web-index.html",
            "report-index.html", "qgis-tvb.qgs", "indicators-indicators.json"} <= set(item["assets"])
    first = json.loads(store.get_bytes(f"releases/call/{r1}/stac/item.json"))
    assert "predecessor-version" not in {lk["rel"] for lk in first["links"]}
    live = json.loads(store.get_bytes("releases/call/latest/stac/item.json"))
    assert live["assets"]["tvb.gpkg"]["href"] == f"../../{r2}/tvb.gpkg"
    coll = json.loads(store.get_bytes("releases/call/collection.json"))
    assert coll["id"] == "tvb-call" and coll["license"] == "etalab-2.0"
    assert [lk["href"] for lk in coll["links"] if lk["rel"] == "item"] == [f"./{r2}/stac/item.json",
                                                                         f"./{r1}/stac/item.json"]


def _normalise(key: str) -> str:
    out: list[str] = []
    for part in key.split("/"):
        if part == "..":
            out.pop()
        elif part not in (".", ""):
            out.append(part)
    return "/".join(out)


def test_validation_catches_broken_items(published):
    store, _, r2 = published
    item = json.loads(store.get_bytes(f"releases/call/{r2}/stac/item.json"))
    bad_size = copy.deepcopy(item)
    bad_size["assets"]["tvb.gpkg"]["file:size"] = "big"
    assert any("file:size" in e or "big" in e for e in stac_errors(bad_size))
    bad_version = copy.deepcopy(item)
    bad_version["properties"]["version"] = 20261125           # the Version extension wants a string
    assert any("version" in e for e in stac_errors(bad_version))
    bad_checksum = copy.deepcopy(item)
    bad_checksum["assets"]["tvb.gpkg"]["file:checksum"] = "not-hex"
    assert stac_errors(bad_checksum)
    no_datetime = copy.deepcopy(item)
    no_datetime["properties"]["datetime"] = None
    assert stac_errors(no_datetime)
