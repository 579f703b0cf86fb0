"""Scale-out: 1, 2 and 4 replicas (real processes) on one Redis and one Slack, Socket Mode.

``redis_url`` may name a Redis Cluster (``redis+cluster://``): the same run on a cluster
(bench/cluster.py), with the CPU of every node summed under ``redis``.

With the LLM answering at once, throughput is what the replicas themselves can do. A fixed
number of simulated users run full sessions back to back for a fixed time; completed sessions
per minute count those finished inside the window. Then every session's channel is checked for
duplicates (a second message for one delivery slot: card, story, answer to a reply, notice,
approval) and every session's versions in Redis for gaps.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from bench.load import run_closed_loop, storyloop_session
from bench.metrics import ack_summary, duplicate_messages, lost, version_gaps
from bench.observe import BenchEmulator
from bench.procs import CpuMeter, LLMProcess, start_storyloop
from storage.connection import connect


async def run_replicas(
    replicas: int,
    *,
    llm: LLMProcess,
    redis_url: str,
    redis_pid: int | list[int],
    log_dir: Path,
    users: int,
    duration_s: float,
    extra_env: dict[str, str],
    grace_s: float = 60.0,
) -> dict[str, Any]:
    redis = connect(redis_url)  # one server or a cluster, as the app connects
    await redis.flushall()  # on a cluster: every primary
    await llm.reset()
    await llm.configure(0.0, None)
    emu = await BenchEmulator().start()
    running = None
    try:
        running = await start_storyloop(
            emu,
            llm.base_url,
            redis_url,
            mode="socket",
            replicas=replicas,
            log_dir=log_dir,
            extra_env=extra_env,
            tag=f"scaleout{replicas}",
        )
        pids = {f"replica{i}": pid for i, pid in enumerate(running.pids)}
        nodes = redis_pid if isinstance(redis_pid, list) else [redis_pid]
        redis_pids = {f"redis{i}": pid for i, pid in enumerate(nodes)}
        meter = CpuMeter({**pids, **redis_pids, "llm": llm.pid, "bench": os.getpid()}).start()
        results, start, stop_at = await run_closed_loop(
            emu, storyloop_session, users, duration_s=duration_s, grace_s=grace_s
        )
        used = meter.stop()
        cpu = {k: v for k, v in used.items() if k in pids}
        cpu["redis"] = round(sum(used[k] for k in redis_pids), 2)  # every node of a cluster
        cpu |= {k: v for k, v in used.items() if k not in pids and k not in redis_pids}
        in_window = [r for r in results if r.completed and r.finished and r.finished <= stop_at]
        channels = [r.channel for r in results]
        await asyncio.sleep(1.0)  # let any late duplicate land before counting
        return {
            "replicas": replicas,
            "users": users,
            "window_s": round(stop_at - start, 1),
            "completed_in_window": len(in_window),
            "sessions_per_min": round(len(in_window) * 60 / (stop_at - start), 1),
            "started": len(results),
            "completed_total": sum(r.completed for r in results),
            "lost": lost(results),
            "duplicates": duplicate_messages(emu, channels),
            "version_gaps": await version_gaps(redis, emu.team_id, results),
            "acks": ack_summary(emu),
            "cpu_s": cpu,
        }
    finally:
        if running is not None:
            await running.stop()
        await emu.stop()
        await redis.aclose()
