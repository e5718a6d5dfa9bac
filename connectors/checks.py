"""Checks on ``reglink publish``'s inputs, made before anything is sent.

Each input must be a regular readable file (or ``-``, stdin) whose head fits the source:

- CSV: the first row is a UTF-8 header naming every field the contract requires of the source
  (``required`` in the source's JSON Schema, read through :func:`reglink.core.contract.schema_for`;
  ``source`` itself may be left out, it is filled from ``--source``). A header without one of
  them would dead-letter every row with ``missing_field``.
- JSON Lines: the first non-blank line is a JSON object whose ``source`` is the one being
  published. A record without ``source`` is taken as the source being published
  (:func:`reglink.core.contract.parse_record` fills it in), unless it breaks this source's contract
  and is a valid record of one other source (see :func:`_most_specific`): then the file is of
  that other source.

Only the head of a file is read here: a bad record further down is the publisher's business
(it is dead-lettered with its reason). A file that is empty, or blank only, is refused unless
it is the file being followed. A problem is one line naming the file and the fix, and never
quotes the file's content (which holds personal data).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from connectors.readers import BOM, STDIN, STDIN_NAME, detect_format
from reglink.core.contract import SOURCES, parse_record, schema_for

#: How much of a file's head a check reads at most.
PEEK_BYTES = 1 << 20


@dataclass(frozen=True)
class Problem:
    """Why one input is refused, and what to do about it."""

    file: str
    message: str

    def line(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class Checked:
    """The outcome of :func:`check_inputs`: the problems (none means go ahead) and, when stdin
    is an input, the stdin lines to publish (the lines the check read, then the rest)."""

    problems: list[Problem]
    stdin: Iterable[bytes] | None = None


def required_fields(source: str) -> tuple[str, ...]:
    """Top-level fields the contract requires of every ``source`` record, except ``source``.

    Read from the source's schema: its ``required`` list and those of its ``allOf`` parts
    (conditional requirements, such as a watchlist ``add``'s, are not included).
    """
    schema = schema_for(source)
    names: list[str] = list(schema.get("required", ()))
    for part in schema.get("allOf", ()):
        if isinstance(part, dict):
            names.extend(part.get("required", ()))
    return tuple(dict.fromkeys(n for n in names if n != "source"))


def missing_columns(header: list[str], source: str) -> list[str]:
    """Required fields of ``source`` that no column of a CSV ``header`` provides (a dotted
    column ``person.name`` provides ``person``)."""
    present = {column.split(".", 1)[0] for column in header if column}
    return [f for f in required_fields(source) if f not in present]


def _most_specific(sources: list[str], source: str) -> list[str]:
    """Of the other sources a record or header fits, those worth naming instead of ``source``:
    not one whose required fields ``source`` requires too (that fits anything meant for
    ``source``), and of the rest those requiring the most fields (a hotel record is also a
    valid ``person`` record, which requires only ``record_id`` and ``person``)."""
    own = set(required_fields(source))
    sources = [s for s in sources if not set(required_fields(s)) <= own]
    if not sources:
        return []
    most = max(len(required_fields(s)) for s in sources)
    return [s for s in sources if len(required_fields(s)) == most]


def _sources_fitting(header: list[str], source: str) -> list[str]:
    return _most_specific([s for s in SOURCES if s != source and not missing_columns(header, s)],
                          source)


# --- heads ---------------------------------------------------------------------------------
def _file_lines(fh: BinaryIO) -> Iterator[bytes]:
    """Physical lines of a file's head (with their terminators), at most :data:`PEEK_BYTES`."""
    left = PEEK_BYTES
    while left > 0:
        line = fh.readline(left)
        if not line:
            return
        left -= len(line)
        yield line


def _strip(line: bytes, first: bool) -> bytes:
    if first and line.startswith(BOM):
        line = line[len(BOM):]
    return line.rstrip(b"\r\n")


def _jsonl_head(lines: Iterable[bytes], source: str, follow: bool) -> str | None:
    """The problem with a JSON Lines head, or None."""
    for n, raw in enumerate(lines, 1):
        line = _strip(raw, n == 1)
        if not line.strip():
            continue
        if b"\x00" in line:
            return (f"line {n} is binary data, not JSON Lines: pass a JSON Lines (.jsonl) or "
                    "CSV (.csv) file")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return (f"line {n} is not UTF-8 text: convert the file to UTF-8 "
                    "(for example `iconv -f GBK -t UTF-8`)")
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            hint = ("; if the file is CSV, name it .csv or pass --format csv"
                    if "," in text and not text.lstrip().startswith(("{", "[")) else "")
            return f"line {n} is not JSON: JSON Lines needs one JSON object per line{hint}"
        if not isinstance(obj, dict):
            return f"line {n} is not a JSON object: JSON Lines needs one JSON object per line"
        if "source" in obj:
            given = obj["source"]
            if given == source:
                return None
            if isinstance(given, str) and given in SOURCES:
                return f"line {n} is a {given} record, not {source}: use --source {given}"
            return (f'line {n} has a "source" that is not "{source}": check --source, or fix '
                    'the records\' "source"')
        if parse_record(line, source, {})[0] is not None:
            return None
        others = _most_specific([s for s in SOURCES
                                 if s != source and parse_record(line, s, {})[0] is not None],
                                source)
        if len(others) == 1:
            return (f'line {n} has no "source" and is a valid {others[0]} record, not a '
                    f"{source} one: use --source {others[0]}")
        return None
    if follow:
        return None
    return "has no records (it is empty or blank): nothing to publish"


def _csv_head(lines: Iterable[bytes], source: str, follow: bool) -> str | None:
    """The problem with a CSV head (its header row), or None."""
    parts: list[bytes] = []
    quotes = 0
    for n, raw in enumerate(lines, 1):
        line = _strip(raw, n == 1)
        parts.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            break
    else:
        if not parts:
            return None if follow else "is empty: a CSV file needs a header row, then records"
        return "the header row has an unclosed quote: fix the first row of column names"
    row = b"\n".join(parts)
    if b"\x00" in row:
        return "the first row is binary data, not a CSV header: pass a CSV (.csv) file"
    try:
        text = row.decode("utf-8")
    except UnicodeDecodeError:
        return ("the header row is not UTF-8 text: convert the file to UTF-8 "
                "(for example `iconv -f GBK -t UTF-8`)")
    try:
        header = [c.strip() for c in next(csv.reader([text]), [])]
    except csv.Error:
        return "the header row is not a CSV row: the first row must name the columns"
    if not any(header):
        return "the first row is empty: it must be the header of column names"
    missing = missing_columns(header, source)
    if not missing:
        return None
    plural = "s" if len(missing) > 1 else ""
    message = (f"the header lacks the column{plural} {', '.join(missing)} that every {source} "
               f"record needs: add {'them' if plural else 'it'} to the first row")
    if text.lstrip().startswith("{"):
        return message + "; the file looks like JSON Lines: pass --format jsonl"
    fitting = _sources_fitting(header, source)
    if fitting:
        return message + f"; the header fits --source {' or '.join(fitting)}"
    return message


def _head_problem(kind: str, lines: Iterable[bytes], source: str, follow: bool) -> str | None:
    check: Callable[[Iterable[bytes], str, bool], str | None] = (
        _csv_head if kind == "csv" else _jsonl_head)
    return check(lines, source, follow)


# --- files ---------------------------------------------------------------------------------
def check_file(path: str, source: str, fmt: str = "auto", follow: bool = False) -> str | None:
    """The problem with one input file (not ``-``), or None when it can be published."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file: check the path"
    except PermissionError:
        return "cannot be reached (permission denied): check the permissions of its folders"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__}): check the path"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory: pass the files in it (for example DIR/*.jsonl)"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file: pass a regular file, or pipe the data to stdin as `-`"
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except PermissionError:
        return "cannot be read (permission denied): check its permissions"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__}): check the file"
    try:
        with fh:
            return _head_problem(detect_format(path, fmt), _file_lines(fh), source, follow)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__}): check the file"


def _stdin_head(stream: Any, kind: str, source: str) -> tuple[list[bytes], str | None]:
    """Read stdin's head for the check; return the lines read and the problem (or None)."""
    taken: list[bytes] = []

    def lines() -> Iterator[bytes]:
        while True:
            line = stream.readline()
            if not line:
                return
            taken.append(line)
            yield line

    return taken, _head_problem(kind, lines(), source, False)


def check_inputs(files: list[str], source: str, fmt: str = "auto", follow: bool = False,
                 *, stdin: Any = None) -> Checked:
    """Check every input before anything is sent; see the module docstring.

    ``stdin`` is the binary stream behind ``-`` (default ``sys.stdin.buffer``). Its head is
    read for the check, so when ``-`` is an input, publish :attr:`Checked.stdin` in its place.
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    stdin_lines: Iterable[bytes] | None = None
    for i, path in enumerate(files):
        name = STDIN_NAME if path == STDIN else path
        key = path if path == STDIN else os.path.realpath(path)
        if key in seen:
            problems.append(Problem(name, "is given twice: pass each input once"))
            continue
        seen.add(key)
        kind = detect_format(path, fmt)
        if path == STDIN:
            stream = sys.stdin.buffer if stdin is None else stdin
            taken, problem = _stdin_head(stream, kind, source)
            stdin_lines = itertools.chain(taken, stream)
        else:
            follow_this = follow and i == len(files) - 1
            problem = check_file(path, source, fmt, follow_this)
        if problem is not None:
            problems.append(Problem(name, problem))
    return Checked(problems, stdin_lines)
