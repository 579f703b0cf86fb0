"""Scale-out on a Redis Cluster: 1 and 2 replicas on a 3-primary cluster vs on one Redis.

    .venv/bin/python -m bench.cluster                       # 1,2 replicas, 48 users, 45 s each
    .venv/bin/python -m bench.cluster --replicas 1,2 --users 48 --seconds 45 --rounds 1

The same closed loop as bench/run.py's scale-out phase (``bench.scaleout.run_replicas``): a
fixed number of simulated users run full sessions back to back; completed sessions per minute
count those finished inside the window; then duplicates (a second live message for one delivery
slot) and version gaps. Each replica count runs on one redis-server and on a cluster of three
primaries (``redis-cli --cluster create``, no replicas), both with AOF ``everysec`` like
production, in the same invocation and interleaved (single, cluster, single, cluster …) so the
load of a shared machine falls on both alike.

What it can and can't show: the bench's emulator is one workspace, and every key of a workspace
sits on one of 12 shards (storage/keys.py), so all of its sessions land on *one* primary. The
figures are the cost of running on a cluster (cluster-aware client, routing, the queue polled
over 12 streams on 3 nodes instead of one blocking read) for one busy workspace, not the
spread of many workspaces over primaries (tests/cluster/test_topologies.py proves that spread).

``--window N`` measures instead the asynchronous-replication window on a cluster of 3 primaries
with one replica each: writers append to one slot as fast as they can, its primary is SIGKILLed
at a random moment, and after the replica's promotion every write the primary acknowledged is
looked for on the new primary. Then the same with ``WAIT 1`` after every write (counted as
acknowledged only once WAIT says the replica has it), and the per-write latency of both on a
healthy cluster — the cost of closing the window that way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.metrics import summary_ms
from bench.procs import BenchRedis, LLMProcess, describe_machine
from bench.scaleout import run_replicas
from tests.support.redis_topologies import RedisClusterProcs

ROOT = Path(__file__).resolve().parent.parent


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n")[0])
    p.add_argument("--replicas", type=_ints, default=[1, 2], help="app replicas, e.g. 1,2")
    p.add_argument("--users", type=int, default=48, help="simulated users, back to back")
    p.add_argument("--seconds", type=float, default=45.0, help="measured window of each run")
    p.add_argument("--rounds", type=int, default=1, help="repeat every (target, replicas) run")
    p.add_argument("--worker-mode", default="process", help="STORYLOOP_WORKER_MODE")
    p.add_argument("--window", type=int, default=0, help="N kills: the replication window")
    p.add_argument("--writers", type=int, default=8, help="--window: concurrent writers")
    p.add_argument("--out", type=Path, default=None, help="JSON results path")
    return p.parse_args(argv)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    results: dict[str, Any] = {
        "command": "python -m bench.cluster " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "config": vars(args) | {"out": str(args.out)},
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="storyloop-bench-cluster-") as tmp:
        log_dir = Path(tmp) / "logs"
        log_dir.mkdir()
        single = BenchRedis(Path(tmp) / "redis").start()
        cluster = RedisClusterProcs(Path(tmp) / "cluster", appendfsync="everysec")
        llm = await LLMProcess(log_dir / "llm.log").start()
        try:
            await asyncio.to_thread(cluster.start)
            targets: list[tuple[str, str, int | list[int]]] = [
                ("one Redis", single.url, single.pid),
                ("3-primary cluster", cluster.url, cluster.pids),
            ]
            for round_ in range(args.rounds):
                for replicas in args.replicas:
                    for target, url, pids in targets:
                        print(f"round {round_ + 1}: {replicas} replica(s) on {target}", flush=True)
                        run = await run_replicas(
                            replicas,
                            llm=llm,
                            redis_url=url,
                            redis_pid=pids,
                            log_dir=log_dir,
                            users=args.users,
                            duration_s=args.seconds,
                            extra_env={"STORYLOOP_WORKER_MODE": args.worker_mode},
                        )
                        run = {"target": target, "round": round_ + 1, **run}
                        results["runs"].append(run)
                        print(f"  {render_row(run)}", flush=True)
        finally:
            await llm.stop()
            single.stop()
            await asyncio.to_thread(cluster.stop)
    results["duration_s"] = round(time.monotonic() - began, 1)
    results["machine"]["loadavg_at_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return results


def render_row(run: dict[str, Any]) -> str:
    cpu = ", ".join(f"{k} {v}" for k, v in run["cpu_s"].items())
    return (
        f"| {run['target']} | {run['replicas']} | {run['sessions_per_min']} "
        f"| {run['completed_total']}/{run['started']} | {run['lost']['acked_without_outcome']} "
        f"| {run['duplicates']['count']} | {run['version_gaps']['count']} "
        f"| {run['acks']['all'].get('p99')} | {cpu} |"
    )


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    head = [
        f"Command: `{results['command'].strip()}` — {results['duration_s']} s; "
        f"started {results['started_at']}; load average {m.get('loadavg_at_start')} at start, "
        f"{m.get('loadavg_at_end')} at end",
        "",
        "| Redis | replicas | completed sessions/min | completed / started | lost "
        "| duplicate messages | version gaps | ack p99 ms | CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + [render_row(r) for r in results["runs"]])


# --- the replication window ------------------------------------------------------------------

KEY = "sl:probe:{window}:"  # one slot: one primary, one replica


async def _writer(
    port: int, n: int, use_wait: bool, acked: list[int], lat: list[float], stop: asyncio.Event
) -> None:
    """Write ``KEY n:i`` for i = 0, 1, … until ``stop`` or the connection dies; ``acked`` gets
    every i the server acknowledged (with ``use_wait``: and WAIT 1 confirmed on the replica)."""
    conn = Redis(port=port, socket_timeout=2, socket_connect_timeout=0.5)
    i = 0
    try:
        while not stop.is_set():
            t = time.perf_counter()
            await conn.set(f"{KEY}{n}:{i}", i)
            if use_wait and int(await conn.wait(1, 1000)) < 1:
                i += 1
                continue  # the replica did not confirm: never acknowledged to a user
            lat.append(time.perf_counter() - t)
            acked.append(i)
            i += 1
    except (RedisError, OSError):
        return
    finally:
        with contextlib.suppress(Exception):
            await conn.aclose()


async def _lost(port: int, acked: list[list[int]]) -> int:
    conn = Redis(port=port, socket_timeout=5)
    try:
        lost = 0
        for n, done in enumerate(acked):
            for start in range(0, len(done), 500):
                chunk = done[start : start + 500]
                found = await conn.mget([f"{KEY}{n}:{i}" for i in chunk])
                lost += sum(1 for v in found if v is None)
        return lost
    finally:
        await conn.aclose()


async def window_trial(cluster: RedisClusterProcs, writers: int, use_wait: bool) -> dict[str, Any]:
    """One kill: writers on the slot's primary, SIGKILL after 0.3 to 0.8 s, promotion, count."""
    node = cluster.primary_for(KEY)
    acked: list[list[int]] = [[] for _ in range(writers)]
    lat: list[float] = []
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_writer(node.port, n, use_wait, acked[n], lat, stop))
        for n in range(writers)
    ]
    await asyncio.sleep(random.uniform(0.3, 0.8))
    cluster.kill(node)
    await asyncio.gather(*tasks)
    successor = await asyncio.to_thread(cluster.wait_failover, node, KEY)
    lost = await _lost(successor.port, acked)
    await asyncio.to_thread(cluster.rejoin, node)
    await asyncio.to_thread(cluster.flush)
    return {"wait": use_wait, "acked": sum(map(len, acked)), "lost": lost}


async def write_latency(cluster: RedisClusterProcs, writers: int, use_wait: bool) -> list[float]:
    """Per-write latency for 3 s on a healthy cluster (no kill)."""
    node = cluster.primary_for(KEY)
    acked: list[list[int]] = [[] for _ in range(writers)]
    lat: list[float] = []
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_writer(node.port, n, use_wait, acked[n], lat, stop))
        for n in range(writers)
    ]
    await asyncio.sleep(3.0)
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.to_thread(cluster.flush)
    return lat


async def window_async(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    results: dict[str, Any] = {
        "command": "python -m bench.cluster " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "window": [],
    }
    with tempfile.TemporaryDirectory(prefix="storyloop-bench-window-") as tmp:
        cluster = RedisClusterProcs(
            Path(tmp) / "cluster", replicas=1, node_timeout_ms=1500, appendfsync="everysec"
        )
        try:
            await asyncio.to_thread(cluster.start)
            latency = {}
            for use_wait in (False, True):
                lat = await write_latency(cluster, args.writers, use_wait)
                name = "SET + WAIT 1" if use_wait else "SET"
                latency[name] = {"writes_per_s": round(len(lat) / 3.0), **summary_ms(lat)}
            results["latency"] = latency
            for k in range(args.window):
                for use_wait in (False, True):
                    trial = await window_trial(cluster, args.writers, use_wait)
                    print(f"kill {k + 1}: {trial}", flush=True)
                    results["window"].append(trial)
        finally:
            await asyncio.to_thread(cluster.stop)
    results["duration_s"] = round(time.monotonic() - began, 1)
    return results


def render_window(results: dict[str, Any]) -> str:
    lines = [f"Command: `{results['command'].strip()}` — {results['duration_s']} s", ""]
    lines += ["| write | writes/s | p50 ms | p99 ms |", "|---|---|---|---|"]
    for name, x in results["latency"].items():
        lines.append(f"| {name} | {x['writes_per_s']} | {x.get('p50')} | {x.get('p99')} |")
    lines += ["", "| write | kills | acknowledged writes | lost | kills that lost any |"]
    lines.append("|---|---|---|---|---|")
    for use_wait in (False, True):
        trials = [t for t in results["window"] if t["wait"] is use_wait]
        lines.append(
            f"| {'SET + WAIT 1' if use_wait else 'SET'} | {len(trials)} "
            f"| {sum(t['acked'] for t in trials)} | {sum(t['lost'] for t in trials)} "
            f"| {sum(1 for t in trials if t['lost'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.window:
        found = asyncio.run(window_async(args))
        out = args.out or ROOT / "bench" / "results" / "cluster-window.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(found, indent=2, default=str) + "\n")
        print(render_window(found))
        print(f"\nJSON: {out}")
        return 0
    args.out = args.out or ROOT / "bench" / "results" / "cluster.json"
    results = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(render(results))
    print(f"\nJSON: {args.out}")
    bad = [r for r in results["runs"] if r["duplicates"]["count"] or r["version_gaps"]["count"]]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
