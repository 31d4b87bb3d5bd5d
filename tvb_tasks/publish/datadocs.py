"""Data Docs pages inside a release: made self-contained and honest for a French reader.

The validation gates (:mod:`tvb_tasks.validate`) write Great Expectations Data Docs pages (English, technical) under
``validation/<sources|outputs>/data_docs/``. As GX renders them they load their styling and scripts from CDNs, link
to a GX site tree that a release does not have (``../../../../index.html`` "Home", ``expectations/*.html``) and
say "Failed" as soon as any expectation fails, even one the observatory treats as a non-blocking warning.
:func:`tidy_data_docs` rewrites each page in place:

* ``<link>`` / ``<script src>`` / ``<img>`` / CSS ``url()`` pointing to another host are removed, and so are the
  inline scripts (they need the removed jQuery / Vega); a small inline style replaces the styling (static pages);
* a relative link whose target is not in the release loses its ``href`` (its text stays); the GX "Home" link goes
  to the ``index.html`` of the same folder;
* a French banner at the top says that this is a GX technical page in English, gives the observatory's verdict
  (réussie / échec, number of non-blocking warnings, from the gate's ``results.json`` / ``outputs_results.json``),
  explains why GX may show "Failed" and links back to the report.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from markupsafe import escape

_EXTERNAL_TAG = re.compile(r"<link\b[^>]*href=\"https?://[^\"]*\"[^>]*>|<script\b[^>]*src=\"https?://[^\"]*\"[^>]*>"
                           r"\s*</script>", re.I)
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.I | re.S)     # inline GX scripts need jQuery / vega (CDN)
_EXTERNAL_IMG = re.compile(r"<img\b[^>]*src=\"https?://[^\"]*\"[^>]*>", re.I)
_EXTERNAL_URL = re.compile(r"url\(['\"]?https?://[^)]*\)", re.I)
_HREF = re.compile(r"(<a\b[^>]*?)\s+href=\"([^\"]*)\"", re.I)
_ICON = re.compile(r"<link\b[^>]*rel=\"shortcut icon\"[^>]*>", re.I)
_BODY = re.compile(r"<body\b[^>]*>", re.I)
STYLE = ("<style>body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 1rem;color:#222}"
         "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .4rem;"
         "vertical-align:top;font-size:.9rem}.tvb-dd{background:#f3f6f9;border-left:4px solid #2e7d32;padding:.6rem 1rem;"
         "margin:1rem 0}.tvb-dd.ko{border-color:#c62828}.tvb-dd p{margin:.3rem 0}"
         ".hide-succes,.collapse:not(.show){display:block}</style>")


def _verdicts(data_docs: Path) -> dict[str, dict]:
    """Page file name → the gate's summary of that dataset (success, warnings, critical_failures)."""
    out = {}
    for name in ("results.json", "outputs_results.json"):
        path = data_docs.parent / name
        if not path.exists():
            continue
        try:
            sources = json.loads(path.read_text(encoding="utf-8"))["summary"]["sources"]
        except (ValueError, KeyError, TypeError):
            continue
        for s in sources.values():
            if isinstance(s, dict) and s.get("docs_path"):
                out[Path(s["docs_path"]).name] = s
    return out


def banner(summary: dict | None, report_href: str, index_href: str | None) -> str:
    """The French banner of one page (``summary``: the gate's summary of its dataset, or None for an index)."""
    parts = ["<p><strong>Page technique de Great Expectations (en anglais).</strong> Elle détaille les contrôles de "
             "qualité automatiques ; le rapport de la publication en donne la synthèse en français.</p>"]
    cls = "tvb-dd"
    if summary is not None:
        crit, warn = len(summary.get("critical_failures") or []), len(summary.get("warnings") or [])
        ok = bool(summary.get("success"))
        cls += "" if ok else " ko"
        verdict = "réussie" if ok else f"ÉCHEC ({crit} anomalie(s) bloquante(s))"
        parts.append(f"<p>Résultat retenu par l'observatoire : <strong>{verdict}</strong>"
                     + (f", {warn} avertissement(s) non bloquant(s)" if warn else "") + ".</p>")
        if ok and warn:
            parts.append("<p>Great Expectations affiche « Failed » dès qu'une attente n'est pas satisfaite, même "
                         "lorsqu'elle n'est qu'un avertissement : seules les anomalies critiques bloquent la "
                         "publication.</p>")
    links = [f'<a href="{escape(report_href)}">rapport de la publication</a>']
    if index_href:
        links.append(f'<a href="{escape(index_href)}">liste des contrôles</a>')
    parts.append("<p>Retour : " + " · ".join(links) + "</p>")
    return f'<div class="{cls}" lang="fr">' + "".join(parts) + "</div>"


def tidy_page(html: str, page: Path, summary: dict | None, report_href: str) -> str:
    """One Data Docs page rewritten (see the module docstring); ``page`` locates relative links."""
    html = _EXTERNAL_TAG.sub("", html)
    html = _SCRIPT.sub("", html)
    html = _EXTERNAL_IMG.sub("", html)
    html = _EXTERNAL_URL.sub("none", html)
    html = _ICON.sub("", html)
    index = page.parent / "index.html"

    def fix(m: re.Match) -> str:
        head, href = m.group(1), m.group(2)
        if re.match(r"^(#|[a-z][a-z0-9+.-]*:)", href, re.I):
            return m.group(0)
        target = href.split("#")[0].split("?")[0]
        if not target or (page.parent / target).resolve().is_file():
            return m.group(0)
        if Path(target).name == "index.html" and index.is_file() and page.name != "index.html":
            return f'{head} href="index.html"'
        return head                                   # not in the release: plain text
    html = _HREF.sub(fix, html)
    html = html.replace("</head>", STYLE + "</head>", 1) if "</head>" in html else STYLE + html
    index_href = "index.html" if page.name != "index.html" and index.is_file() else None
    top = banner(summary, report_href, index_href)
    m = _BODY.search(html)
    return html[:m.end()] + top + html[m.end():] if m else top + html


def tidy_data_docs(validation_dir: Path, report_href_from_docs: str = "../../../report/index.html") -> list[Path]:
    """Rewrite every ``validation_dir/*/data_docs/*.html`` in place; returns the pages rewritten.
    ``report_href_from_docs``: the report's address relative to a data_docs folder."""
    pages = []
    for docs in sorted(Path(validation_dir).glob("*/data_docs")):
        verdicts = _verdicts(docs)
        for page in sorted(docs.glob("*.html")):
            html = page.read_text(encoding="utf-8")
            if 'class="tvb-dd' in html:
                continue                               # already tidied
            page.write_text(tidy_page(html, page, verdicts.get(page.name), report_href_from_docs), encoding="utf-8")
            pages.append(page)
    return pages
