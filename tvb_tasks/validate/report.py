"""Validation reports: GX Data Docs pages per layer and a self-contained index page.

Each layer's page is GX's own Data Docs rendering of its validation result (``ValidationResultsPageRenderer`` +
``DefaultJinjaPageView``, the renderers a Data Docs site uses; styles come from public CDNs, as in any GX site).
The ``index.html`` is rendered here with jinja2 (inline CSS, no external asset): one row per source / output layer,
its verdict, critical failures and warnings with samples, and a link to the GX page.
"""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

log = logging.getLogger(__name__)

_INDEX_TEMPLATE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8">
<title>Validation — {{ territory }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%;margin-bottom:2em}
th,td{border:1px solid #ccc;padding:.35em .6em;text-align:left;vertical-align:top;font-size:.92em}
th{background:#f0f0f0}
.ok{color:#1a7f37;font-weight:bold}.ko{color:#b42318;font-weight:bold}.warn{color:#9a6700}
ul{margin:0;padding-left:1.2em}code{font-size:.9em}
</style></head><body>
<h1>Validation — {{ territory }}</h1>
{% for section in sections %}
<h2>{{ section.title }} :
 {% if section.summary.success %}<span class="ok">passed</span>{% else %}<span class="ko">BLOCKED</span>{% endif %}
 ({{ section.summary.critical_failures }} critical, {{ section.summary.warnings }} warnings)</h2>
<table><thead><tr><th>layer</th><th>suite</th><th>verdict</th><th>expectations</th><th>rows</th>
<th>critical failures</th><th>warnings</th><th>GX Data Docs</th></tr></thead><tbody>
{% for name, s in section.summary.sources.items() %}
<tr><td><code>{{ name }}</code></td><td>{{ s.suite }}</td>
<td>{% if s.success %}<span class="ok">ok</span>{% else %}<span class="ko">blocked</span>{% endif %}</td>
<td>{{ s.successful }}/{{ s.evaluated }}</td><td>{{ s.row_count if s.row_count is not none else "" }}
{% if s.repaired_geometries %}<br><span class="warn">{{ s.repaired_geometries }} repaired</span>{% endif %}</td>
<td>{% if s.critical_failures %}<ul>{% for f in s.critical_failures %}<li><code>{{ f.expectation }}</code>:
 {{ f.message }}{% if f.sample %}<br><small>{{ f.sample | join(" ; ") }}</small>{% endif %}</li>{% endfor %}</ul>{% endif %}</td>
<td>{% if s.warnings %}<ul>{% for f in s.warnings %}<li class="warn"><code>{{ f.expectation }}</code>:
 {{ f.message }}{% if f.sample %}<br><small>{{ f.sample | join(" ; ") }}</small>{% endif %}</li>{% endfor %}</ul>{% endif %}</td>
<td>{% if s.docs_name %}<a href="{{ s.docs_name }}">page</a>{% endif %}</td></tr>
{% endfor %}
</tbody></table>
{% endfor %}
</body></html>
"""


@lru_cache(maxsize=1)
def _page_view() -> Any:
    """One GX ``DefaultJinjaPageView`` per process: its jinja2 environment caches the compiled templates (a new view
    compiles ~150 templates again, most of the cost of a page). Rendering with a shared environment is thread-safe."""
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView()


def write_data_docs_page(result: Any, path: Path) -> Path:
    """Render one ``ExpectationSuiteValidationResult`` as a GX Data Docs page at ``path``."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer

    document = ValidationResultsPageRenderer().render(result)
    html = _page_view().render(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def write_docs_index(out_dir: Path) -> Path:
    """(Re)write ``out_dir/data_docs/index.html`` from ``results.json`` and ``outputs_results.json`` if present."""
    out_dir = Path(out_dir)
    docs = out_dir / "data_docs"
    sections = []
    territory = ""
    for filename, title in (("results.json", "Sources"), ("outputs_results.json", "Outputs")):
        path = out_dir / filename
        if not path.exists():
            continue
        payload = json.loads(path.read_text(encoding="utf-8"))
        territory = payload.get("territory") or territory
        summary = payload["summary"]
        for s in summary["sources"].values():
            page = Path(s["docs_path"]).name if s.get("docs_path") else None
            s["docs_name"] = page if page and (docs / page).exists() else None
        sections.append({"title": title, "summary": summary})
    env = Environment(autoescape=select_autoescape(default=True))
    html = env.from_string(_INDEX_TEMPLATE).render(territory=territory, sections=sections)
    docs.mkdir(parents=True, exist_ok=True)
    index = docs / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
