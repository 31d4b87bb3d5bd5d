"""The release report: one HTML page (maps embedded as base64 PNG) opening on a plain-language summary, one
HTML sheet per commune, the PNG maps and a PDF export (A4 landscape, numbered pages, table of contents).

:func:`build_report` reads the release's ``tvb.gpkg`` and the indicators folder written by
:func:`tvb_tasks.indicators.compute_indicators` (local paths only) and writes ``index.html``,
``communes/<insee>.html``, ``maps/*.png``, ``maps/communes/<insee>.png`` and ``report.pdf``. Labels are in French.
Links point only inside the release: ``../validation/<sources|outputs>/data_docs/index.html`` (Data Docs, written by
the validation gates), ``../web/index.html``, ``report.pdf``, the commune sheets.

Modules: :mod:`.build` (:func:`build_report`, the commune sheets, the PDF), :mod:`.tables` (the tables and labels
shared by the HTML and the PDF), :mod:`.reading` (plain-language texts), :mod:`.maps` (the PNG maps and PDF pages).
Every name below is importable from this package.
"""
from __future__ import annotations

from tvb_tasks.publish.report import maps, reading  # noqa: F401
from tvb_tasks.publish.report.build import (  # noqa: F401
    METHOD_LINES,
    TEMPLATES,
    _embed,
    _env,
    _history_rows,
    _pdf_table,
    _pdf_tables,
    _read_change_layers,
    _sort_key,
    _source_labels,
    build_report,
    commune_sheets,
    fragmenting_infrastructure,
    sources_licence_table,
)
from tvb_tasks.publish.report.tables import (  # noqa: F401
    CAUSE_LABELS,
    CHANGE_COUNT_LABELS,
    CHANGE_INDICATORS,
    COMMUNE_COLUMNS,
    COST_UNIT,
    FICHES_HREF,
    FRAGMENTATION_COLUMNS,
    INDICATOR_LABELS,
    SYNTHETIC_NOTE,
    UNIT_DECIMALS,
    VALIDATION_KEYS,
    VALIDATION_TITLES,
    Table,
    _aggregate_tables,
    _is_aggregate,
    _scalar_rows,
    _table,
    cause_table,
    change_tables,
    communes_table,
    connectivity_table,
    data_docs_links,
    fr_number,
    fragmentation_table,
    key_figures_table,
    layer_change_table,
    ranking_tables,
    validation_tables,
)
