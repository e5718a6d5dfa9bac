"""``reglink replay``: the worker's core in one process, embedded store, no Kafka or Redis.

Writes ``links.jsonl`` (one line per input record, person ids after all merges),
``alerts.jsonl`` (every alert message in emission order), ``stats.jsonl`` (the last row of
each final (prefecture, date) with a count that is not zero, sorted), ``deadletter.jsonl`` and
``quality.jsonl`` (the final source quality report of every organisation, by source and
organisation: :mod:`reglink.core.quality`; dead letters are counted as they are written).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from reglink.core.contract import parse_record
from reglink.core.errors import ReglinkError
from reglink.core.pipeline import Pipeline
from reglink.core.quality import final_reports
from reglink.core.settings import Settings
from reglink.core.topics import SOURCES
from reglink.stores import schema as sk
from reglink.stores.kv import MemoryKV

REPLAY_IDENTITY_CACHE = 5_000_000


@dataclass
class ReplayResult:
    read: int
    linked: int
    deadlettered: int
    alerts: int
    identities: int
    seconds: float

    def line(self) -> str:
        rate = self.read / self.seconds if self.seconds else 0.0
        return (f"read {self.read}, linked {self.linked}, dead-lettered {self.deadlettered}, "
                f"alerts {self.alerts}, identities {self.identities} "
                f"in {self.seconds:.1f}s ({rate:,.0f} records/s)")


def _source_of(raw: bytes, default: str | None) -> str:
    """The source a replay line claims (replay files may mix sources)."""
    try:
        obj = json.loads(raw)
        src = obj.get("source") if isinstance(obj, dict) else None
    except (ValueError, UnicodeDecodeError):
        src = None
    if src in SOURCES:
        return src
    return default or "person"


_LEADING_SOURCE = re.compile(rb'\{"source": ?"([a-z]+)"')


def parse_line(raw: bytes, default: str | None, origin: dict):
    """``parse_record`` of a replay line under the source it claims (:func:`_source_of`),
    without parsing the line twice: when the object's first key is the only ``"source"`` in
    the line (and no escape could spell another), that is the source ``json.loads`` finds.
    A line that then fails (malformed JSON, say) is parsed again with :func:`_source_of`,
    so dead letters carry the same source as before."""
    m = _LEADING_SOURCE.match(raw)
    if m is not None and raw.count(b'"source"') == 1 and b"\\u" not in raw:
        src = m.group(1).decode()
        if src in SOURCES:
            record, dl = parse_record(raw, src, origin)
            if dl is None:
                return record, dl
            if _source_of(raw, default) == src:
                return record, dl
    return parse_record(raw, _source_of(raw, default), origin)


def write_stats(path: Path, rows) -> None:
    """Final population rows (the last of each (prefecture, date)) as JSON Lines, sorted by
    (prefecture, date); a row whose counts are all zero is left out."""
    with path.open("w", encoding="utf-8") as fh:
        for row in sorted(rows, key=lambda r: (r["prefecture"], r["date"])):
            if any(v for k, v in row.items() if k not in ("prefecture", "date")):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


class _Bar:
    def __init__(self, total: int) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.p = Progress(TextColumn("replay"), BarColumn(), DownloadColumn(),
                          TimeRemainingColumn(), transient=True)
        self.task = self.p.add_task("replay", total=total)
        self.p.start()

    def advance(self, n: int) -> None:
        self.p.advance(self.task, n)

    def stop(self) -> None:
        self.p.stop()


def _progress(files: list[Path]) -> _Bar:
    return _Bar(sum(p.stat().st_size for p in files))


def iter_lines(path: Path):
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            yield n, line.rstrip(b"\r\n")


def load_decisions(path: Path) -> list[dict]:
    """Reviewers' decisions as JSON Lines (a dump of the ``decisions`` topic)."""
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    raise ReglinkError(f"{path}:{n} is not a JSON decision: fix or drop the "
                                       "line (the file holds one decision per line)") from None
    return out


def run_replay(settings: Settings, files: list[Path], out_dir: Path,
               progress: bool | None = None,
               decisions: list[dict] | None = None) -> ReplayResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    # Everything is in this process's memory anyway: keep every identity decoded, so that
    # candidates are never decoded from JSON again (at 1M records a 50k cache missed ~3
    # times a record: a third of the replay's time).
    # Bounded: the statistics are counted once from the final state, not kept record by record.
    pipe = Pipeline(settings, MemoryKV(), identity_cache=REPLAY_IDENTITY_CACHE, bounded=True)
    for d in decisions or []:  # reviewers' decisions hold before any record is matched
        pipe.apply_decision(d)
    bar = _progress(files) if progress else None
    t0 = time.perf_counter()
    links: list[tuple[str, str, str | None]] = []  # (field, id, person_id at link time)
    stats: dict[str, dict] = {}  # "<prefecture>|<date>" -> its last row
    read = dead = n_alerts = 0
    with (out_dir / "alerts.jsonl").open("w", encoding="utf-8") as alerts_fh, \
            (out_dir / "deadletter.jsonl").open("w", encoding="utf-8") as dl_fh:

        def emit(outs):
            nonlocal n_alerts
            for o in outs:
                if o.topic == "alerts":
                    alerts_fh.write(json.dumps(o.value, ensure_ascii=False) + "\n")
                    n_alerts += 1
                elif o.topic == "stats":
                    stats[o.key] = o.value

        for path in files:
            stem_source = path.stem if path.stem in SOURCES else None
            for n, raw in iter_lines(path):
                read += 1
                if bar is not None:
                    bar.advance(len(raw) + 1)
                record, dl = parse_line(raw, stem_source, {"file": str(path), "line": n})
                if dl is not None:
                    dead += 1
                    message = dl.to_message()
                    dl_fh.write(json.dumps(message, ensure_ascii=False) + "\n")
                    pipe.dead_lettered(message)
                    continue
                pid, outs = pipe.process(record)
                field = "watch_id" if record["source"] == "watchlist" else "record_id"
                links.append((field, str(record[field]), pid))
                emit(outs)
        emit(pipe.finish())
    if bar is not None:
        bar.stop()
    write_stats(out_dir / "stats.jsonl", stats.values())
    resolve = pipe.store.resolve
    with (out_dir / "links.jsonl").open("w", encoding="utf-8") as fh:
        for field, rid, pid in links:
            if field == "watch_id":  # the person the entry designates, once matched
                hits = sorted({resolve(p) for p in pipe.kv.smembers(sk.watch_named(rid))})
                if not hits and pipe.kv.smembers(sk.watch_alerts(rid)):
                    pid = None  # every person it named was withdrawn as ambiguous
                pid = hits[0] if hits else pid
            fh.write(json.dumps({field: rid, "person_id": resolve(pid) if pid else None}) + "\n")
    with (out_dir / "quality.jsonl").open("w", encoding="utf-8") as fh:
        for line in final_reports(pipe.kv.base):
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return ReplayResult(read, len(links), dead, n_alerts, pipe.store.count(),
                        time.perf_counter() - t0)
