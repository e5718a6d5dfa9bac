"""Readers for input files: JSON Lines and CSV, from files or stdin, optionally followed.

Every reader yields :class:`RawLine` items, which unpack as ``(raw_bytes, origin)``:

- ``raw_bytes`` is what :func:`reglink.core.contract.parse_record` parses (for CSV, the row
  converted to JSON),
- ``origin`` is ``{"file": path, "line": n}`` (1-based; a CSV row's first physical line),
- ``.original`` is the bytes exactly as read (the CSV line), which a dead letter keeps,
- ``.error`` is a reason the reader already decided (``malformed_csv: ...``), else None.

Every physical record becomes exactly one item, blank lines included (they dead-letter as
``empty``), so the publisher's counts reconcile with the input. No Kafka here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from reglink.core.contract import DeadLetter, parse_record

STDIN = "-"
STDIN_NAME = "<stdin>"
BOM = b"\xef\xbb\xbf"
# Columns that hold a list: a JSON array, or values separated by "|".
LIST_COLUMNS = frozenset({"person.aliases", "aliases"})

ProgressFn = Callable[[int], None]


class RawLine(tuple):
    """``(data, origin)`` plus ``.original`` (bytes as read) and ``.error`` (reader's reason)."""

    original: bytes
    error: str | None

    def __new__(cls, data: bytes, origin: dict[str, Any], original: bytes | None = None,
                error: str | None = None) -> RawLine:
        self = super().__new__(cls, (data, origin))
        self.original = data if original is None else original
        self.error = error
        return self

    @property
    def data(self) -> bytes:
        return self[0]

    @property
    def origin(self) -> dict[str, Any]:
        return self[1]


def detect_format(path: str, fmt: str = "auto") -> str:
    """``jsonl`` or ``csv``. ``auto`` goes by the extension; stdin defaults to JSON Lines."""
    if fmt in ("jsonl", "csv"):
        return fmt
    if fmt != "auto":
        raise ValueError(f"unknown format {fmt!r}")
    return "csv" if path != STDIN and path.lower().endswith(".csv") else "jsonl"


# --- physical lines ----------------------------------------------------------------------
def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def _lines(
    path: str,
    *,
    follow: bool = False,
    stop: threading.Event | None = None,
    poll_s: float = 0.2,
    progress: ProgressFn | None = None,
    stdin: Iterable[bytes] | None = None,
) -> Iterator[tuple[int, bytes]]:
    """``(line_no, bytes without terminator)`` for each physical line.

    ``-`` reads ``stdin`` when given (byte lines, e.g. lines already read for a check followed
    by the rest of the stream), else ``sys.stdin.buffer``.

    With ``follow``, waits at end of file for more (polling every ``poll_s``) until ``stop``
    is set; a partial last line is held until its newline arrives (or until stop). A file that
    shrinks (truncated / rotated in place) is read again from the start.
    """
    stop = stop or threading.Event()
    if path == STDIN:
        yield from _stream_lines(sys.stdin.buffer if stdin is None else stdin, stop, progress)
        return
    with open(path, "rb") as fh:
        n = 0
        pending = b""
        while True:
            line = fh.readline()
            if line:
                if progress:
                    progress(len(line))
                if not line.endswith(b"\n"):
                    pending += line
                    if not follow:
                        continue
                    line = b""
                else:
                    line, pending = pending + line, b""
                    n += 1
                    if n == 1 and line.startswith(BOM):
                        line = line[len(BOM):]
                    yield n, _strip_eol(line)
                    if stop.is_set():
                        return
                    continue
            # end of file (for now)
            if not follow or stop.is_set():
                if pending:
                    n += 1
                    if n == 1 and pending.startswith(BOM):
                        pending = pending[len(BOM):]
                    yield n, _strip_eol(pending)
                return
            try:
                if os.stat(path).st_size < fh.tell():  # truncated in place
                    fh.seek(0)
                    n, pending = 0, b""
            except FileNotFoundError:
                pass
            stop.wait(poll_s)


def _stream_lines(stream: BinaryIO | Iterable[bytes], stop: threading.Event,
                  progress: ProgressFn | None) -> Iterator[tuple[int, bytes]]:
    for n, line in enumerate(stream, 1):
        if progress:
            progress(len(line))
        if n == 1 and line.startswith(BOM):
            line = line[len(BOM):]
        yield n, _strip_eol(line)
        if stop.is_set():
            return


# --- JSON Lines --------------------------------------------------------------------------
def read_jsonl(path: str, **kw: Any) -> Iterator[RawLine]:
    """One item per physical line of a JSON Lines file (``-`` is stdin)."""
    name = STDIN_NAME if path == STDIN else path
    for n, line in _lines(path, **kw):
        yield RawLine(line, {"file": name, "line": n})


# --- CSV ---------------------------------------------------------------------------------
def _logical_rows(lines: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, bytes, bool]]:
    """Join physical lines into CSV rows (a quoted field may hold newlines).

    Yields ``(first line number, row bytes, quotes balanced)``.
    """
    start, buf, quotes = 0, [], 0
    for n, line in lines:
        if not buf:
            start = n
        buf.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            yield start, b"\n".join(buf), True
            buf, quotes = [], 0
    if buf:
        yield start, b"\n".join(buf), False


def _set_path(obj: dict[str, Any], column: str, value: Any) -> str | None:
    parts = column.split(".")
    node = obj
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            return f"malformed_csv: column {column} clashes with column {p}"
        node = child
    if parts[-1] in node:
        return f"malformed_csv: column {column} given twice"
    node[parts[-1]] = value
    return None


def csv_row_to_record(header: list[str], fields: list[str]) -> tuple[dict[str, Any] | None,
                                                                     str | None]:
    """Build the nested record of one CSV row: ``person.name`` -> ``{"person": {"name"}}``.

    Empty cells are absent fields. List columns take a JSON array or ``a|b|c``.
    Returns ``(record, None)`` or ``(None, reason)``.
    """
    if len(fields) > len(header):
        return None, "malformed_csv: more fields than header columns"
    if len(fields) < len(header):
        return None, "malformed_csv: fewer fields than header columns"
    obj: dict[str, Any] = {}
    for column, value in zip(header, fields, strict=False):
        if value == "" or column == "":
            continue
        if column in LIST_COLUMNS:
            if value.lstrip().startswith("["):
                try:
                    value = json.loads(value)
                except ValueError:
                    return None, f"malformed_csv: {column} is not a JSON list"
            else:
                value = [v.strip() for v in value.split("|") if v.strip()]
        err = _set_path(obj, column, value)
        if err:
            return None, err
    return obj, None


def read_csv(path: str, **kw: Any) -> Iterator[RawLine]:
    """One item per CSV data row; the first row is the header of dotted column names."""
    name = STDIN_NAME if path == STDIN else path
    header: list[str] | None = None
    header_error: str | None = None
    for n, row_bytes, balanced in _logical_rows(_lines(path, **kw)):
        origin = {"file": name, "line": n}
        if header is None and header_error is None:
            try:
                header = [c.strip() for c in next(csv.reader([row_bytes.decode("utf-8")]))]
            except (UnicodeDecodeError, StopIteration, csv.Error):
                header_error = "malformed_csv: header is not a UTF-8 CSV row"
            continue
        if header_error:
            yield RawLine(row_bytes, origin, error=header_error)
            continue
        if not row_bytes.strip():
            yield RawLine(row_bytes, origin)  # -> "empty"
            continue
        try:
            text = row_bytes.decode("utf-8")
        except UnicodeDecodeError:
            yield RawLine(row_bytes, origin)  # parse_record reports "encoding"
            continue
        if not balanced:
            yield RawLine(row_bytes, origin, error="malformed_csv: unclosed quote")
            continue
        try:
            rows = list(csv.reader(io.StringIO(text), strict=True))
        except csv.Error:
            yield RawLine(row_bytes, origin, error="malformed_csv: bad quoting")
            continue
        if len(rows) != 1:
            yield RawLine(row_bytes, origin, error="malformed_csv: bad quoting")
            continue
        assert header is not None
        record, reason = csv_row_to_record(header, rows[0])
        if reason is not None:
            yield RawLine(row_bytes, origin, error=reason)
            continue
        data = json.dumps(record, ensure_ascii=False).encode("utf-8")
        yield RawLine(data, origin, original=row_bytes)


# --- many files --------------------------------------------------------------------------
def read_files(paths: Iterable[str], fmt: str = "auto", *, follow: bool = False,
               stop: threading.Event | None = None, poll_s: float = 0.2,
               progress: ProgressFn | None = None,
               stdin: Iterable[bytes] | None = None) -> Iterator[RawLine]:
    """Read each file in turn. With ``follow``, the last file is followed (like ``tail -f``).
    ``stdin`` replaces ``sys.stdin.buffer`` for ``-`` (see :func:`_lines`)."""
    paths = list(paths)
    stop = stop or threading.Event()
    for i, path in enumerate(paths):
        if stop.is_set():
            return
        last = i == len(paths) - 1
        reader = read_csv if detect_format(path, fmt) == "csv" else read_jsonl
        yield from reader(path, follow=follow and last and path != STDIN, stop=stop,
                          poll_s=poll_s, progress=progress, stdin=stdin)


def parse_line(item: RawLine, source: str) -> tuple[dict[str, Any] | None, DeadLetter | None]:
    """Validate one reader item (a reader-decided error becomes a dead letter directly)."""
    data, origin = item
    if item.error is not None:
        return None, DeadLetter(source, item.error, item.original, dict(origin))
    return parse_record(data, source, origin, original=item.original)


def iter_records(paths: Iterable[str | Path], source: str, fmt: str = "auto", **kw: Any
                 ) -> Iterator[tuple[dict[str, Any] | None, DeadLetter | None]]:
    """``(record, None)`` or ``(None, dead_letter)`` for every record in ``paths``."""
    for item in read_files([str(p) for p in paths], fmt, **kw):
        yield parse_line(item, source)

