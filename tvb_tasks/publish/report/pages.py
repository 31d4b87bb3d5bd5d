"""The PDF pages of the release report that are not maps — tables, text, contents, a PNG as a page — all A4 landscape,
and :class:`PdfBook`, which keeps the pages, numbers them and inserts the table of contents (matplotlib, no pyplot)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from tvb_tasks.errors import InvalidInputError

DPI = 110
A4_LANDSCAPE_IN = (11.69, 8.27)


class PdfBook:
    """The report's pages, kept until :meth:`save` numbers them ("page n / N") and inserts the table of contents
    after the first page. ``section`` names the section the next pages belong to (the contents list each section at
    its first page)."""

    def __init__(self) -> None:
        self.pages: list[tuple[str | None, Figure]] = []
        self.section: str | None = None

    def savefig(self, fig: Figure) -> None:
        self.pages.append((self.section, fig))

    def save(self, path: Path, metadata: dict | None = None, title: str = "Sommaire") -> int:
        """Write the PDF; returns its page count."""
        toc_entries: list[tuple[str, int]] = []
        seen: set[str] = set()
        for i, (section, _) in enumerate(self.pages):
            if section and section not in seen:
                seen.add(section)
                toc_entries.append((section, i + 2 if i >= 1 else i + 1))   # the contents page is page 2
        pages = [fig for _, fig in self.pages]
        toc = contents_page(title, toc_entries)
        pages = pages[:1] + [toc] + pages[1:]
        total = len(pages)
        with PdfPages(path, metadata=metadata or {}) as pdf:
            for n, fig in enumerate(pages, start=1):
                w, h = fig.get_size_inches()
                if (round(w, 2), round(h, 2)) != A4_LANDSCAPE_IN:
                    raise InvalidInputError(f"report page {n} is {w:.2f}×{h:.2f} in, not A4 landscape")
                fig.text(0.985, 0.012, f"page {n} / {total}", fontsize=7, ha="right", color="#333333")
                pdf.savefig(fig)
        return total


def contents_page(title: str, entries: list[tuple[str, int]]) -> Figure:
    """The table of contents: section titles with dotted leaders to their page numbers."""
    fig = Figure(figsize=A4_LANDSCAPE_IN, dpi=DPI)
    fig.text(0.06, 0.9, title, fontsize=18, fontweight="bold", color="#1b5e20")
    y = 0.82
    for label, page in entries:
        fig.text(0.08, y, label, fontsize=11.5)
        fig.text(0.56, y, "." * 40, fontsize=11.5, color="#999999")
        fig.text(0.80, y, str(page), fontsize=11.5, ha="right")
        y -= 0.042
    return fig


def table_page(pdf: PdfPages, title: str, columns: list[str], rows: list[list[str]], *, max_font_size: float = 8.0,
               rows_per_page: int = 40, note: str = "") -> None:
    """Add a table (already formatted strings) to the PDF on A4 landscape pages, split when long; column widths
    follow their longest text and the font shrinks so that the table fits the page width."""
    headers, widths, font, header_lines = _table_layout(columns, rows, max_font_size)
    chunks = [rows[i:i + rows_per_page] for i in range(0, len(rows), rows_per_page)] or [[]]
    for n, chunk in enumerate(chunks, start=1):
        fig = Figure(figsize=(11.69, 8.27), dpi=DPI)
        ax = fig.add_axes((0.03, 0.06, 0.94, 0.84))
        ax.set_axis_off()
        suffix = f" ({n}/{len(chunks)})" if len(chunks) > 1 else ""
        fig.text(0.03, 0.94, title + suffix, fontsize=13)
        if note:
            fig.text(0.03, 0.02, textwrap.fill(note, 170), fontsize=7, color="#444444")
        if chunk:
            table = ax.table(cellText=chunk, colLabels=headers, colWidths=widths,
                             loc="upper left", cellLoc="left")
            table.auto_set_font_size(False)
            table.set_fontsize(font)
            row_h = font * 1.9 / (0.84 * 8.27 * 72)
            for (r, _), cell in table.get_celld().items():
                cell.set_height(row_h * (header_lines if r == 0 else 1))
                cell.set_linewidth(0.3)
                if r == 0:
                    cell.set_facecolor("#eef3ec")
        else:
            ax.text(0, 1, "Aucune donnée.", fontsize=10, va="top")
        pdf.savefig(fig)


def _table_layout(columns: list[str], rows: list[list[str]], max_font_size: float = 8.0):
    headers = [textwrap.fill(c, 16) for c in columns]
    chars = [max([len(line) for line in h.split("\n")] + [len(r[j]) for r in rows]) + 2 for j, h in enumerate(headers)]
    total = float(sum(chars)) or 1.0
    font = min(max_font_size, 0.94 * 11.69 * 72 / (0.62 * total))
    header_lines = max(h.count("\n") + 1 for h in headers) if headers else 1
    return headers, [c / total for c in chars], font, header_lines


def table_block_height(columns: list[str], rows: list[list[str]], note: str = "") -> float:
    """Height (figure fraction of an A4 landscape page) a table takes when stacked with others."""
    _, _, font, header_lines = _table_layout(columns, rows)
    row_h = font * 1.9 / (8.27 * 72)
    return 0.05 + row_h * (len(rows) + header_lines) + (0.012 * (len(textwrap.wrap(note, 170)) + 1) if note else 0) + 0.02


def tables_page(pdf, tables: list[tuple[str, list[str], list[list[str]], str]]) -> None:
    """Several short tables (title, columns, rows, note) stacked on one A4 landscape page (the caller checks that
    they fit with :func:`table_block_height`)."""
    fig = Figure(figsize=A4_LANDSCAPE_IN, dpi=DPI)
    top = 0.95
    for title, columns, rows, note in tables:
        headers, widths, font, header_lines = _table_layout(columns, rows)
        row_h = font * 1.9 / (8.27 * 72)
        fig.text(0.03, top - 0.01, title, fontsize=12, va="top")
        height = row_h * (len(rows) + header_lines)
        ax = fig.add_axes((0.03, top - 0.045 - height, 0.94, height))
        ax.set_axis_off()
        table = ax.table(cellText=rows or [["Aucune donnée."] + [""] * (len(columns) - 1)], colLabels=headers,
                         colWidths=widths, loc="upper left", cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(font)
        for (r, _), cell in table.get_celld().items():
            cell.set_height(1.0 / (len(rows) + header_lines) * (header_lines if r == 0 else 1))
            cell.set_linewidth(0.3)
            if r == 0:
                cell.set_facecolor("#eef3ec")
        y = top - 0.05 - height
        if note:
            text = textwrap.fill(note, 170)
            fig.text(0.03, y - 0.005, text, fontsize=7, color="#444444", va="top")
            y -= 0.012 * (text.count("\n") + 1) + 0.01
        top = y - 0.02
    pdf.savefig(fig)


def text_page(pdf, title: str, lines: list[str], *, subtitle: str = "", width: int = 130,
              fontsize: float = 10.5) -> None:
    """A page of plain text lines (A4 landscape): a line starting with "# " is a heading, "• " a bullet."""
    fig = Figure(figsize=A4_LANDSCAPE_IN, dpi=DPI)
    fig.text(0.06, 0.92, title, fontsize=16, fontweight="bold", color="#1b5e20", va="top")
    y = 0.92 - 0.03 * (title.count("\n") + 1) - 0.02
    if subtitle:
        fig.text(0.06, y, subtitle, fontsize=10, color="#444444", va="top")
        y -= 0.045
    for line in lines:
        if line.startswith("# "):
            y -= 0.01
            fig.text(0.06, y, line[2:], fontsize=12, fontweight="bold", color="#1b5e20", va="top")
            y -= 0.035
            continue
        text = textwrap.fill(line, width, subsequent_indent="   " if line.startswith("• ") else "")
        fig.text(0.06, y, text, fontsize=fontsize, va="top")
        y -= 0.024 * (text.count("\n") + 1) + 0.01
    pdf.savefig(fig)


def image_page(image: Path | np.ndarray) -> Figure:
    """An A4 landscape page filled with a picture of the same proportions: a PNG file, or 8-bit RGB pixels (rows ×
    columns × 3)."""
    if isinstance(image, np.ndarray):
        pixels = image
    else:
        import matplotlib.image as mpimg

        rgba = mpimg.imread(image)       # float RGBA → 8-bit RGB: a third of the bytes to compress into the PDF
        pixels = (rgba[..., :3] * 255).round().astype("uint8")
    page = Figure(figsize=A4_LANDSCAPE_IN, dpi=DPI)
    ax = page.add_axes((0, 0, 1, 1))
    ax.imshow(pixels, interpolation="none")
    ax.set_axis_off()
    return page
