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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cluster.json")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(render(results))
    print(f"\nJSON: {args.out}")
    bad = [r for r in results["runs"] if r["duplicates"]["count"] or r["version_gaps"]["count"]]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
