"""Progress logging for long downloads and WFS pagings (``logging``, loggers ``tvb_tasks.sources.*``)."""
from __future__ import annotations

import logging
import time


def human_bytes(n: float) -> str:
    """``1234567`` → ``'1.2 MB'`` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    """Accumulates features / pages / bytes and logs a line at most every ``every_s`` seconds (and at the end).

    ``what`` names the transfer without secrets (e.g. ``"WFS https://host/wfs ms:roads"``); ``total`` (features, or
    bytes when ``unit="bytes"``) is printed as ``n/total`` when known.
    """

    def __init__(self, logger: logging.Logger, what: str, *, total: int | None = None, unit: str = "features",
                 every_s: float = 5.0):
        self.logger, self.what, self.total, self.unit, self.every_s = logger, what, total, unit, every_s
        self.features = self.pages = self.bytes = 0
        self.started = self._last = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def update(self, *, features: int = 0, pages: int = 0, nbytes: int = 0) -> None:
        self.features += features
        self.pages += pages
        self.bytes += nbytes
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.logger.info("%s: %s", self.what, self.summary())

    def summary(self) -> str:
        elapsed = max(self.elapsed_s, 1e-6)
        done = self.bytes if self.unit == "bytes" else self.features
        parts = []
        if self.unit == "bytes":
            total = f"/{human_bytes(self.total)}" if self.total else ""
            parts.append(f"{human_bytes(self.bytes)}{total}")
        else:
            total = f"/{self.total}" if self.total is not None else ""
            parts.append(f"{self.features}{total} features")
            parts.append(f"{self.pages} pages")
            parts.append(human_bytes(self.bytes))
        rate = done / elapsed
        parts.append(f"{human_bytes(rate)}/s" if self.unit == "bytes" else f"{rate:.0f} features/s")
        parts.append(f"{elapsed:.1f} s")
        return ", ".join(parts)

    def done(self) -> None:
        self.logger.info("%s: done, %s", self.what, self.summary())
