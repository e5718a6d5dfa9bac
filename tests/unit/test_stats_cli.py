"""`reglink stats` on a replay's stats.jsonl: filters, the three formats, the last row of a
(prefecture, date) winning, rows that fell to zero left out."""

import csv
import io
import json

from click.testing import CliRunner

from reglink import stats as st
from reglink.cli import main

ZERO = {"present": 0, "registered": 0, "present_unregistered": 0, "arrivals": 0,
        "departures": 0, "stale_open": 0}


def row(pref, day, **counts):
    return {"prefecture": pref, "date": day, **ZERO, **counts}


ROWS = [row("4403", "2026-03-01", present=3), row("4403", "2026-03-02", present=4),
        row("4403", "2026-03-03", present=5, registered=2),
        row("3301", "2026-03-02", registered=1, arrivals=1),
        row("1101", "2026-03-02", present=9)]


def _dir(tmp_path):
    with (tmp_path / "stats.jsonl").open("w") as fh:
        for r in ROWS:
            fh.write(json.dumps(r) + "\n")
    return tmp_path


def test_filters_and_json(tmp_path):
    res = CliRunner().invoke(main, ["stats", str(_dir(tmp_path)), "--prefecture", "44",
                                    "--from", "2026-03-02", "--to", "2026-03-03", "--json"])
    assert res.exit_code == 0, res.output
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert got == ROWS[1:3]


def test_csv_and_table(tmp_path):
    d = _dir(tmp_path)
    res = CliRunner().invoke(main, ["stats", str(d / "stats.jsonl"), "--csv"])
    assert res.exit_code == 0, res.output
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [(r["prefecture"], r["date"]) for r in table] == [
        ("1101", "2026-03-02"), ("3301", "2026-03-02"), ("4403", "2026-03-01"),
        ("4403", "2026-03-02"), ("4403", "2026-03-03")]
    assert table[1]["arrivals"] == "1" and table[4]["registered"] == "2"
    res = CliRunner().invoke(main, ["stats", str(d), "--prefecture", "3301"])
    assert res.exit_code == 0, res.output
    assert "3301" in res.stdout and "2026-03-02" in res.stdout and "4403" not in res.stdout
    assert "(1 rows)" in res.stdout


def test_bad_options_say_what_is_wrong(tmp_path):
    d = str(_dir(tmp_path))
    res = CliRunner().invoke(main, ["stats", d, "--from", "2026-02-30"])
    assert res.exit_code == 2 and "not a date" in res.output
    res = CliRunner().invoke(main, ["stats", d, "--json", "--csv"])
    assert res.exit_code == 2 and "exclude each other" in res.output
    res = CliRunner().invoke(main, ["stats", str(tmp_path / "..")])
    assert res.exit_code == 2 and "stats.jsonl" in res.output


def test_the_last_row_wins_and_zero_rows_are_left_out():
    rows = [row("4403", "2026-03-01", present=3), row("4403", "2026-03-02", present=1),
            row("4403", "2026-03-01", present=2), row("4403", "2026-03-02")]
    assert st.latest(rows) == [row("4403", "2026-03-01", present=2)]
