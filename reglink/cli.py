"""The ``reglink`` command line. A thin shell: parse options, build settings once, call in.

Heavy modules (faust, kafka, redis) are imported inside each command, never at import time.
Errors that reglink raises on purpose print as one line with the fix, not a traceback.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from matchers import native
from matchers.model import ModelError
from reglink.core import sources
from reglink.core.errors import ReglinkError
from reglink.core.settings import Settings, load_settings
from reglink.stores.kv import OldLayout


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # one clear line for our own errors
        try:
            return super().invoke(ctx)
        except (ReglinkError, OldLayout, ModelError) as exc:
            click.secho(f"reglink: {exc}", fg="red", err=True)
            sys.exit(2)


class SourceChoice(click.Choice):
    """One of the registered sources (reglink.core.sources), read when the option is parsed."""

    def __init__(self) -> None:
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return sources.current().names


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reglink",
                      message="reglink %(version)s\ncore: " + native.mode())
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Settings file (JSON or KEY=VALUE lines). Env REGLINK_* overrides it.")
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """reglink: link registry records to persons in real time and raise explainable alerts.

    \b
    Without the stack (one process, in memory):
      reglink simulate --persons 300 --days 5 --out data/
      reglink replay data/events.jsonl --out out/
      reglink evaluate data/ out/
    \b
    On the local stack (Kafka + Redis):
      reglink demo
      reglink stack up
      reglink publish --source hotel data/hotel.jsonl
      reglink worker
      reglink alerts --from-beginning --timeout 5

    `reglink demo` runs the whole pipeline and prints the commands that show what it made.
    data/events.jsonl holds every source in event order; data/<source>.jsonl one source each
    (the other files in data/ are the simulator's ground truth, not input).
    """
    ctx.obj = {"config_file": config_file}


PREFIX_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


def _prefix_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    name = value.rstrip(".:")
    if not PREFIX_NAME.match(name):
        raise click.BadParameter(f"{value!r}: use letters, digits, '.', '_' and '-' (a run "
                                 "name such as demo143025)")
    return name


def _prefix_option(f):
    return click.option(
        "--prefix", "prefix", default=None, metavar="NAME", callback=_prefix_name,
        help="Look at the run NAME (e.g. one `reglink demo` made): topics NAME.* and Redis keys "
             "under <REGLINK_REDIS_PREFIX>NAME: instead of the configured prefixes.")(f)


def _model_option(f):
    return click.option(
        "--model", "model", default=None, metavar="FILE",
        type=click.Path(exists=True, dir_okay=False),
        help="Matcher model file (`reglink train --out FILE` writes one; default: "
             "REGLINK_MODEL, else the shipped matchers/models/fs-zh.json).")(f)


def prefixed(settings: Settings, name: str) -> Settings:
    """``settings`` for the run ``name``: topic prefix ``name.``, Redis prefix nested under the
    configured one (in scram mode the Redis users may only touch keys below it)."""
    return settings.model_copy(update={"topic_prefix": f"{name}.",
                                       "redis_prefix": f"{settings.redis_prefix}{name}:"})


def _settings(ctx: click.Context, prefix: str | None = None, **overrides) -> Settings:
    settings = load_settings(ctx.obj.get("config_file"), **overrides)
    return prefixed(settings, prefix) if prefix else settings


# --- stack -------------------------------------------------------------------------------
@main.group()
def stack() -> None:
    """Run the local stack without Docker: Apache Kafka 3.9 (KRaft) and Redis (AOF)."""


@stack.command("up")
@click.pass_context
def stack_up(ctx: click.Context) -> None:
    """Fetch Kafka jars (Maven, cached), start Kafka + Redis, create the topics."""
    from reglink.devstack import stack as _stack

    _stack.up(_settings(ctx))


@stack.command("down")
@click.pass_context
def stack_down(ctx: click.Context) -> None:
    """Stop what `stack up` started (by pid)."""
    from reglink.devstack import stack as _stack

    _stack.down(_settings(ctx))


@stack.command("status")
@click.pass_context
def stack_status(ctx: click.Context) -> None:
    """Show whether Kafka and Redis are up and answering."""
    from reglink.devstack import stack as _stack

    sys.exit(_stack.status(_settings(ctx)))


# --- connectors --------------------------------------------------------------------------
@main.command()
@click.option("--source", required=True,
              type=SourceChoice())
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "csv"]), default="auto",
              show_default=True)
@click.option("--follow", is_flag=True, help="Keep reading a growing file (like tail -f).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as one JSON object (counts, reasons, per file, exit status).")
@click.argument("files", nargs=-1, type=click.Path(allow_dash=True))
@click.pass_context
def publish(ctx: click.Context, source: str, fmt: str, follow: bool, as_json: bool,
            files: tuple[str, ...]):
    """Validate records of one SOURCE and publish them to Kafka; bad ones go to dead-letter.

    FILES are JSON Lines or CSV; none or '-' reads stdin. Every input is checked before
    anything is sent: it must be a readable file whose head fits SOURCE (a CSV header with
    every column the source requires; a first JSON Lines record of this source). A problem is
    one line on stderr per input, and nothing is sent. The summary gives the dead-letter
    reasons with their counts and first file:line, and warns of an input whose every record
    was dead-lettered.

    \b
    Exit status:
      0  every record was published
      1  not every record was sent: a send was not acknowledged, or an input failed mid-way
      2  usage error, or Kafka or its topics not reachable (nothing read)
      3  every record was acknowledged, some of them dead-lettered
      4  nothing usable: inputs refused before sending, or no record published
    """
    import json

    from connectors.checks import check_inputs
    from connectors.publish import PublishSummary, run_publish

    inputs = list(files) or ["-"]
    checked = check_inputs(inputs, source, fmt, follow)
    if checked.problems:
        summary = PublishSummary(refused=checked.problems)
        for problem in checked.problems:
            click.echo(f"reglink publish: {problem.line()}", err=True)
    else:
        settings = _settings(ctx)
        try:
            summary = run_publish(settings, source, inputs, fmt=fmt, follow=follow,
                                  stdin=checked.stdin)
        except ReglinkError as exc:  # printed as one line by the group, exit 2
            if as_json:
                click.echo(json.dumps({"error": str(exc), "exit_status": 2}, ensure_ascii=False))
            raise
        for warning in summary.warnings():
            click.echo(f"reglink publish: {warning}", err=True)
        if summary.read_error:
            click.echo(f"reglink publish: reading stopped at {summary.read_error}; the "
                       "records read before were sent (a rerun sends them again)", err=True)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        click.echo("\n".join(summary.text()))
    sys.exit(summary.exit_status())


# --- simulate ----------------------------------------------------------------------------
@main.command()
@click.option("--persons", default=2000, show_default=True, help="Population size.")
@click.option("--days", default=1, show_default=True, help="Days of events.")
@click.option("--start", default="2026-03-01", show_default=True, help="First day (YYYY-MM-DD).")
@click.option("--seed", default=7, show_default=True)
@click.option("--watch-share", default=0.01, show_default=True, type=click.FloatRange(0, 1),
              help="Share of persons on the watchlist (innocent-namesake traps come on top).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def simulate(persons: int, days: int, start: str, seed: int, watch_share: float,
             out_dir: str) -> None:
    """Write a realistic synthetic stream of registry events plus ground truth.

    OUT gets events.jsonl (every source, in event order: the input for replay), one
    <source>.jsonl per source (the input for publish), and truth.jsonl, truth_alerts.jsonl
    (ground truth for evaluate).

    \b
    Example:
      reglink simulate --persons 300 --days 5 --out data/
    """
    from reglink.sim.simulate import run_simulate

    stats = run_simulate(persons=persons, days=days, start=start, seed=seed, out_dir=Path(out_dir),
                         watch_share=watch_share)
    click.echo(stats)


# --- replay ------------------------------------------------------------------------------
@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--decisions", "decisions_file", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="Reviewers' decisions (JSON Lines, a dump of the decisions topic), applied "
                   "before the records: dismissed pairs and misused identities stay quiet.")
@_model_option
@click.pass_context
def replay(ctx: click.Context, files: tuple[str, ...], out_dir: str,
           decisions_file: str | None, model: str | None) -> None:
    """Run the worker's linking and rules in one process (no Kafka, no Redis).

    Give the records once: a simulated data/events.jsonl holds every source (its per-source
    files repeat the same records, and truth*.jsonl is not input). OUT gets links.jsonl and
    alerts.jsonl.

    \b
    Example:
      reglink replay data/events.jsonl --out out/
    """
    from reglink.replay import load_decisions, run_replay
    from reglink.runtime import tune_gc

    tune_gc()
    decisions = load_decisions(Path(decisions_file)) if decisions_file else None
    result = run_replay(_settings(ctx, model=model), [Path(f) for f in files], Path(out_dir),
                        progress=sys.stderr.isatty(), decisions=decisions)
    click.echo(result.line())


# --- rebuild -----------------------------------------------------------------------------
@main.command()
@click.option("--prefix", default=None, help="Redis key prefix to rebuild into "
              "(default: the configured one, which must be empty).")
@click.option("--force", is_flag=True, help="Write even if the prefix holds keys.")
@_model_option
@click.pass_context
def rebuild(ctx: click.Context, prefix: str | None, force: bool, model: str | None) -> None:
    """Rebuild the Redis state (identities, stays, alert statuses) from the Kafka topics."""
    from reglink.rebuild import run_rebuild
    from reglink.runtime import tune_gc

    tune_gc()
    click.echo(run_rebuild(_settings(ctx, model=model), prefix=prefix, force=force).line())


# --- purge -------------------------------------------------------------------------------
@main.command()
@click.option("--before", default=None, metavar="DATE",
              help="Cut-off: identities with no record since DATE (YYYY-MM-DD, 00:00 UTC, or "
                   "an ISO time).")
@click.option("--older-than", "older_than", default=None, type=click.IntRange(min=0),
              metavar="DAYS", help="Cut-off: now minus DAYS (default: REGLINK_PURGE_AFTER_DAYS, "
                                   "180).")
@click.option("--dry-run", is_flag=True, help="Count what would be purged; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
def purge(ctx: click.Context, before: str | None, older_than: int | None, dry_run: bool,
          as_json: bool) -> None:
    """Delete identities past their purpose: no record since the cut-off, no open stay, no
    alert under review (keys, index entries, links, stay and alert state). Safe beside
    running workers; the run is written to the audit topic."""
    import json

    from reglink.purge import run_purge

    if before and older_than is not None:
        raise click.UsageError("give --before or --older-than, not both")
    res = run_purge(_settings(ctx), before=before, older_than_days=older_than, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"cutoff": res.cutoff.isoformat(), **res.report.counts(),
                               "audit_ids": res.audit_ids}))
    else:
        click.echo(res.line())


# --- evaluate ----------------------------------------------------------------------------
@main.command()
@click.argument("sim_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False))
@_model_option
@click.pass_context
def evaluate(ctx: click.Context, sim_dir: str, out_dir: str, model: str | None) -> None:
    """Score OUT_DIR (links.jsonl, alerts.jsonl) against SIM_DIR's ground truth.

    The result names the model ids OUT_DIR's alerts carry; with --model (or REGLINK_MODEL),
    an alert weighed by another model is refused.

    \b
    Example:
      reglink evaluate data/ out/
    """
    import json

    from matchers.model import load_model
    from reglink.evaluate import evaluate as _evaluate

    chosen = _settings(ctx, model=model).model
    expect = load_model(chosen).version if chosen else None
    click.echo(json.dumps(_evaluate(Path(sim_dir), Path(out_dir), model=expect), indent=2))


# --- train -------------------------------------------------------------------------------
@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (not the shipped matchers/models/fs-zh.json).")
@click.option("--u-pairs", default=100_000, show_default=True,
              help="Random record pairs for the u estimates.")
@click.option("--no-calibrate", is_flag=True, help="Ignore truth.jsonl even when present.")
def train(inputs: tuple[str, ...], out_file: str, u_pairs: int, no_calibrate: bool) -> None:
    """Estimate the matcher's Fellegi-Sunter model (EM, no labels) from INPUTS and save it.

    INPUTS are JSON Lines record files, or a `reglink simulate` directory (its events.jsonl;
    its truth.jsonl, if present, is used only to calibrate the probability). Use the model
    with `--model FILE` (replay, worker, rebuild, evaluate) or REGLINK_MODEL.

    \b
    Example:
      reglink train data/ --out model.json
    """
    import json

    from matchers.em import train as _train
    from matchers.model import is_shipped
    from reglink.core.contract import parse_record, record_key

    if is_shipped(out_file):
        raise ReglinkError(f"{out_file} is the shipped model: write the new one elsewhere "
                           "(--out FILE) and select it with --model FILE or REGLINK_MODEL")

    files: list[Path] = []
    truth: dict[str, str] = {}
    for inp in map(Path, inputs):
        if inp.is_dir():
            files.append(inp / "events.jsonl")
            tp = inp / "truth.jsonl"
            if tp.exists() and not no_calibrate:
                for line in tp.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        t = json.loads(line)
                        rid = t.get("record_id") or t.get("watch_id")
                        src = t.get("source") or ("watchlist" if t.get("watch_id") else None)
                        truth[f"{src}:{rid}" if src else rid] = t["person"]
        else:
            files.append(inp)
    records = []
    for f in files:
        with f.open("rb") as fh:
            for n, raw in enumerate(fh, 1):
                try:
                    src = json.loads(raw).get("source") or "person"
                except ValueError:
                    continue
                rec, dl = parse_record(raw.rstrip(b"\r\n"), src, {"file": str(f), "line": n})
                if dl is None and rec["source"] != "watchlist":
                    records.append((rec, record_key(rec)))
    model = _train(records, truth or None, u_pairs=u_pairs,
                   files=[f.name if f.name != "events.jsonl" else f"{f.parent.name}/{f.name}"
                          for f in files], log=click.echo)
    model.save(Path(out_file))
    click.echo(f"model {model.version}: lambda {model.lam:.4f}, calibration "
               f"{model.calibration}, {len(model.tf)} name keys in the TF table -> {out_file}")


# --- model -------------------------------------------------------------------------------
@main.group("model")
def model_group() -> None:
    """Look at a matcher model file."""


@model_group.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def model_show(file: str) -> None:
    """Print FILE's model card: what it was trained on, the comparators and their versions,
    lambda, the TF table, and per feature each level's m, u and weight.

    \b
    Example:
      reglink model show model.json
    """
    from matchers.model import FSModel, card

    for line in card(FSModel.load(file)):
        click.echo(line)


# --- worker ------------------------------------------------------------------------------
@main.command()
@click.option("--workdir", default=None, help="faust data directory (default: state_dir/worker)")
@_model_option
@click.pass_context
def worker(ctx: click.Context, workdir: str | None, model: str | None) -> None:
    """Start a faust stream worker: link, apply rules, publish linked/alerts.

    A store is matched on one model's features: a worker whose model weighs others is
    refused."""
    from streams.worker import run_worker

    run_worker(_settings(ctx, model=model), workdir=workdir)


# --- alerts ------------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON alert per line.")
@click.option("--rule", default=None,
              type=click.Choice(["unregistered_stay", "stale_registration", "watchlist_match"]),
              help="Only this rule.")
@click.option("--status", default=None, type=click.Choice(["raised", "resolved", "withdrawn"]),
              help="Only this status.")
@click.option("--priority", default=None, type=click.Choice(["high", "medium", "low"]),
              help="Only watchlist matches of this priority.")
@click.option("--prefecture", default=None, help="Only this prefecture (4 digits, or a prefix).")
@click.option("--from-beginning", is_flag=True,
              help="Start at the oldest alert (default: only alerts that arrive from now on).")
@click.option("--timeout", default=None, type=float, help="Stop after N idle seconds.")
@_prefix_option
@click.pass_context
def alerts(ctx, as_json: bool, rule: str | None, status: str | None, priority: str | None,
           prefecture: str | None, from_beginning: bool, timeout: float | None,
           prefix: str | None):
    """Tail the alerts topic: a live table on a terminal, else one line (or JSON) per alert.

    De-duplicated by (alert_id, status); in the table the latest status per alert wins. The
    topic and the starting point are named on stderr first.

    \b
    Examples:
      reglink alerts --from-beginning --timeout 5
      reglink alerts --prefix demo143025 --from-beginning --timeout 5 --json
    """
    from reglink.tail import tail_alerts

    tail_alerts(_settings(ctx, prefix), as_json=as_json, rule=rule, status=status,
                priority=priority, prefecture=prefecture, from_beginning=from_beginning,
                idle_timeout=timeout)


def _iso_date(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A ``YYYY-MM-DD`` option, checked."""
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD") from None


@main.command()
@click.argument("replay_out", required=False, type=click.Path(exists=True))
@click.option("--prefecture", default=None, help="Only this prefecture (4 digits, or a prefix).")
@click.option("--from", "date_from", default=None, callback=_iso_date, metavar="DATE",
              help="From this date (YYYY-MM-DD, inclusive).")
@click.option("--to", "date_to", default=None, callback=_iso_date, metavar="DATE",
              help="Up to this date (YYYY-MM-DD, inclusive).")
@click.option("--json", "as_json", is_flag=True, help="One JSON row per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line.")
@_prefix_option
@click.pass_context
def stats(ctx: click.Context, replay_out: str | None, prefecture: str | None,
          date_from: str | None, date_to: str | None, as_json: bool, as_csv: bool,
          prefix: str | None) -> None:
    """Population statistics per prefecture and date (counts only): present, registered,
    present_unregistered, arrivals, departures, stale_open.

    Reads REPLAY_OUT/stats.jsonl (a `reglink replay` output directory, or the file), else
    the stats topic from its start (a progress line on stderr while it reads; --prefix NAME
    reads the run NAME's). Final rows only; a re-issued row replaces the earlier one.

    \b
    Example:
      reglink stats out/ --prefecture 44 --from 2026-03-01 --to 2026-03-07
    """
    from reglink import stats as st

    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    if date_from and date_to and date_from > date_to:
        raise click.BadParameter(f"--from {date_from} is after --to {date_to}")
    rows = (st.read_file(Path(replay_out)) if replay_out is not None
            else st.read_topic(_settings(ctx, prefix)))
    rows = st.wanted(st.latest(rows), prefecture, date_from, date_to)
    if not rows:
        click.echo("no rows" + (" match the filters" if prefecture or date_from or date_to
                                else ""), err=True)
    st.write(rows, "json" if as_json else "csv" if as_csv else "table")


# --- source quality ------------------------------------------------------------------------
@main.command()
@click.option("--source", default=None, type=SourceChoice(), help="Only this source.")
@click.option("--from", "from_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Read a replay's quality.jsonl instead of the quality topic.")
@click.option("--min-records", default=20, show_default=True, type=click.IntRange(min=0),
              help="Rank only organisations with at least this many records (the others "
                   "follow).")
@click.option("--limit", default=30, show_default=True, type=click.IntRange(min=1),
              help="Rows of the table.")
@click.option("--json", "as_json", is_flag=True, help="Every report, worst first, one JSON per "
                                                       "line.")
@click.option("--csv", "as_csv", is_flag=True, help="Every report, worst first, as CSV.")
@click.option("--receipt", "receipt_org", default=None, metavar="ORG_ID",
              help="Print the receipt of one organisation (its own counts and rates only).")
@click.option("--receipts", "receipts_dir", default=None, type=click.Path(file_okay=False),
              help="Write one receipt file per organisation into this directory.")
@_prefix_option
@click.pass_context
def quality(ctx: click.Context, source: str | None, from_file: str | None, min_records: int,
            limit: int, as_json: bool, as_csv: bool, receipt_org: str | None,
            receipts_dir: str | None, prefix: str | None) -> None:
    """Source quality reports: the reporting organisations, worst first.

    Worst: the highest share of received records with any problem (dead-lettered, a quality
    flag, no ID number, reported late, a hotel check-in without a check-out 30 days later),
    among organisations with at least --min-records records. Reads the quality topic (the
    latest report per organisation), or a replay's quality.jsonl with --from.

    \b
    Examples:
      reglink quality --from out/quality.jsonl --source hotel
      reglink quality --from out/quality.jsonl --csv
      reglink quality --from out/quality.jsonl --receipt 4401 --source residence
      reglink quality --from out/quality.jsonl --receipts receipts/
    """
    from reglink import quality as q

    if sum(map(bool, (as_json, as_csv, receipt_org, receipts_dir))) > 1:
        raise click.UsageError("give one of --json, --csv, --receipt, --receipts")
    reports = (q.read_file(Path(from_file)) if from_file
               else q.read_topic(_settings(ctx, prefix)))
    ranked = q.select(reports, source, min_records)
    if receipt_org is not None:
        click.echo(json.dumps(q.receipt(q.find(ranked, receipt_org, source)),
                              ensure_ascii=False, indent=2))
    elif receipts_dir is not None:
        n = q.write_receipts(ranked, Path(receipts_dir))
        click.echo(f"wrote {n} receipts to {receipts_dir}")
    elif as_json:
        for r in ranked:
            click.echo(json.dumps(r, ensure_ascii=False))
    elif as_csv:
        q.write_csv(ranked, sys.stdout)
    elif not ranked:
        click.echo("no quality reports" + (f" for source {source}" if source else ""))
    else:
        from rich.console import Console

        # off a terminal rich would wrap at 80 columns and clip the ids
        Console(width=None if sys.stdout.isatty() else 160).print(
            q.table(ranked, min_records, limit))
        if len(ranked) > limit:
            click.echo(f"{len(ranked) - limit} more; --limit, --json or --csv show them")


# --- review console ----------------------------------------------------------------------
@main.command()
@click.option("--port", default=None, type=int, help="Port (default: settings console_port).")
@_prefix_option
@click.pass_context
def console(ctx: click.Context, port: int | None, prefix: str | None) -> None:
    """Serve the review console on 127.0.0.1: live alert queue, explanations, decisions.

    Users come from REGLINK_CONSOLE_USERS_FILE (see `reglink console-user`).

    \b
    Example:
      reglink console-user ana --role supervisor --users-file users.json
      REGLINK_CONSOLE_USERS_FILE=users.json reglink console --prefix demo143025
    """
    from reglink.console.app import run_console

    run_console(_settings(ctx, prefix), port=port)


@main.command("console-user")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["operator", "supervisor", "auditor"]))
@click.option("--users-file", required=True, type=click.Path(dir_okay=False),
              help="JSON users file to create or update.")
@click.password_option(help="Password (prompted, twice, when not given).")
def console_user(name: str, role: str, users_file: str, password: str) -> None:
    """Add or replace a console user (password stored as an scrypt hash)."""
    from reglink.console.auth import add_user

    add_user(Path(users_file), name, role, password)
    click.echo(f"{name} ({role}) saved in {users_file}")


@main.command()
@click.argument("query")
@click.option("--justification", "-j", default=None,
              help="Why you look this person up (case number and purpose). Required; audited.")
@click.option("--json", "as_json", is_flag=True, help="Print the timeline as JSON.")
@_prefix_option
@click.pass_context
def person(ctx: click.Context, query: str, justification: str | None, as_json: bool,
           prefix: str | None) -> None:
    """Show the audited timeline of one identity: QUERY is a person id (P…) or a name.

    The look-up is written to the audit topic (who, when, what, why, and whether anyone was
    found) before anything is shown. No identity found: "not found" on stderr, exit 1.

    \b
    Example:
      reglink person P0123456789abcdef -j "case 2026-114: verify hotel lead"
    """
    from reglink.person import run_person

    if not run_person(_settings(ctx, prefix), query, justification, as_json=as_json):
        sys.exit(1)


@main.command()
@click.option("--justification", "-j", default=None,
              help="Why you read the dead letters (they hold raw records). Required; audited.")
@click.option("--since", default=None, metavar="WHEN",
              help="Only those dead-lettered since: a duration (30m, 2h, 7d) or an ISO date/time.")
@click.option("--source", default=None, type=SourceChoice(), help="Only this source.")
@click.option("--reason", default=None,
              help="Only this reason code (missing_field) or full reason.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=0),
              help="Rows in the table (the last ones; 0: all). The summary counts all.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: the summary by reason and every dead letter.")
@click.option("--export", "export_dir", default=None, type=click.Path(file_okay=False),
              help="Write the original records per source to DIR/<source>.jsonl (.csv) for "
                   "fixing and `reglink publish`.")
@click.pass_context
def deadletter(ctx: click.Context, justification: str | None, since: str | None,
               source: str | None, reason: str | None, limit: int, as_json: bool,
               export_dir: str | None) -> None:
    """List the dead letters (records reglink could not use) with their reasons and places.

    The use is written to the audit topic (who, when, what, why) before the topic is read.
    """
    from reglink.deadletter import run_deadletter

    run_deadletter(_settings(ctx), justification, since=since, source=source, reason=reason,
                   as_json=as_json, export_dir=export_dir, limit=limit)


# --- docker compose ----------------------------------------------------------------------
@main.command("compose-env")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Env file to write (default: .env next to docker-compose.yml).")
def compose_env(out: str | None) -> None:
    """Write the secrets docker-compose.yml needs (.env, mode 0600; keeps existing values)."""
    from reglink.devstack.compose import ENV_FILE, write_env
    from reglink.devstack.stack import repo_root

    path, added = write_env(Path(out) if out else repo_root() / ENV_FILE)
    click.echo(f"{path}: {len(added)} secret(s) generated"
               + (f" ({', '.join(added)})" if added else ", all present") + "; mode 0600, "
               "never commit it. Then: docker compose up -d --build")


# --- demo --------------------------------------------------------------------------------
@main.command()
@click.option("--persons", default=1500, show_default=True)
@click.option("--days", default=20, show_default=True)
@click.pass_context
def demo(ctx: click.Context, persons: int, days: int) -> None:
    """Stack up, simulate, publish, run a worker and print alerts live.

    The run gets its own topic and Redis prefix (demo<HHMMSS>); at the end the demo prints the
    commands that show its alerts, a person, the console, and how to reset.
    """
    from reglink.devstack.demo import run_demo

    run_demo(_settings(ctx), persons=persons, days=days)


if __name__ == "__main__":  # pragma: no cover
    main()
