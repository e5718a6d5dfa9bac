"""The ``reglink`` command line. A thin shell: parse options, build settings once, call in.

Heavy modules (faust, kafka, redis) are imported inside each command, never at import time.
Errors that reglink raises on purpose print as one line with the fix, not a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import ReglinkError
from .settings import Settings, load_settings


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # one clear line for our own errors
        try:
            return super().invoke(ctx)
        except ReglinkError as exc:
            click.secho(f"reglink: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Settings file (JSON or KEY=VALUE lines). Env REGLINK_* overrides it.")
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """reglink: link registry records to persons in real time and raise explainable alerts.

    \b
    Quick start:
      reglink stack up          start local Kafka (KRaft) + Redis (AOF)
      reglink simulate --out data/
      reglink publish --source hotel data/hotel.jsonl
      reglink worker            link records, apply rules, publish alerts
      reglink replay data/*.jsonl --out out/
    """
    ctx.obj = {"config_file": config_file}


def _settings(ctx: click.Context, **overrides) -> Settings:
    return load_settings(ctx.obj.get("config_file"), **overrides)


# --- stack -------------------------------------------------------------------------------
@main.group()
def stack() -> None:
    """Run the local stack without Docker: Apache Kafka 3.9 (KRaft) and Redis (AOF)."""


@stack.command("up")
@click.pass_context
def stack_up(ctx: click.Context) -> None:
    """Fetch Kafka jars (Maven, cached), start Kafka + Redis, create the topics."""
    from . import stack as _stack

    _stack.up(_settings(ctx))


@stack.command("down")
@click.pass_context
def stack_down(ctx: click.Context) -> None:
    """Stop what `stack up` started (by pid)."""
    from . import stack as _stack

    _stack.down(_settings(ctx))


@stack.command("status")
@click.pass_context
def stack_status(ctx: click.Context) -> None:
    """Show whether Kafka and Redis are up and answering."""
    from . import stack as _stack

    sys.exit(_stack.status(_settings(ctx)))


# --- connectors --------------------------------------------------------------------------
@main.command()
@click.option("--source", required=True,
              type=click.Choice(["hotel", "rental", "residence", "job", "watchlist", "person"]))
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "csv"]), default="auto",
              show_default=True)
@click.option("--follow", is_flag=True, help="Keep reading a growing file (like tail -f).")
@click.argument("files", nargs=-1, type=click.Path(allow_dash=True))
@click.pass_context
def publish(ctx: click.Context, source: str, fmt: str, follow: bool, files: tuple[str, ...]):
    """Validate records of one SOURCE and publish them to Kafka; bad ones go to dead-letter.

    FILES are JSON Lines or CSV; none or '-' reads stdin.
    """
    from connectors.publish import run_publish

    summary = run_publish(_settings(ctx), source, list(files) or ["-"], fmt=fmt, follow=follow)
    click.echo(summary.line())
    sys.exit(0 if summary.reconciles() else 1)


# --- simulate ----------------------------------------------------------------------------
@main.command()
@click.option("--persons", default=2000, show_default=True, help="Population size.")
@click.option("--days", default=1, show_default=True, help="Days of events.")
@click.option("--start", default="2026-03-01", show_default=True, help="First day (YYYY-MM-DD).")
@click.option("--seed", default=7, show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def simulate(persons: int, days: int, start: str, seed: int, out_dir: str) -> None:
    """Write a realistic synthetic stream of registry events plus ground truth."""
    from .simulate import run_simulate

    stats = run_simulate(persons=persons, days=days, start=start, seed=seed, out_dir=Path(out_dir))
    click.echo(stats)


# --- replay ------------------------------------------------------------------------------
@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--decisions", "decisions_file", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="Reviewers' decisions (JSON Lines, a dump of the decisions topic), applied "
                   "before the records: dismissed pairs and misused identities stay quiet.")
@click.pass_context
def replay(ctx: click.Context, files: tuple[str, ...], out_dir: str,
           decisions_file: str | None) -> None:
    """Run the worker's linking and rules in one process (no Kafka, no Redis)."""
    from .replay import load_decisions, run_replay

    decisions = load_decisions(Path(decisions_file)) if decisions_file else None
    result = run_replay(_settings(ctx), [Path(f) for f in files], Path(out_dir),
                        progress=sys.stderr.isatty(), decisions=decisions)
    click.echo(result.line())


# --- evaluate ----------------------------------------------------------------------------
@main.command()
@click.argument("sim_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False))
def evaluate(sim_dir: str, out_dir: str) -> None:
    """Score OUT_DIR (links.jsonl, alerts.jsonl) against SIM_DIR's ground truth."""
    import json

    from .evaluate import evaluate as _evaluate

    click.echo(json.dumps(_evaluate(Path(sim_dir), Path(out_dir)), indent=2))


# --- worker ------------------------------------------------------------------------------
@main.command()
@click.option("--workdir", default=None, help="faust data directory (default: state_dir/worker)")
@click.pass_context
def worker(ctx: click.Context, workdir: str | None) -> None:
    """Start a faust stream worker: link, apply rules, publish linked/alerts."""
    from streams.worker import run_worker

    run_worker(_settings(ctx), workdir=workdir)


# --- alerts ------------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON alert per line.")
@click.option("--rule", default=None, help="Only this rule.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest alert.")
@click.option("--timeout", default=None, type=float, help="Stop after N idle seconds.")
@click.pass_context
def alerts(ctx, as_json: bool, rule: str | None, from_beginning: bool, timeout: float | None):
    """Tail the alerts topic (de-duplicated by alert_id and status)."""
    from .tail import tail_alerts

    tail_alerts(_settings(ctx), as_json=as_json, rule=rule, from_beginning=from_beginning,
                idle_timeout=timeout)


# --- demo --------------------------------------------------------------------------------
@main.command()
@click.option("--persons", default=1500, show_default=True)
@click.option("--days", default=20, show_default=True)
@click.pass_context
def demo(ctx: click.Context, persons: int, days: int) -> None:
    """Stack up, simulate, publish, run a worker and print alerts live."""
    from .demo import run_demo

    run_demo(_settings(ctx), persons=persons, days=days)


if __name__ == "__main__":  # pragma: no cover
    main()
