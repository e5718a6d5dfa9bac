"""Redis is not the only record of truth: after the state is lost, `reglink rebuild` restores
it from the Kafka topics, and a worker resumes on it without raising anything new."""

import json
import time
from collections import defaultdict

from streamkit import (
    WorkerProcess,
    final_statuses,
    free_port,
    publish_simulation,
    read_topic,
    wait_for_count,
)

from reglink.rebuild import run_rebuild
from reglink.replay import run_replay
from reglink.sim.simulate import run_simulate


def state(r, prefix):
    """Resolved record links and alert statuses held in Redis under ``prefix``."""
    ptr = {k.decode()[len(prefix) + 2:]: r.get(k).decode()
           for k in r.scan_iter(match=f"{prefix}m:*", count=2000)}

    def resolve(p):
        while p in ptr:
            p = ptr[p]
        return p

    links = {k.decode()[len(prefix) + 2:]: resolve(r.get(k).decode())
             for k in r.scan_iter(match=f"{prefix}l:*", count=2000)}
    alerts = {k.decode()[len(prefix) + 2:]: json.loads(r.get(k))["status"]
              for k in r.scan_iter(match=f"{prefix}a:*", count=2000)}
    return links, alerts


def test_rebuild_restores_identities_and_alert_state(kafka_settings, redis_client, tmp_path):
    s = kafka_settings.model_copy(update={"idle_timeout_s": 3.0,
                                          "worker_metrics_port": free_port()})
    sim = tmp_path / "sim"
    run_simulate(persons=700, days=25, start="2026-03-01", seed=11, out_dir=sim)
    run_replay(s, [sim / "events.jsonl"], tmp_path / "replay")
    expected = final_statuses([json.loads(x) for x in (tmp_path / "replay" / "alerts.jsonl")
                               .open(encoding="utf-8")])
    _published, n_linked = publish_simulation(s, sim)

    def run_worker_until_settled():
        worker = WorkerProcess(s, tmp_path).start()
        try:
            wait_for_count(s, "linked", n_linked, timeout=240, worker=worker)
            deadline = time.monotonic() + 60
            while final_statuses(read_topic(s, "alerts")) != expected and \
                    time.monotonic() < deadline:
                time.sleep(2)
        finally:
            worker.stop()

    run_worker_until_settled()
    links, alerts = state(redis_client, s.redis_prefix)
    assert len(links) == n_linked and alerts and set(alerts.values()) >= {"raised"}

    # Lose the state, then rebuild it from Kafka.
    keys = list(redis_client.scan_iter(match=f"{s.redis_prefix}*", count=2000))
    redis_client.delete(*keys)
    result = run_rebuild(s)
    n_watch = sum(1 for _ in (sim / "watchlist.jsonl").open())
    assert result.processed == n_linked + n_watch and result.deadlettered == 0, result.line()
    links2, alerts2 = state(redis_client, s.redis_prefix)
    assert links2 == links  # same identities, same person ids
    # Alerts the worker raised on its final idle flush are due again in the rebuilt state;
    # every alert the rebuild knows has the status the worker gave it.
    assert alerts2 and all(alerts[a] == st for a, st in alerts2.items())

    # A worker resumes on the rebuilt state: nothing new, nothing different.
    run_worker_until_settled()
    links3, alerts3 = state(redis_client, s.redis_prefix)
    assert links3 == links and alerts3 == alerts
    messages = read_topic(s, "alerts")
    assert final_statuses(messages) == expected
    by = defaultdict(set)
    for a in messages:  # repeats are exact repeats
        by[(a["alert_id"], a["status"])].add(json.dumps(a, sort_keys=True))
    assert all(len(v) == 1 for v in by.values())
