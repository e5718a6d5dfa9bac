"""``reglink simulate``: a realistic, deterministic synthetic stream of registry records plus
ground truth. See :mod:`reglink.sim` for the parts.

Writes into ``out_dir``:

- ``events.jsonl``: person records, then watchlist records (adds, then removes), then all hotel,
  rental, residence and job records in arrival order: by report time, except deregistrations
  uploaded days after they were recorded (tagged ``out_of_order`` in ``truth.jsonl``);
- ``<source>.jsonl`` for each registered source (reglink.core.sources), each in arrival order;
- ``truth.jsonl``: per record ``{source, record_id|watch_id, person, [action], [noise]}``;
- ``truth_alerts.jsonl``: the alerts a perfect linker raises under docs/contract.md §2 with the
  default settings (``unregistered_stay``, ``stale_registration`` and ``watchlist_match``);
- ``truth_stats.jsonl``: the population statistics (docs/contract.md §3.4) of the true
  persons, one line per final (prefecture, date) with a count that is not zero.
"""

from __future__ import annotations

import json
import random
import time as _time
from collections import Counter
from datetime import date
from pathlib import Path

from reglink.core import sources
from reglink.sim import geo, truth
from reglink.sim.events import ID_PREFIX, WATCH_SHARE, Rec, World, iso
from reglink.sim.population import make_population

SOURCES = sources.NAMES


def generate(persons: int, days: int, start: str, seed: int,
             watch_share: float = WATCH_SHARE, decoy_share: float = 0.0) -> tuple[World, dict]:
    """Build the world in memory; records get their ids here. Returns (world, population stats).
    ``watch_share``: share of persons on the watchlist (innocent-namesake traps come on top);
    ``decoy_share``: share of them given an active namesake decoy (see World.add_decoys)."""
    if persons < 1 or days < 1:
        raise ValueError("persons and days must be at least 1")
    rng = random.Random(seed)
    d0 = date.fromisoformat(start)
    people, reg, pstats = make_population(rng, persons, d0)
    catalog = geo.Catalog(rng)
    world = World(rng, people, reg, catalog, d0, days, watch_share, decoy_share)
    world.run()
    rank = sources.current().ranks
    world.recs.sort(key=lambda r: (r.at is not None, r.at or world.t0, rank[r.source], r.order))
    counters: Counter = Counter()
    for r in world.recs:
        counters[r.source] += 1
        r.key = f"{ID_PREFIX[r.source]}{counters[r.source]:07d}"
    return world, pstats


def _record(r: Rec) -> dict:
    return {"source": r.source, sources.current()[r.source].id_field: r.key, **r.body}


def _truth(r: Rec) -> dict:
    t: dict = {"source": r.source}
    t[sources.current()[r.source].id_field] = r.key
    t["person"] = r.pid
    if r.source == "watchlist":
        t["action"] = r.body["action"]
    if r.tags:
        t["noise" if r.source != "watchlist" else "kind"] = r.tags
    return t


def noise_rates(world: World) -> dict[str, dict[str, float]]:
    """Share of records per source carrying each noise tag."""
    per: dict[str, Counter] = {}
    n: Counter = Counter()
    for r in world.recs:
        n[r.source] += 1
        c = per.setdefault(r.source, Counter())
        for t in r.tags:
            c[t] += 1
    return {s: {t: round(k / n[s], 4) for t, k in sorted(c.items())} for s, c in per.items()}


def _progress(label: str, items, total: int):
    """A progress bar on a terminal (stderr), a plain iterator otherwise."""
    import sys

    if not sys.stderr.isatty():
        return items
    from rich.progress import track

    return track(items, description=label, total=total, transient=True)


def run_simulate(persons: int, days: int, start: str, seed: int, out_dir: Path,
                 watch_share: float = WATCH_SHARE, decoy_share: float = 0.0) -> str:
    import sys

    t_start = _time.perf_counter()
    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status(f"simulating {persons} persons over {days} days"):
            world, pstats = generate(persons, days, start, seed, watch_share, decoy_share)
    else:
        world, pstats = generate(persons, days, start, seed, watch_share, decoy_share)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    ordered = [r for r in world.recs if r.source == "person"] + world.watch + \
              [r for r in world.recs if r.source != "person"]
    dumps = json.dumps
    lines = {s: [] for s in SOURCES}
    with open(out_dir / "events.jsonl", "w", encoding="utf-8") as ev, \
         open(out_dir / "truth.jsonl", "w", encoding="utf-8") as tr:
        for r in _progress("writing records", ordered, len(ordered)):
            line = dumps(_record(r), ensure_ascii=False)
            ev.write(line + "\n")
            lines[r.source].append(line)
            tr.write(dumps(_truth(r), ensure_ascii=False) + "\n")
    for s in SOURCES:
        with open(out_dir / f"{s}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(x + "\n" for x in lines[s])

    recs = [(_record(r), r.pid) for r in world.recs]
    stays = truth.unregistered_stays(recs)
    stale = truth.stale_registrations(recs)
    watch = [(_record(r), r.pid) for r in world.watch]
    leads = truth.watchlist_matches(watch, recs)
    with open(out_dir / "truth_alerts.jsonl", "w", encoding="utf-8") as f:
        for a in stays + stale + leads:
            f.write(dumps(a, ensure_ascii=False) + "\n")
    with open(out_dir / "truth_stats.jsonl", "w", encoding="utf-8") as f:
        for row in truth.population_stats(recs):
            f.write(dumps(row, ensure_ascii=False) + "\n")

    elapsed = _time.perf_counter() - t_start
    counts = Counter(r.source for r in ordered)
    total = sum(counts.values())
    traps = sum(1 for r in world.watch if "trap" in r.tags and r.body["action"] == "add")
    return (f"simulate: {persons} persons, {days} days from {start}, seed {seed}: {total} records "
            f"({', '.join(f'{s} {counts[s]}' for s in SOURCES)}); "
            f"{pstats['namesake_pairs']} namesake pairs, "
            f"{pstats['shared_phone_pairs']} shared phones; "
            f"{world.stats['moves']} moves (registered on time {world.stats['reg_timely']}, "
            f"late {world.stats['reg_late']}, never {world.stats['reg_never']}); "
            f"{world.stats['floating']} registered away from home (deregistered on time "
            f"{world.stats['dereg_timely']}, {world.stats['dereg_delayed']} of them uploaded late; "
            f"late {world.stats['dereg_late']}, never {world.stats['dereg_never']}); "
            f"truth: {len(stays)} unregistered stays, {len(stale)} stale registrations, "
            f"{len(leads)} watchlist leads, {traps} traps; "
            f"{out_dir} in {elapsed:.1f}s ({total / max(elapsed, 1e-9):,.0f} records/s)")


__all__ = ["run_simulate", "generate", "noise_rates", "iso"]
