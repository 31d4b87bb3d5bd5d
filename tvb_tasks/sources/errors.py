"""Errors of the source fetchers."""
from __future__ import annotations

from ..errors import TVBError


class SourceError(TVBError, RuntimeError):
    """A source could not be fetched or read completely.

    The message names the server (URL without secrets) or file, the layer, and the server's own message when there is
    one (e.g. the text of an OGC ExceptionReport). Never raised with partial data: an incomplete read is an error.
    """
