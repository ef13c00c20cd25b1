"""CSV exports staff open in a spreadsheet: one writer, and every cell neutralised (issue 11, finding 12).

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a formula by
spreadsheets (OWASP "CSV injection"): an address such as ``=HYPERLINK(...)@example.org`` typed into a
mailto unsubscribe, or a name from the federation's file, would run when staff open the export. Such a cell
is written with a leading apostrophe, which spreadsheets show as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK = 64_000  # characters per streamed piece


def safe_cell(value: object) -> str:
    """The cell as text, with a leading apostrophe when a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_rows(header: Iterable[object], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """Semicolon-separated CSV (as the federation's exports), CRLF line ends, streamed in pieces; every cell,
    header included, goes through ``safe_cell``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow([safe_cell(cell) for cell in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
        if buffer.tell() > CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
