"""Stream benchmarks through the real stack (Kafka 9092, the worker, Redis 6379).

* throughput: the worker(s) start and the consumer group becomes stable, then the corpus is
  published at full speed (valid records, acks=all); sustained rate = the ``linked``
  records after the last record was published / (last ``linked`` timestamp - end of
  publishing): the processes alone on the backlog. The outputs are read only once they are
  all there (the wait asks for end offsets): a reader as they come, or the publisher, took
  CPU from the processes measured, and more from the faster bare forwarder (the rate from first to
  last output, publishing included, is kept as ``first_to_last_per_s``). ``machine_busy``:
  share of all cores busy in that window.
  Baseline in the same run: ``benchmarks.bare_forwarder`` (a faust agent that only forwards).
* latency: the worker runs first; records are published at a fixed rate; publish -> linked is
  the ``linked`` message's timestamp minus the source message's (both CreateTime, same host
  clock); publish -> alert for ``watchlist_match`` alerts (their trigger record is in the
  evidence; ``unregistered_stay`` alerts fire on the event-time watermark, not on one record).
* scaling: N workers on ``source_partitions=8``; throughput and pairwise F1 (person ids after
  all merges, resolved in Redis) against the single-worker run and replay.

Every run gets its own topic prefix, consumer group and Redis prefix; all are deleted after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from benchmarks.common import CACHE, ROOT, only_plugins, pct


def _settings(tag: str, partitions: int):
    from reglink.core.settings import Settings
    from tests.streamkit import free_port

    rid = f"{tag}-{uuid.uuid4().hex[:6]}"
    base = Settings()  # the stack's: in scram mode Redis users are confined to its prefix
    return Settings(topic_prefix=f"bench.{rid}.", app_id=f"bench-{rid}",
                    redis_prefix=f"{base.redis_prefix}bench:{rid}:", source_partitions=partitions,
                    derived_partitions=partitions, idle_timeout_s=3.0,
                    worker_metrics_port=free_port())


def _records(sim: Path):
    from reglink.core.contract import encode_record, parse_record, record_key
    from reglink.replay import _source_of
    out = []
    with (sim / "events.jsonl").open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            raw = raw.rstrip(b"\n")
            rec, dl = parse_record(raw, _source_of(raw, None), {"line": n})
            if dl is None:
                out.append((rec["source"], record_key(rec).encode(), encode_record(rec)))
    return out


def _producer(s, source: str):
    """A producer as the source's connector principal (scram mode), like `reglink publish`."""
    from kafka import KafkaProducer

    from reglink.kafka_auth import kafka_python_kwargs
    return KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=2,
                         max_in_flight_requests_per_connection=5,
                         **kafka_python_kwargs(s, f"connector-{source}"))


class _Producers(dict):
    def __init__(self, s) -> None:
        super().__init__()
        self.s = s

    def __missing__(self, source: str):
        self[source] = _producer(self.s, source)
        return self[source]

    def send(self, topic: str, key: bytes, value: bytes, source: str) -> None:
        self[source].send(topic, key=key, value=value)

    def flush(self) -> None:
        for p in self.values():
            p.flush()

    def close(self) -> None:
        for p in self.values():
            p.close()


def publish(s, recs, rate: float | None = None) -> float:
    from reglink.core.topics import SOURCES
    prod = _Producers(s)
    for source in SOURCES:  # connect before the clock starts
        prod[source]
    t0 = time.perf_counter()
    for i, (source, key, value) in enumerate(recs):
        if rate:
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        prod.send(s.topic(f"{source}.raw"), key, value, source)
    prod.flush()
    prod.close()
    return time.perf_counter() - t0


def read_all(s, name: str, idle_ms: int = 2500):
    from kafka import KafkaConsumer

    from reglink.kafka_auth import kafka_python_kwargs
    # CRCs unchecked: kafka-python checks them in Python, slowly; a loopback read of the
    # benchmark's own topics
    c = KafkaConsumer(s.topic(name), bootstrap_servers=s.kafka_bootstrap,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=idle_ms, check_crcs=False,
                      **kafka_python_kwargs(s, "console"))
    try:
        return [m for m in c]
    finally:
        c.close()


def _raw_times(s) -> dict[str, int]:
    from kafka import KafkaConsumer

    from reglink.core.topics import SOURCES
    from reglink.kafka_auth import kafka_python_kwargs
    c = KafkaConsumer(*[s.topic(f"{x}.raw") for x in SOURCES],
                      bootstrap_servers=s.kafka_bootstrap, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=2500,
                      **kafka_python_kwargs(s, "console"))
    try:
        return {m.key.decode(): m.timestamp for m in c}
    finally:
        c.close()


def _start(s, workdir: Path, bare: bool = False, port: int = 0,
           src: Path = ROOT) -> subprocess.Popen:
    """A worker (or the bare forwarder) of the code at ``src`` (default: this tree; a base
    revision's checkout for a same-run before/after, see ``benchmarks.stream_ab``)."""
    env = {**os.environ, **s.to_env(), "PYTHONPATH": str(src),
           # the stack's state (credentials, CA) even when the worker runs in another checkout
           "REGLINK_STATE_DIR": str(Path(s.state_dir).resolve())}
    log = (workdir / f"{s.app_id}-{time.time_ns()}.log").open("wb")
    argv = [sys.executable, "-m", "benchmarks.bare_forwarder"] if bare else \
        [sys.executable, "-m", "reglink.cli", "worker", "--workdir",
         str(workdir / f"faust-{time.time_ns()}")]
    only = os.environ.get("BENCH_PLUGINS")
    if only and not bare and src == ROOT:  # this tree with only these pipeline plug-ins
        argv[1:3] = ["-c", "import sys; " + only_plugins(only.split(",")) +
                     "from reglink.cli import main; sys.argv = ['reglink', *sys.argv[1:]]; main()"]
    if not bare:
        env["REGLINK_WORKER_METRICS_PORT"] = str(port)
        if os.environ.get("BENCH_PYSPY"):  # profile the worker: raw stacks next to its log
            # BENCH_PYSPY_ARGS: more py-spy options, e.g. "--idle --threads"
            argv = [str(Path(sys.executable).parent / "py-spy"), "record", "-r", "100", "-f",
                    "raw", *os.environ.get("BENCH_PYSPY_ARGS", "").split(),
                    "-o", os.environ["BENCH_PYSPY"], "--", *argv]
    # Own process group: stopping it reaches the worker under py-spy too (py-spy alone would
    # exit and leave its child running).
    return subprocess.Popen(argv, env=env, cwd=src, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _signal(p: subprocess.Popen, sig) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def _stop(procs) -> None:
    import signal

    # SIGINT: py-spy writes its profile and stops; the worker stops cleanly on either signal
    sig = signal.SIGINT if os.environ.get("BENCH_PYSPY") else signal.SIGTERM
    for p in procs:
        if p.poll() is None:
            _signal(p, sig)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL)
            p.wait(5)
        _signal(p, signal.SIGKILL)  # anything left in its group (the worker under py-spy)


def _await_outputs(s, want: int, deadline: float, procs) -> bool:
    """True once the ``linked`` topic holds ``want`` messages, False at ``deadline`` (a
    ``time.monotonic()``). Asks for its end offsets every 0.25 s and reads nothing: a consumer
    that read the records as they came would take its share of the 2 cores from the
    processes measured (kafka-python's fetch path is Python)."""
    from kafka import KafkaConsumer, TopicPartition

    from reglink.kafka_auth import kafka_python_kwargs
    topic = s.topic("linked")
    c = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False,
                      **kafka_python_kwargs(s, "console"))
    tps: list = []
    try:
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker died: see " + str(CACHE / "stream"))
            if not tps:
                tps = [TopicPartition(topic, p)
                       for p in sorted(c.partitions_for_topic(topic) or ())]
            if tps and sum(c.end_offsets(tps).values()) >= want:
                return True
            time.sleep(0.25)
        return False
    finally:
        c.close()


def _wait_linked(s, want: int, timeout: float, procs) -> list:
    """The ``linked`` topic once it holds ``want`` distinct records (all of it at the
    timeout), read only then (:func:`_await_outputs`)."""
    deadline = time.monotonic() + timeout
    while _await_outputs(s, want, deadline, procs):
        got = read_all(s, "linked", idle_ms=1000)
        if len({m.key + b"|" + m.value[:80] for m in got}) >= want:
            return got
        time.sleep(0.25)  # re-runs counted twice in the offsets: more to come
    return read_all(s, "linked", idle_ms=1000)


def _metric(port: int, name: str) -> float | None:
    import urllib.request
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.decode().splitlines()
               if line.startswith(name))


STAGES = {"intake": "reglink_worker_intake_seconds", "hold": "reglink_worker_hold_seconds",
          "unit": "reglink_worker_unit_seconds",
          "publish_to_outputs": "reglink_publish_to_linked_seconds",
          "unit_records": "reglink_worker_batch_records"}


def _stages(ports: list[int]) -> dict:
    """Where publish -> linked goes, from the workers' own histograms (summed over workers):
    per stage the mean and the bucket bound under which 99 % of records fall, in ms.
    intake + hold + unit = publish_to_outputs (the outputs then wait for the producer).
    ``unit_records``: records per unit of work (per unit, not per record)."""
    import urllib.request
    buckets: dict[str, dict[float, float]] = {k: {} for k in STAGES}
    sums: dict[str, float] = dict.fromkeys(STAGES, 0.0)
    for port in ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        for line in text.decode().splitlines():
            for stage, name in STAGES.items():
                if line.startswith(f"{name}_bucket{{"):
                    le = line.split('le="', 1)[1].split('"', 1)[0]
                    b = buckets[stage]
                    b[float(le)] = b.get(float(le), 0.0) + float(line.rsplit(" ", 1)[1])
                elif line.startswith(f"{name}_sum "):
                    sums[stage] += float(line.rsplit(" ", 1)[1])
    out = {}
    for stage, b in buckets.items():
        n = b.get(float("inf"), 0.0)
        if not n:
            continue
        p99 = next(le for le in sorted(b) if b[le] >= 0.99 * n)
        scale = 1 if stage == "unit_records" else 1000  # records per unit, not seconds
        out[stage] = {"mean": round(scale * sums[stage] / n, 1),
                      "p99_at_most": None if p99 == float("inf") else round(scale * p99, 1),
                      "n": int(n)}
    return out


def _cpu_s(proc: subprocess.Popen) -> float:
    """CPU seconds (user + system) a child has used so far (Linux /proc), 0 if unknown."""
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _group_stable(s, members: int, timeout: float = 120) -> float:
    """Wait until the consumer group has ``members`` members, Stable, all holding partitions."""
    from reglink.devstack.stack import admin_client
    admin = admin_client(s)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            try:
                g = admin.describe_groups([s.app_id])[s.app_id]
                if g.get("group_state") == "Stable" and len(g.get("members", ())) == members:
                    return time.monotonic() - t0
            except Exception:  # noqa: BLE001 - group not there yet
                pass
            time.sleep(0.5)
    finally:
        admin.close()
    return time.monotonic() - t0


def _cleanup(s) -> None:
    from reglink import kafka_auth
    from reglink.devstack.stack import admin_client
    try:
        client = admin_client(s, 5.0)
        mine = [t for t in client.list_topics()
                if t.startswith(s.topic_prefix) or t.startswith(f"{s.app_id}-")]
        if mine:
            client.delete_topics(mine, timeout_ms=10_000)
        if kafka_auth.secure(s):
            kafka_auth.remove_acls(s, client)
        client.close()
    except Exception:  # noqa: BLE001
        pass
    r = kafka_auth.connect_redis(s, "admin")
    pipe = r.pipeline(transaction=False)
    for k in r.scan_iter(match=f"{s.redis_prefix}*", count=5000):
        pipe.unlink(k)
    pipe.execute()


def _redis_usage(s) -> tuple[float, dict[str, int]] | None:
    """The Redis server's CPU seconds so far (user + system, ``INFO cpu``) and its calls per
    command (``INFO commandstats``); None if unread."""
    from reglink import kafka_auth
    try:
        r = kafka_auth.connect_redis(s, "admin")
        try:
            cpu, stats = r.info("cpu"), r.info("commandstats")
        finally:
            r.close()
        calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls
    except Exception:  # noqa: BLE001 - a figure beside the measurement, never its failure
        return None


def _redis_delta(before, after, n: int) -> dict:
    """Redis CPU ms and calls per record between two :func:`_redis_usage` readings."""
    if before is None or after is None:
        return {"redis_cpu_ms_per_record": None, "redis_calls_per_record": None}
    calls = {k: v - before[1].get(k, 0) for k, v in after[1].items()}
    calls = {k: round(v / max(1, n), 2) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
             if v > 0}
    return {"redis_cpu_ms_per_record": round(1000 * (after[0] - before[0]) / max(1, n), 3),
            "redis_calls_per_record": calls}


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all cores, from the first line of /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        vals = [int(x) for x in fh.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already inside user
    return total - idle, total


class _Sampler(threading.Thread):
    """(wall ms, busy, total) every ``period`` seconds until stopped."""

    def __init__(self, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.samples: list[tuple[float, int, int]] = []
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.samples.append((time.time() * 1000, *_cpu_ticks()))
            self._stop_evt.wait(self.period)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join()
        self.samples.append((time.time() * 1000, *_cpu_ticks()))

    def busy_between(self, t0_ms: float, t1_ms: float) -> float | None:
        """Share of all cores busy between the samples that enclose [t0, t1]."""
        s = self.samples
        before = [x for x in s if x[0] <= t0_ms]
        after = [x for x in s if x[0] >= t1_ms]
        if not before or not after:
            return None
        a, b = before[-1], after[0]
        return (b[1] - a[1]) / (b[2] - a[2]) if b[2] > a[2] else None


def _rate(msgs) -> float:
    ts = sorted(m.timestamp for m in msgs)
    span = (ts[-1] - ts[0]) / 1000 if len(ts) > 1 else 0
    return len(ts) / span if span else 0.0


def _f1(s, sim: Path, linked) -> float:
    from reglink.evaluate import pairwise
    from reglink.kafka_auth import connect_redis
    from reglink.stores.identity import KVIdentityStore
    from reglink.stores.kv import RedisKV
    store = KVIdentityStore(RedisKV(connect_redis(s, "worker"), s.redis_prefix))
    pred = {}
    for m in linked:
        v = json.loads(m.value)
        pred[v["record_id"]] = v["person_id"]
    cache: dict[str, str] = {}
    for k, p in pred.items():
        if p not in cache:
            cache[p] = store.resolve(p)
        pred[k] = cache[p]
    truth = {}
    for line in (sim / "truth.jsonl").open():
        r = json.loads(line)
        if r.get("record_id") in pred:
            truth[r["record_id"]] = r["person"]
    return pairwise(pred, truth)["f1"]


def throughput(sim: Path, recs, workers: int = 1, partitions: int = 1, bare: bool = False,
               timeout: float = 600, src: Path = ROOT) -> dict:
    from reglink.devstack.stack import create_topics_and_acls as create_topics
    s = _settings(f"{'bare' if bare else 'w'}{workers}p{partitions}", partitions)
    workdir = CACHE / "stream"
    workdir.mkdir(parents=True, exist_ok=True)
    create_topics(s)
    procs = []
    sampler = _Sampler()
    try:
        # Workers first, until the group is stable (no rebalance inside the measurement);
        # then the whole corpus at full speed: they work through it as a backlog.
        from tests.streamkit import free_port
        ports = [free_port() for _ in range(workers)]
        procs = [_start(s, workdir, bare, port, src) for port in ports]
        settle = _group_stable(s, workers)
        cpu0 = sum(_cpu_s(p) for p in procs)
        redis0 = _redis_usage(s)
        sampler.start()
        pub_s = publish(s, recs)
        t_pub = time.time() * 1000
        n_link = sum(1 for r in recs if r[0] != "watchlist") if not bare else len(recs)
        if not _await_outputs(s, n_link, time.monotonic() + timeout, procs):
            raise TimeoutError(f"fewer than {n_link} outputs after {timeout:.0f} s")
        cpu = sum(_cpu_s(p) for p in procs) - cpu0  # up to the last output (+ <= 0.25 s)
        redis1 = _redis_usage(s)
        sampler.stop()
        linked = _wait_linked(s, n_link, 60, procs)
        after = sorted(m.timestamp for m in linked if m.timestamp >= t_pub)
        span = (after[-1] - t_pub) / 1000 if after else 0.0
        busy = sampler.busy_between(t_pub, after[-1]) if after else None
        row = {"workers": workers, "partitions": partitions, "bare": bare,
               "records": len(recs), "linked": len(linked),
               "publish_records_per_s": round(len(recs) / pub_s),
               # outputs after the last record was published / the time they took: the
               # processes alone on the backlog (no publisher, no rebalance, no reader)
               "sustained_per_s": round(len(after) / span) if span else None,
               "after_publish": {"outputs": len(after), "window_s": round(span, 2)},
               # first to last output, publishing included (the publisher shares the window)
               "first_to_last_per_s": round(_rate(linked)),
               "group_settle_s": round(settle, 1),
               # CPU of the worker processes while they worked through the corpus, per
               # record: less noisy than wall rates on a shared machine
               "cpu_ms_per_record": round(1000 * cpu / max(1, len(linked)), 3),
               # the Redis server's CPU and calls over the same span (the broker's not read)
               **_redis_delta(redis0, redis1, len(linked)),
               # share of all cores busy after publishing (every process: broker, Redis...)
               "machine_busy": round(busy, 3) if busy is not None else None,
               "load_avg": [round(x, 2) for x in os.getloadavg()]}
        if not bare:
            row["commit_conflicts"] = sum(_metric(p, "reglink_commit_conflicts_total") or 0
                                          for p in ports)
            row["conflict_reruns"] = sum(_metric(p, "reglink_conflict_reruns_total") or 0
                                         for p in ports)
            # records per unit of work (micro-batch) and source records per broker fetch
            # (streams/intake.py), over all workers
            for key, hist in (("mean_batch_records", "reglink_worker_batch_records"),
                              ("mean_fetch_records", "reglink_worker_fetch_records")):
                n = sum(_metric(p, f"{hist}_count") or 0 for p in ports)
                if n:
                    row[key] = round(sum(_metric(p, f"{hist}_sum") or 0 for p in ports) / n, 1)
            _stop(procs)
            row["links_f1"] = round(_f1(s, sim, linked), 5)
        return row
    finally:
        if sampler.is_alive():
            sampler.stop()
        _stop(procs)
        _cleanup(s)


def latency(sim: Path, recs, rate: float, settle: float = 12.0, workers: int = 1,
            partitions: int = 1, bare: bool = False, src: Path = ROOT) -> dict:
    """Publish at ``rate`` records/s to ``workers`` workers (``partitions`` per source topic)
    that run first; publish -> linked and -> watchlist alert latencies. ``bare``: the bare
    forwarder instead (the ceiling: publish -> forwarded, through faust alone)."""
    from reglink.devstack.stack import create_topics_and_acls as create_topics
    s = _settings(f"{'blat' if bare else 'lat'}{int(rate)}w{workers}p{partitions}", partitions)
    workdir = CACHE / "stream"
    workdir.mkdir(parents=True, exist_ok=True)
    create_topics(s)
    procs = []
    try:
        from tests.streamkit import free_port
        ports = [0 if bare else free_port() for _ in range(workers)]
        procs = [_start(s, workdir, bare, port=port, src=src) for port in ports]
        if workers > 1:
            _group_stable(s, workers)
        # warm-up: one record, wait until the worker links it (group joined, caches warm)
        warm, rest = recs[:1], recs[1:]
        publish(s, warm)
        _wait_linked(s, 1, 120, procs)
        pub_s = publish(s, rest, rate)
        n_link = len(recs) if bare else sum(1 for r in recs if r[0] != "watchlist")
        linked = _wait_linked(s, n_link, 300, procs)
        if not bare:
            time.sleep(settle)
        stages = None if bare else _stages(ports)
        alerts = read_all(s, "alerts")
        raw = _raw_times(s)
        lat, by_time = [], []
        for m in linked:
            v = json.loads(m.value)
            t = raw.get(f"{v['source']}:{v.get('record_id') or v.get('watch_id')}")
            if t is not None and m.key is not None:
                lat.append(m.timestamp - t)
                by_time.append((t, m.timestamp - t))
        by_time.sort()
        t_first = by_time[0][0] if by_time else 0
        steady = [x for t, x in by_time if t - t_first >= 10_000]  # after the first 10 s
        alat = []
        for m in alerts:
            v = json.loads(m.value)
            if v.get("rule") == "watchlist_match" and v.get("status") == "raised":
                ts = [raw[e] for e in v["evidence"] if e in raw]
                if ts:
                    alat.append(m.timestamp - max(ts))
        lat = lat[1:]
        return {"rate_target": rate, "rate_achieved": round(len(rest) / pub_s),
                "workers": workers, "partitions": partitions, "bare": bare,
                "records": len(recs),
                "publish_to_linked_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99),
                                         "max": max(lat) if lat else None, "n": len(lat)},
                "publish_to_linked_after_10s_ms": {"p50": pct(steady, 50),
                                                   "p99": pct(steady, 99),
                                                   "max": max(steady) if steady else None,
                                                   "n": len(steady)},
                "publish_to_watchlist_alert_ms": {"p50": pct(alat, 50), "p99": pct(alat, 99),
                                                  "max": max(alat) if alat else None,
                                                  "n": len(alat)},
                "alerts_total": len(alerts),
                **({"worker_stages_ms": stages} if stages else {})}
    finally:
        _stop(procs)
        _cleanup(s)


def run(records: int = 20000, latency_records: int = 15000, rates=(1000, 3000),
        workers=(1, 2), latency_workers: int = 0) -> dict:
    from benchmarks.common import corpus
    sim = corpus(records)
    recs = _records(sim)
    out: dict = {"corpus": str(sim), "records": len(recs)}
    out["bare_1p"] = throughput(sim, recs, bare=True)
    print(out["bare_1p"], flush=True)
    out["worker_1p"] = throughput(sim, recs)
    print(out["worker_1p"], flush=True)
    out["worker_vs_bare"] = round(out["worker_1p"]["sustained_per_s"] /
                                  max(1, out["bare_1p"]["sustained_per_s"]), 4)
    lat_sim = corpus(latency_records)
    lat_recs = _records(lat_sim)
    out["latency"] = []
    for r in rates:
        # the ceiling at this rate first: the bare forwarder on the same stack
        row = latency(lat_sim, lat_recs, r, bare=True)
        print(row, flush=True)
        out["latency"].append(row)
        row = latency(lat_sim, lat_recs, r)
        print(row, flush=True)
        out["latency"].append(row)
        if latency_workers > 1:  # the same rate, several workers on 8 partitions
            row = latency(lat_sim, lat_recs, r, workers=latency_workers, partitions=8)
            print(row, flush=True)
            out["latency"].append(row)
    out["scaling"] = []
    for w in workers:
        row = throughput(sim, recs, workers=w, partitions=8)
        print(row, flush=True)
        out["scaling"].append(row)
    return out
