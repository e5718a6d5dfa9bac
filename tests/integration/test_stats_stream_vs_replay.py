"""Population statistics (docs/contract.md §3.4): on the same input, the stream's compacted
`stats` topic ends with the same final rows as `reglink replay`'s stats.jsonl, with one
partition and with several; `reglink stats` reads them from the topic with a progress line.
Real Kafka, real Redis, a real worker process."""

import io
import json
import subprocess
import sys
import time

import pytest
from streamkit import (
    WorkerProcess,
    free_port,
    publish_simulation,
    read_topic,
    settings_env,
    wait_for_count,
)

from reglink import stats as st
from reglink.replay import run_replay
from reglink.sim.simulate import run_simulate


@pytest.mark.parametrize("partitions", [1, 3])
def test_stream_writes_the_same_final_rows_as_replay(kafka_settings, provision, tmp_path,
                                                     partitions):
    s = kafka_settings.model_copy(update={
        "topic_prefix": f"{kafka_settings.topic_prefix}s{partitions}.",
        "app_id": f"{kafka_settings.app_id}-s{partitions}",
        "source_partitions": partitions, "derived_partitions": partitions,
        "idle_timeout_s": 3.0, "worker_metrics_port": free_port()})
    provision(s)
    sim = tmp_path / "sim"
    run_simulate(persons=700, days=25, start="2026-03-01", seed=11, out_dir=sim)
    replay = run_replay(s, [sim / "events.jsonl"], tmp_path / "replay")
    expected = st.read_file(tmp_path / "replay")
    assert len(expected) > 300, "corpus too small to prove anything"
    for field in ("present", "registered", "present_unregistered", "arrivals", "departures",
                  "stale_open"):
        assert any(r[field] for r in expected), field

    from kafka.admin import ConfigResource, ConfigResourceType

    from reglink.devstack.stack import admin_client

    admin = admin_client(s, 10.0)
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, s.topic("stats"))])
        configs = {k: v["value"] for k, v in described["topic"][s.topic("stats")].items()}
    finally:
        admin.close()
    assert configs.get("cleanup.policy") == "compact", configs

    published, n_linked = publish_simulation(s, sim)
    assert published == replay.read - replay.deadlettered

    worker = WorkerProcess(s, tmp_path).start()
    try:
        wait_for_count(s, "linked", n_linked, timeout=240, worker=worker)
        # Once every source is idle the watermark flushes, as replay's end of input does.
        deadline = time.monotonic() + s.idle_timeout_s + 90
        while True:
            messages = read_topic(s, "stats")
            got = st.latest(messages)
            if got == expected or time.monotonic() > deadline:
                break
            time.sleep(2)
    finally:
        worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.tail()
    missing = [r for r in expected if r not in got]
    extra = [r for r in got if r not in expected]
    assert not missing and not extra, (f"{len(missing)} missing/different, e.g. {missing[:3]}; "
                                       f"{len(extra)} extra, e.g. {extra[:3]}")
    # keyed <prefecture>|<date>: compaction keeps the last row of each
    assert all(set(m) == set(expected[0]) for m in messages)

    # `reglink stats` reads the topic, with a progress line on stderr
    err = io.StringIO()
    assert st.latest(st.read_topic(s, err=err)) == expected
    assert f"reading {s.topic('stats')}: " in err.getvalue()
    assert err.getvalue().rstrip().endswith(f"{len(messages):,} messages, done")
    pref = expected[0]["prefecture"]
    cli = subprocess.run(
        [sys.executable, "-m", "reglink.cli", "stats", "--prefecture", pref, "--json"],
        env=settings_env(s), capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert [json.loads(line) for line in cli.stdout.splitlines()] == [
        r for r in expected if r["prefecture"] == pref]
    assert "messages, done" in cli.stderr
