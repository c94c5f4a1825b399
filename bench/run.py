"""ccx-licensing benchmarks, each next to its raw-Kafka baseline in the same run, on the same broker.

    python bench/run.py [--quick] [--json FILE] [--profile] [--only B1,B2]

B0  a plain aiokafka consumer reads the pre-produced B1 topic and only decodes the bytes (json.loads)
B1  the consumption computer on pre-produced sign-in/sign-out/roster events (100 instances x 400 agents):
    events/s from its first commit to the last one in PostgreSQL, CPU us/event, peak RSS, ratio to B0
B2  end-to-end latency, open loop at 1,000 events/s: producing a sign-in that crosses an entitlement ->
    licensing.alert.raised on the topic; baseline: a raw produce -> consume round trip at the same rate
B3  replay: the three services rebuild their state from the start of the topics (simulator traffic); events/s,
    ratio to B0, and whether the results equal the live run's
B4  state size: bytes per live session in PostgreSQL and in process memory; bytes per interval report
B5  the what-if's replay in this process (`ccxlic whatif`): one 400-agent instance's simulated weeks, as records,
    decoded, merged and run through the chain's three deciders, with no broker or database; inputs/s, ratio to B0,
    and what a year of that instance would take

Input data is seeded. Figures are printed as one table and written as JSON. No assertion is made on speed;
`--quick` sizes everything for a smoke run (tests/e2e/test_bench_quick.py checks that it runs and is correct).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from ccxlic_cli.scenario import Agents, Entitlements, Instance, Scenario
from ccxlic_cli.simulator import generate
from ccxlic_consumption.app import INPUTS as CONSUMPTION_INPUTS
from ccxlic_consumption.machine import InstanceState, Rules, apply
from ccxlic_contract import TOPICS, decode_message, encode, key_for, topic_for
from ccxlic_contract.codec import Event
from ccxlic_contract.events import (
    AgentRoster,
    AgentRosterData,
    AgentSignedIn,
    AgentSignedInData,
    AgentSignedOut,
    AgentSignedOutData,
    AlertRaised,
    Capability,
    ClockTicked,
    EntitlementsSet,
    EntitlementsSetData,
    InstanceRegistered,
    InstanceRegisteredData,
    RosterAgent,
)
from ccxlic_runtime.kafka import Broker, delete_topics, ensure_topics, topic_name, wait_for_kafka
from ccxlic_runtime.policy import Decoder, Delivery
from ccxlic_runtime.settings import RuntimeSettings, load_settings
from ccxlic_whatif.replay import ChainRules, merged, replay

ROOT = Path(__file__).resolve().parents[1]
BROKER = Broker.of(load_settings(RuntimeSettings))  # KAFKA_BOOTSTRAP_SERVERS and the KAFKA_SECURITY_* of the README
KAFKA = BROKER.options()
# the superuser (it makes and drops the schemas of each run): what `make up` wrote to .stack/pg.env, else DATABASE_URL
DSN = os.environ.get("CCXLIC_PG_SUPERUSER_URL") or os.environ.get(
    "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ccxlic"
)
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
CAPS: tuple[tuple[Capability, ...], ...] = (
    ("inbound_voice",),
    ("inbound_voice", "chat"),
    ("email",),
    ("outbound_predictive",),
    ("inbound_voice",),
)
HEADERS = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
PARTITIONS = 3  # of every topic keyed by instance (the runtime's default, CCXLIC_PARTITIONS)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- plumbing


@dataclass
class Run:
    quick: bool
    prefix: str
    results: dict[str, Any] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"


async def produce(events: list[Event], prefix: str, *, label: str, keyless: bool = False) -> float:
    """Produce pre-encoded events as fast as the broker takes them; return events/s. `keyless`: with no key, on any
    partition (a publisher that sends none: the consumption computer reroutes each through licensing.intake)."""
    producer = AIOKafkaProducer(**KAFKA, acks=1, linger_ms=20, max_batch_size=512 * 1024, compression_type=None)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for i, e in enumerate(events):
            pending += await send(producer, prefix, e, keyless=keyless)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            if i and i % 200_000 == 0:
                log(f"{label}: produced {i:,}/{len(events):,}")
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    rate = len(events) / (time.perf_counter() - started)
    log(f"{label}: produced {len(events):,} events at {rate:,.0f}/s")
    return rate


async def send(producer: AIOKafkaProducer, prefix: str, e: Event, *, keyless: bool = False) -> list[Any]:
    """Send one event as the runtime's producer does (a tick for every instance goes to every partition of the clock
    topic), or with no key; return the send futures."""
    topic = topic_name(topic_for(e.type), prefix)
    partitions: list[int | None] = [None]
    if isinstance(e, ClockTicked) and e.subject == "*":
        partitions = sorted(await producer.partitions_for(topic))
    key = None if keyless and e.subject != "*" else key_for(e)
    return [await producer.send(topic, encode(e), key=key, partition=p, headers=HEADERS) for p in partitions]


def start_service(run: Run, service: str, schema: str, group: str, port: int, **extra: str) -> subprocess.Popen[bytes]:
    env = {
        # the benchmark makes, reads and drops each run's schemas as the superuser: its services use DSN too
        **{k: v for k, v in os.environ.items() if not (k.startswith("CCXLIC_") and k.endswith("_DATABASE_URL"))},
        "DATABASE_URL": DSN,
        "CCXLIC_TOPIC_PREFIX": run.prefix,
        f"CCXLIC_{service.upper()}_SCHEMA": schema,
        f"CCXLIC_{service.upper()}_GROUP": group,
        f"CCXLIC_{service.upper()}_HTTP_PORT": str(port),
        "CCXLIC_LOG_LEVEL": "WARNING",
        "CCXLIC_MAX_EVENT_SKEW": "off",  # simulated time
        **extra,
    }
    proc = subprocess.Popen([sys.executable, "-m", f"ccxlic_{service}"], env=env, stderr=subprocess.DEVNULL)
    run.procs.append(proc)
    run.schemas.append(schema)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


async def count(conn: asyncpg.Connection, schema: str, table: str = "processed_events") -> int:
    """Rows of the table; of processed_events, the inputs handled (a reroute's own claim is not one)."""
    where = " where event_key not like 'reroute:%'" if table == "processed_events" else ""
    try:
        return int(await conn.fetchval(f'select count(*) from "{schema}".{table}{where}'))
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return 0


async def ready(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.3)
    raise TimeoutError(f"service on port {port} not ready in {timeout} s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# ---------------------------------------------------------------- B1 input


def b1_events(total: int, instances: int, agents: int, seed: int = 42) -> list[Event]:
    """Sign-ins, sign-outs and a roster every 500 events per instance; instances interleaved, time in order."""
    rnd = random.Random(seed)
    per = total // instances
    signed: list[dict[str, tuple[Capability, ...]]] = [{} for _ in range(instances)]
    out: list[Event] = []
    n = 0
    for k in range(per):
        t = T0 + timedelta(seconds=k)
        for i in range(instances):
            inst = f"b1-{i:03d}"
            n += 1
            eid = f"b1-{n}"
            if k % 500 == 499:
                roster = tuple(RosterAgent(agent_id=a, capabilities=c) for a, c in sorted(signed[i].items()))
                out.append(
                    AgentRoster(id=eid, source="urn:bench", time=t, subject=inst, data=AgentRosterData(agents=roster))
                )
                continue
            agent = f"a{rnd.randrange(agents):03d}"
            if agent in signed[i] and rnd.random() < 0.5:
                del signed[i][agent]
                out.append(
                    AgentSignedOut(
                        id=eid, source="urn:bench", time=t, subject=inst, data=AgentSignedOutData(agent_id=agent)
                    )
                )
            else:
                caps = CAPS[rnd.randrange(len(CAPS))]
                signed[i][agent] = caps
                out.append(
                    AgentSignedIn(
                        id=eid,
                        source="urn:bench",
                        time=t,
                        subject=inst,
                        data=AgentSignedInData(agent_id=agent, capabilities=caps),
                    )
                )
    return out


# ---------------------------------------------------------------- B0 and B1


async def b0(run: Run, topic: str, expected: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        topic,
        **KAFKA,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    got = 0
    first: float | None = None
    try:
        while got < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10000)
            for records in batches.values():
                if first is None:
                    first = time.perf_counter()
                for rec in records:
                    json.loads(rec.value)
                    got += 1
        elapsed = time.perf_counter() - (first or time.perf_counter())
    finally:
        await consumer.stop()
    rate = got / elapsed
    log(f"B0: {got:,} messages decoded at {rate:,.0f}/s")
    return {"messages": got, "seconds": round(elapsed, 2), "messages_per_s": round(rate)}


async def b1(run: Run, events: list[Event], profile: bool) -> dict[str, Any]:
    schema = f"{run.prefix.rstrip('.').replace('.', '_')}"
    port = free_port()
    proc = start_service(run, "consumption", schema, f"{run.prefix}b1", port, CCXLIC_BATCH_SIZE="1000")
    ps = psutil.Process(proc.pid)
    conn = await asyncpg.connect(DSN)
    spy: subprocess.Popen[bytes] | None = None
    profile_path = ROOT / "bench" / "profile-b1.txt"
    try:
        first_t: float | None = None
        cpu0 = None
        others0: dict[str, float] = {}
        rss: list[tuple[int, int]] = []  # (events handled, RSS) through the run
        done = 0
        last_report = time.monotonic()
        while done < len(events):
            await asyncio.sleep(0.25)
            done = await count(conn, schema)
            with contextlib.suppress(psutil.Error):
                rss.append((done, ps.memory_info().rss))
            if done and first_t is None:
                first_t, cpu0, others0 = time.perf_counter(), ps.cpu_times(), stack_cpu()
                spy_bin = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
                if profile and spy_bin:
                    spy = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
                        [
                            spy_bin,
                            "record",
                            "--format",
                            "raw",
                            "-o",
                            str(profile_path),
                            "-p",
                            str(proc.pid),
                            "--rate",
                            "50",
                            "--nonblocking",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
            if proc.poll() is not None:
                raise RuntimeError(f"the consumption computer exited with {proc.returncode}")
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                log(f"B1: {done:,}/{len(events):,} in PostgreSQL")
        elapsed = time.perf_counter() - (first_t or time.perf_counter())
        cpu1 = ps.cpu_times()
        others1 = stack_cpu()
        cpu = (cpu1.user + cpu1.system) - ((cpu0.user + cpu0.system) if cpu0 else 0)
        live_sessions = await conn.fetchval(f'select count(*) from "{schema}".sessions where signed_in')
        hwm = _peak_rss(proc.pid)
        b4 = await b4_db(conn, schema)
        stop(proc)
        # measured: drop it now, or autovacuum works through its dead rows while the next scenarios run, and
        # checkpoint the gigabytes of WAL it wrote, or that IO lands in B2's commits (its p99 doubled)
        await conn.execute(f'drop schema if exists "{schema}" cascade')
        await conn.execute("checkpoint")
    finally:
        if spy is not None:
            spy.send_signal(2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
        await conn.close()
        stop(proc)
    rate = len(events) / elapsed
    log(f"B1: {len(events):,} events at {rate:,.0f}/s, {cpu / len(events) * 1e6:,.0f} CPU us/event")
    out = {
        "events": len(events),
        "seconds": round(elapsed, 2),
        "events_per_s": round(rate),
        "cpu_us_per_event": round(cpu / len(events) * 1e6, 1),
        "peak_rss_mb": round(hwm / 2**20, 1),
        "stack_cpu_us_per_event": {
            k: round((others1.get(k, 0.0) - others0.get(k, 0.0)) / len(events) * 1e6, 1) for k in others1
        },
        "memory": memory_curve(rss, hwm, live_sessions),
        "state": b4,
    }
    if spy is not None and profile_path.exists():
        out["profile_top"] = top_costs(profile_path)
    return out


def stack_cpu() -> dict[str, float]:
    """CPU seconds used so far by the local stack's processes: PostgreSQL's (every backend) and the broker's."""
    out = {"postgresql": 0.0, "kafka": 0.0}
    for p in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        name, cmd, t = p.info["name"] or "", " ".join(p.info["cmdline"] or []), p.info["cpu_times"]
        if t is None:
            continue
        if name.startswith("postgres"):
            out["postgresql"] += t.user + t.system
        elif name == "java" and "kafka" in cmd:
            out["kafka"] += t.user + t.system
    return out


def memory_curve(rss: list[tuple[int, int]], hwm: int, live_sessions: int) -> dict[str, Any]:
    """The consumption computer's RSS as the run went (at each quarter of the events), and its peak per 10,000
    live sessions: flat means no growth with the count processed."""
    total = rss[-1][0] if rss else 0
    quarters = []
    for q in (1, 2, 3, 4):
        seen = [m for done, m in rss if done <= total * q / 4]
        quarters.append(round(max(seen) / 2**20, 1) if seen else None)
    return {
        "rss_mb_by_quarter": quarters,
        "live_sessions": live_sessions,
        "peak_rss_mb_per_10k_sessions": round(hwm / 2**20 / (live_sessions / 10_000), 1) if live_sessions else None,
    }


def _peak_rss(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


ROOT_FRAMES = ("__main__.py", "service.py", "runners.py", "base_events.py", "events.py", "<frozen runpy>")


def top_costs(path: Path, n: int = 5) -> list[dict[str, Any]]:
    """From a py-spy raw profile: the functions with the most samples on top of the stack (self time), and the
    functions with the most samples anywhere on the stack (inclusive), leaving out the entry points and the event
    loop that every sample goes through."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        k = int(samples)
        total += k
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1]] += k
        for f in set(frames):
            if not f.endswith(ROOT_FRAMES) and not any(r in f for r in ROOT_FRAMES):
                inclusive[f] += k
    return [{"self": f, "share": round(c / total, 3)} for f, c in own.most_common(n)] + [
        {"inclusive": f, "share": round(c / total, 3)} for f, c in inclusive.most_common(n + 3)
    ]


def _frame(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name


# ---------------------------------------------------------------- B4


async def b4_db(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    sessions = await count(conn, schema, "sessions")
    live = int(await conn.fetchval(f'select count(*) from "{schema}".sessions where signed_in'))
    size = int(await conn.fetchval(f"select pg_total_relation_size('\"{schema}\".sessions')"))
    reports = await count(conn, schema, "reports")
    rsize = int(await conn.fetchval(f"select pg_total_relation_size('\"{schema}\".reports')"))
    # the same table rewritten without the dead row versions the run's updates left (autovacuum may not have come)
    await conn.execute(f'vacuum full "{schema}".sessions')
    compact = int(await conn.fetchval(f"select pg_total_relation_size('\"{schema}\".sessions')"))
    return {
        "sessions_rows": sessions,
        "live_sessions": live,
        "pg_bytes_per_session": round(size / max(1, sessions)),
        "pg_bytes_per_session_compacted": round(compact / max(1, sessions)),
        "reports": reports,
        "pg_bytes_per_report": round(rsize / reports) if reports else None,  # an empty table's size is no figure
    }


def _per_report(value: int | None) -> str:
    return "no interval closed in the run" if value is None else f"{value} B"


def b4_memory(agents: int = 400, instances: int = 20) -> dict[str, Any]:
    """Bytes of process memory per live session: the consumption computer's in-memory state, built by its rules."""
    rules = Rules()
    events = [
        AgentSignedIn(
            id=f"m{i}-{a}",
            source="urn:bench",
            time=T0 + timedelta(seconds=a),
            subject=f"m{i}",
            data=AgentSignedInData(agent_id=f"agent-{a:04d}", capabilities=CAPS[a % len(CAPS)]),
        )
        for i in range(instances)
        for a in range(agents)
    ]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    states = {f"m{i}": InstanceState(f"m{i}") for i in range(instances)}
    for e in events:
        states[e.subject] = apply(states[e.subject], e, rules).state
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    del events
    return {"sessions": agents * instances, "memory_bytes_per_session": round(grown / (agents * instances))}


# ---------------------------------------------------------------- B2


async def b2(run: Run, rate: int, seconds: float, probes: int) -> dict[str, Any]:
    """Open loop: `rate` events/s of background sign-ins/outs plus probes; each probe is one sign-in into an
    instance with no seats (registered, 0/0): over-consumption -> compliance.changed -> alert.raised."""
    ports = {s: free_port() for s in ("consumption", "compliance", "alerting")}
    base = f"{run.prefix.rstrip('.').replace('.', '_')}"
    services = [start_service(run, s, f"{base}_{s}", f"{run.prefix}b2-{s}", port) for s, port in ports.items()]
    for port in ports.values():
        await ready(port)
    setup: list[Event] = []
    for k in range(probes):
        inst = f"lat-{k:04d}"
        setup.append(
            EntitlementsSet(
                id=f"b2-ent-{k}",
                source="urn:bench",
                time=T0,
                subject=inst,
                data=EntitlementsSetData(standard_seats=0, premium_seats=0, ivr_ports=0),
            )
        )
        setup.append(
            InstanceRegistered(
                id=f"b2-reg-{k}",
                source="urn:bench",
                time=T0,
                subject=inst,
                data=InstanceRegisteredData(virtual_account="bench"),
            )
        )
    await produce(setup, run.prefix, label="B2 setup")
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            async with http.get(f"http://127.0.0.1:{ports['compliance']}/v1/instances") as r:
                if len((await r.json())["instances"]) >= probes:
                    break
            await asyncio.sleep(0.2)
    # where the time goes: when each probe's effect reaches each output topic
    hops: dict[str, dict[str, float]] = {
        "licensing.consumption": {},
        "licensing.compliance": {},
        "licensing.alerts": {},
    }
    raised = hops["licensing.alerts"]
    alerts = AIOKafkaConsumer(*(run.topic(t) for t in hops), **KAFKA, group_id=None, auto_offset_reset="latest")
    await alerts.start()
    await alerts.seek_to_end()

    async def watch() -> None:
        while True:
            batches = await alerts.getmany(timeout_ms=100)
            now = time.perf_counter()
            for tp, records in batches.items():
                seen = hops[tp.topic.removeprefix(run.prefix)]
                for rec in records:
                    e = decode_message(rec.value, tuple(rec.headers or ()))
                    if not e.subject.startswith("lat-") or e.subject in seen:
                        continue
                    if tp.topic.endswith("licensing.alerts") and not isinstance(e, AlertRaised):
                        continue
                    if tp.topic.endswith("licensing.compliance") and getattr(e.data, "over_stage", None) is None:
                        continue
                    if tp.topic.endswith("licensing.consumption") and getattr(e.data, "standard", 0) == 0:
                        continue
                    seen[e.subject] = now

    watcher = asyncio.create_task(watch())
    producer = AIOKafkaProducer(**KAFKA, acks=1, linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    rnd = random.Random(7)
    warmup = 2 * rate  # two seconds of load before the first probe: no probe meets a cold consumer
    total = int(rate * seconds) + warmup
    probe_every = max(1, (total - warmup) // probes)
    started = time.perf_counter()
    sim = T0 + timedelta(hours=1)
    try:
        for n in range(total):
            due = started + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sim += timedelta(milliseconds=1)
            if n >= warmup and (n - warmup) % probe_every == 0 and len(sent) < probes:
                inst = f"lat-{len(sent):04d}"
                e: Event = AgentSignedIn(
                    id=f"b2-p-{n}",
                    source="urn:bench",
                    time=sim,
                    subject=inst,
                    data=AgentSignedInData(agent_id="probe", capabilities=("inbound_voice",)),
                )
                fut = await producer.send(
                    run.topic("ccx.agent-activity"), encode(e), key=inst.encode(), headers=HEADERS
                )
                await fut
                sent[inst] = time.perf_counter()
                continue
            if n % rate == 0:
                e = ClockTicked(id=f"b2-t-{n}", source="urn:bench", time=sim, subject="*")
            else:
                inst = f"bg-{rnd.randrange(50):02d}"
                agent = f"a{rnd.randrange(200)}"
                if rnd.random() < 0.5:
                    e = AgentSignedIn(
                        id=f"b2-{n}",
                        source="urn:bench",
                        time=sim,
                        subject=inst,
                        data=AgentSignedInData(agent_id=agent, capabilities=("inbound_voice",)),
                    )
                else:
                    e = AgentSignedOut(
                        id=f"b2-{n}",
                        source="urn:bench",
                        time=sim,
                        subject=inst,
                        data=AgentSignedOutData(agent_id=agent),
                    )
            await send(producer, run.prefix, e)
        achieved = total / (time.perf_counter() - started)
        deadline = time.perf_counter() + 60
        while len(raised) < len(sent) and time.perf_counter() < deadline:  # noqa: ASYNC110 - polling a dict
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await alerts.stop()
        for proc in services:  # a sweep's next rate has the machine to itself
            stop(proc)
    lat = [(raised[i] - sent[i]) * 1000 for i in sent if i in raised]
    hop_ms = {}
    previous = sent
    for topic, seen in hops.items():
        d = [(seen[i] - previous[i]) * 1000 for i in sent if i in seen and i in previous]
        hop_ms[f"to_{topic.split('.')[-1]}_p50_ms"] = round(percentile(d, 0.5), 1) if d else None
        hop_ms[f"to_{topic.split('.')[-1]}_p99_ms"] = round(percentile(d, 0.99), 1) if d else None
        previous = seen
    baseline = await raw_round_trip(run, rate, seconds, probes)
    figures: dict[str, Any] = {
        "offered_events_per_s": rate,
        "achieved_events_per_s": round(achieved),
        "probes": len(sent),
        "alerts_seen": len(lat),
        "p50_ms": round(percentile(lat, 0.5), 1) if lat else None,
        "p99_ms": round(percentile(lat, 0.99), 1) if lat else None,
        "p999_ms": round(percentile(lat, 0.999), 1) if lat else None,
        "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
        "hops": hop_ms,
        "baseline": baseline,
    }
    log(
        f"B2: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms over {len(lat)} probes; raw p99 {baseline['p99_ms']} ms"
    )
    return figures


async def raw_round_trip(run: Run, rate: int, seconds: float, probes: int) -> dict[str, Any]:
    """The baseline: produce -> consume of raw records at the same rate, one consumer, same broker."""
    topic = run.topic("bench.rtt")
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**KAFKA)
    await admin.start()
    with contextlib.suppress(Exception):
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    await admin.close()
    consumer = AIOKafkaConsumer(topic, **KAFKA, group_id=None, auto_offset_reset="latest")
    await consumer.start()
    await consumer.seek_to_end()
    got: dict[int, float] = {}

    async def watch() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batches.values():
                for rec in records:
                    got[int(rec.key)] = now

    watcher = asyncio.create_task(watch())
    producer = AIOKafkaProducer(**KAFKA, acks=1, linger_ms=0)
    await producer.start()
    sent: dict[int, float] = {}
    total = int(rate * seconds)
    started = time.perf_counter()
    try:
        for n in range(total):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            fut = await producer.send(topic, b"x" * 300, key=str(n).encode())
            if n % max(1, total // probes) == 0:
                await fut
                sent[n] = time.perf_counter()
        await asyncio.sleep(2)
    finally:
        await producer.stop()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await consumer.stop()
    lat = [(got[n] - sent[n]) * 1000 for n in sent if n in got]
    return {
        "p50_ms": round(percentile(lat, 0.5), 1),
        "p99_ms": round(percentile(lat, 0.99), 1),
        "p999_ms": round(percentile(lat, 0.999), 1),
        "samples": len(lat),
    }


# ---------------------------------------------------------------- B5


def b5(quick: bool, days: int) -> dict[str, Any]:
    """The what-if's replay as `ccxlic whatif` runs it once the log is read: records decoded and merged as the
    consumption computer does, then the three deciders. Pure CPU, one core."""
    days = 2 if quick else days
    agents = Agents(standard=300, premium=80, supervisors=20)
    inst = Instance(
        id="b5-400",
        registered=True,
        entitlements=Entitlements(standard=290, premium=85, ivr_ports=60),
        agents=agents,
        ivr_peak_ports=60,
        roster_every_minutes=60,
    )
    sc = Scenario(name="b5", duration=timedelta(days=days), tick_every=timedelta(minutes=5), seed=9, instances=(inst,))
    log(f"B5: generating {days} days of a 400-agent instance")
    events = list(generate(sc, datetime(2026, 3, 2, tzinfo=UTC)))
    logs: dict[str, list[Delivery]] = {topic_name(t, ""): [] for t in CONSUMPTION_INPUTS}
    for e in events:
        log_ = logs[topic_for(e.type).name]
        log_.append(Delivery(topic_for(e.type).name, 0, len(log_), key_for(e), encode(e), tuple(HEADERS), None))
    decoder = Decoder(CONSUMPTION_INPUTS, "")
    rules = ChainRules()
    started = time.perf_counter()
    inputs = merged(logs, decoder, inst.id)
    decoded = time.perf_counter()
    out = replay(inst.id, inputs, rules)
    done = time.perf_counter()
    n = len(inputs)
    per_s = n / (done - started)
    span = (events[-1].time - events[0].time).total_seconds() / 86400
    log(f"B5: {n:,} inputs in {done - started:.2f} s ({per_s:,.0f}/s; decoding and merging {decoded - started:.2f} s)")
    return {
        "inputs": n,
        "agents": 400,
        "days": days,
        "seconds": round(done - started, 3),
        "inputs_per_s": round(per_s),
        "chain_inputs_per_s": round(n / (done - decoded)),
        "decode_merge_share": round((decoded - started) / (done - started), 3),
        "year_s": round(n / span * 365 / per_s, 1),
        "outputs": {"reports": len(out.reports), "transitions": len(out.transitions), "changes": out.changes},
    }


# ---------------------------------------------------------------- B3


def b3_scenario(quick: bool, instances: int = 50, days: int = 30) -> Scenario:
    instances, days = (2, 1) if quick else (instances, days)
    insts = []
    for i in range(instances):
        registered = i % 2 == 0
        insts.append(
            Instance(
                id=f"b3-{i:02d}",
                registered=registered,
                entitlements=Entitlements(standard=12, premium=4, ivr_ports=8) if registered else None,
                agents=Agents(standard=12, premium=5, supervisors=1),
                ivr_peak_ports=8,
                roster_every_minutes=120,
            )
        )
    return Scenario(
        name="b3", duration=timedelta(days=days), tick_every=timedelta(minutes=30), seed=5, instances=tuple(insts)
    )


async def quiescent(
    conn: asyncpg.Connection, schemas: list[str], floor: int, still: float = 3.0, timeout: float = 3600
) -> tuple[float, float]:
    """Wait until the first schema has `floor` processed inputs and no schema changed for `still` seconds; return
    (when the first input was in PostgreSQL, when the last change was), as perf_counter times."""
    started = time.perf_counter()
    first: float | None = None
    last: list[int] = []
    stable_since = time.perf_counter()
    last_log = time.monotonic()
    while time.perf_counter() - started < timeout:
        now = [await count(conn, s) for s in schemas]
        if first is None and now[0] > 0:
            first = time.perf_counter()
        if now != last:
            last, stable_since = now, time.perf_counter()
        if now[0] >= floor and time.perf_counter() - stable_since >= still:
            return first or started, stable_since
        if time.monotonic() - last_log > 15:
            last_log = time.monotonic()
            log(f"B3: processed {now} (consumption needs {floor:,})")
        await asyncio.sleep(0.1)
    raise TimeoutError(f"not quiescent after {timeout} s: {last}")


async def results_of(conn: asyncpg.Connection, base: str) -> dict[str, Any]:
    """What the three services recorded, in an order that does not depend on how instances interleaved: every
    interval report (every revision), every compliance transition, every alert history entry, and every entry of
    the three licensing logs."""
    reports = await conn.fetch(
        f"select instance, interval_start, revision, peak::text as peak, witness::text as witness"
        f' from "{base}_consumption".reports order by instance, interval_start, revision'
    )
    transitions = await conn.fetch(
        f"select instance, seq, at, cause_id, evidence, view::text as view"
        f' from "{base}_compliance".transitions order by instance, seq'
    )
    history = await conn.fetch(
        f"select a.instance, a.alert, h.alert_id, h.at, h.kind, h.text, h.cause_id,"
        f" row_number() over (partition by a.instance order by h.seq) as n"
        f' from "{base}_alerting".alert_history h join "{base}_alerting".alerts a using (alert_id) order by 1, n'
    )
    log_rows = [
        (service, r["instance"], r["seq"], r["hash"])
        for service in ("consumption", "compliance", "alerting")
        for r in await conn.fetch(
            f'select instance, seq, hash from "{base}_{service}".audit_log order by instance, seq'
        )
    ]
    return {
        "log": log_rows,  # the licensing logs, entry by entry (the hash covers the entry and every one before it)
        "reports": [
            (
                r["instance"],
                r["interval_start"].isoformat(),
                r["revision"],
                json.loads(r["peak"]),
                json.loads(r["witness"]),
            )
            for r in reports
        ],
        "compliance": [
            (r["instance"], r["seq"], r["at"].isoformat(), r["cause_id"], r["evidence"], json.loads(r["view"]))
            for r in transitions
        ],
        "alerts": [
            (r["instance"], r["n"], r["alert"], r["alert_id"], r["at"].isoformat(), r["kind"], r["text"], r["cause_id"])
            for r in history
        ],
    }


async def b3(run: Run, quick: bool, instances: int, days: int) -> dict[str, Any]:
    sc = b3_scenario(quick, instances, days)
    events = generate(sc, T0)
    consumption_inputs = len(events)  # every simulator event is an input of the consumption computer
    # what its dedup table counts: a tick for every instance is one input per partition of the clock topic
    claimed = sum(PARTITIONS if isinstance(e, ClockTicked) and e.subject == "*" else 1 for e in events)
    log(f"B3: {len(events):,} simulator events ({len(sc.instances)} instances x {sc.duration.days} days)")
    conn = await asyncpg.connect(DSN)
    out: dict[str, Any] = {"events": len(events)}
    try:
        phases: dict[str, Any] = {}
        live_prefix = run.prefix
        for phase in ("live", "replay"):
            base = f"{live_prefix.rstrip('.').replace('.', '_')}_{phase}"
            if phase == "replay":
                # the live run's input log, copied as it is to topics of the replay's own (untimed), so that the
                # replay's outputs are its own and can be compared with the live run's
                run.prefix = f"{live_prefix}replay."
                await ensure_topics(BROKER, run.prefix, TOPICS)
                await produce(events, run.prefix, label="B3 replay input")
            ports = {s: free_port() for s in ("consumption", "compliance", "alerting")}
            procs = [
                start_service(run, s, f"{base}_{s}", f"{run.prefix}b3-{phase}-{s}", p, CCXLIC_BATCH_SIZE="1000")
                for s, p in ports.items()
            ]
            for p in ports.values():
                await ready(p)
            started = time.perf_counter()
            if phase == "live":
                await produce(events, run.prefix, label="B3 live")  # the services consume while this runs
            first, last = await quiescent(conn, [f"{base}_{s}" for s in ports], claimed)
            elapsed = max(1e-6, last - (first if phase == "replay" else started))
            phases[phase] = {
                "seconds": round(elapsed, 2),
                # polled every 0.1 s: a run shorter than a second (--quick) is too short to give a rate
                "events_per_s": round(consumption_inputs / elapsed) if elapsed >= 1 else None,
                "results": await results_of(conn, base),
            }
            for proc in procs:
                stop(proc)
            log(f"B3 {phase}: {consumption_inputs:,} inputs in {elapsed:.1f} s")
        live, replay = phases["live"]["results"], phases["replay"]["results"]
        out.update(
            inputs=consumption_inputs,
            live_seconds=phases["live"]["seconds"],
            replay_seconds=phases["replay"]["seconds"],
            replay_events_per_s=phases["replay"]["events_per_s"],
            identical={k: live[k] == replay[k] for k in live},
            counts={k: len(v) for k, v in replay.items()},
        )
        if not all(out["identical"].values()):
            out["differences"] = {k: _first_difference(live[k], replay[k]) for k in live if live[k] != replay[k]}
    finally:
        await conn.close()
    return out


def _first_difference(a: list[Any], b: list[Any]) -> dict[str, Any]:
    for x, y in zip(a, b, strict=False):
        if x != y:
            return {"live": x, "replay": y}
    return {"live_count": len(a), "replay_count": len(b)}


# ---------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    root = f"bench{uuid.uuid4().hex[:8]}."
    run = Run(quick=quick, prefix=root)

    async def scenario_topics(name: str) -> None:
        """Each scenario has its own topics (a prefix), so no service reads another scenario's input."""
        run.prefix = f"{root}{name}."
        await ensure_topics(BROKER, run.prefix, TOPICS)

    only = set(args.only.split(",")) if args.only else {"B0", "B1", "B2", "B3", "B4", "B5"}
    await wait_for_kafka(BROKER, timeout=60)
    size = 20_000 if quick else args.events
    instances, agents = (20, 100) if quick else (100, 400)
    res = run.results
    res["config"] = {
        "quick": quick,
        "b1_events": size,
        "b1_instances": instances,
        "b1_agents": agents,
        "cpus": os.cpu_count(),
        "b1_keyless": args.keyless,
        "started": datetime.now(UTC).isoformat(),
    }
    try:
        if only & {"B0", "B1", "B4"}:
            await scenario_topics("b1")
            log(f"B1: generating {size:,} events ({instances} instances x {agents} agents)")
            events = b1_events(size, instances, agents)
            await produce(events, run.prefix, label="B1", keyless=args.keyless)
            res["B0"] = await b0(run, run.topic("ccx.agent-activity"), len(events))
            if only & {"B1", "B4"}:
                res["B1"] = await b1(run, events, args.profile)
                res["B1"]["ratio_to_B0"] = round(res["B1"]["events_per_s"] / res["B0"]["messages_per_s"], 3)
            del events
        if "B4" in only:
            res["B4"] = {**(res.get("B1", {}).get("state", {})), **b4_memory(agents=100 if quick else 400)}
        if "B2" in only:
            await scenario_topics("b2")
            res["B2"] = await b2(run, rate=args.b2_rate, seconds=5 if quick else 30, probes=20 if quick else 300)
            sweep = [int(r) for r in args.b2_sweep.split(",") if r] if not quick else []
            if sweep:
                res["B2"]["sweep"] = {}
                for rate in sweep:
                    await scenario_topics(f"b2r{rate}")
                    got = await b2(run, rate=rate, seconds=30, probes=300)
                    res["B2"]["sweep"][rate] = {
                        k: got[k] for k in ("achieved_events_per_s", "p50_ms", "p99_ms", "p999_ms")
                    }
                tried = {args.b2_rate: res["B2"], **res["B2"]["sweep"]}
                met = [r for r, f in tried.items() if f["p99_ms"] is not None and f["p99_ms"] <= 100]
                res["B2"]["highest_rate_p99_within_100ms"] = max(met) if met else None
        if "B5" in only:
            res["B5"] = b5(quick, args.b5_days)
            if "B0" in res:
                res["B5"]["ratio_to_B0"] = round(res["B5"]["inputs_per_s"] / res["B0"]["messages_per_s"], 3)
        if "B3" in only:
            await scenario_topics("b3")
            res["B3"] = await b3(run, quick, args.b3_instances, args.b3_days)
            if "B0" in res and res["B3"]["replay_events_per_s"] is not None:
                res["B3"]["ratio_to_B0"] = round(res["B3"]["replay_events_per_s"] / res["B0"]["messages_per_s"], 3)
    finally:
        for p in run.procs:
            stop(p)
        conn = await asyncpg.connect(DSN)
        for schema in set(run.schemas):
            await conn.execute(f'drop schema if exists "{schema}" cascade')
        await conn.close()
        deleted = await delete_topics(BROKER, frozenset({root}))
        log(f"deleted the run's {deleted} topics")
    return res


def table(res: dict[str, Any]) -> str:
    rows = [("id", "figure", "value", "baseline / goal")]
    b0 = res.get("B0")
    if b0:
        rows.append(("B0", "raw consume + json.loads", f"{b0['messages_per_s']:,} msg/s", ""))
    b1 = res.get("B1")
    if b1:
        rows += [
            (
                "B1",
                "consumption computer",
                f"{b1['events_per_s']:,} events/s",
                f"ratio {b1['ratio_to_B0']} (goal >= 0.25, stretch 0.5)",
            ),
            ("B1", "CPU per event", f"{b1['cpu_us_per_event']} us", ""),
            ("B1", "peak RSS", f"{b1['peak_rss_mb']} MB", ""),
            (
                "B1",
                "  per 10,000 live sessions",
                f"{b1['memory']['peak_rss_mb_per_10k_sessions']} MB ({b1['memory']['live_sessions']:,} live)",
                "",
            ),
            (
                "B1",
                "  RSS at each quarter of the run",
                " / ".join(f"{m} MB" for m in b1["memory"]["rss_mb_by_quarter"]),
                "flat: no growth with the events",
            ),
            (
                "B1",
                "CPU per event elsewhere",
                ", ".join(f"{k} {v} us" for k, v in b1["stack_cpu_us_per_event"].items()),
                "the same two cores",
            ),
        ]
    b2 = res.get("B2")
    if b2:
        base = b2["baseline"]
        rows += [
            (
                "B2",
                f"event -> alert.raised at {b2['achieved_events_per_s']}/s",
                f"p50 {b2['p50_ms']} / p99 {b2['p99_ms']} / p99.9 {b2['p999_ms']} ms",
                f"raw p50 {base['p50_ms']} / p99 {base['p99_ms']} / p99.9 {base['p999_ms']} ms (goal p99 <= 100)",
            ),
        ]
        for rate, f in b2.get("sweep", {}).items():
            rows.append(
                ("B2", f"  at {rate}/s", f"p50 {f['p50_ms']} / p99 {f['p99_ms']} / p99.9 {f['p999_ms']} ms", "")
            )
        if "sweep" in b2:
            best = b2["highest_rate_p99_within_100ms"]
            rows.append(("B2", "highest rate tried with p99 <= 100 ms", f"{best:,}/s" if best else "none", ""))
    b3 = res.get("B3")
    if b3:
        rows += [
            (
                "B3",
                f"replay of {b3['inputs']:,} inputs, 3 services",
                f"{b3['replay_events_per_s']:,} events/s" if b3["replay_events_per_s"] else "too short to time",
                f"ratio {b3.get('ratio_to_B0', '-')} (goal >= 0.25)",
            ),
            ("B3", "identical to the live run", ", ".join(f"{k}={v}" for k, v in b3["identical"].items()), ""),
        ]
    b4 = res.get("B4")
    if b4:
        rows += [
            ("B4", "PostgreSQL per session", f"{b4.get('pg_bytes_per_session', '-')} B", "goal <= 300 B"),
            ("B4", "  the same, after VACUUM FULL", f"{b4.get('pg_bytes_per_session_compacted', '-')} B", ""),
            ("B4", "process memory per session", f"{b4['memory_bytes_per_session']} B", ""),
            ("B4", "PostgreSQL per interval report", _per_report(b4.get("pg_bytes_per_report")), ""),
        ]
    b5r = res.get("B5")
    if b5r:
        rows += [
            (
                "B5",
                f"what-if replay of {b5r['inputs']:,} inputs (1 instance, {b5r['agents']} agents, {b5r['days']} d)",
                f"{b5r['inputs_per_s']:,} inputs/s",
                f"ratio {b5r.get('ratio_to_B0', '-')} (goal >= 50,000 inputs/s)",
            ),
            ("B5", "  the chain alone (decoded inputs)", f"{b5r['chain_inputs_per_s']:,} inputs/s", ""),
            ("B5", "  a year of that instance", f"{b5r['year_s']} s", "goal < 60 s"),
        ]
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run (CI)")
    parser.add_argument("--events", type=int, default=1_000_000, help="B1 events (default 1,000,000)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where to write the figures")
    parser.add_argument("--b5-days", type=int, default=28, help="B5: simulated days of the 400-agent instance")
    parser.add_argument("--profile", action="store_true", help="profile B1 with py-spy and report the top costs")
    parser.add_argument("--b2-rate", type=int, default=1000, help="B2 offered load, events/s (default 1000)")
    parser.add_argument(
        "--b2-sweep",
        default="250,500,1500",
        help="B2 also at these rates (comma-separated; empty: none), for the highest with p99 <= 100 ms",
    )
    parser.add_argument("--b3-instances", type=int, default=50, help="B3 simulated instances (default 50)")
    parser.add_argument("--b3-days", type=int, default=30, help="B3 simulated days (default 30)")
    parser.add_argument("--only", default="", help="comma-separated scenario ids, e.g. B1,B4")
    parser.add_argument(
        "--keyless",
        action="store_true",
        help="B1's events published with no key (each rerouted through licensing.intake): what the intake costs",
    )
    ns = parser.parse_args()
    if ns.events < 1000:
        parser.error("--events must be at least 1000")
    results = asyncio.run(main(ns))
    Path(ns.json).write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    print(f"\nfigures: {ns.json}")
