"""Storyloop's benchmark: ``python -m bench.run [options]`` (``--quick`` is the CI smoke).

One invocation runs, on this machine and against the local Slack emulator, LLM server and a
real redis-server:

- **latency**: N concurrent sessions (``--sessions``) against the bare-Bolt baseline and then
  Storyloop, each a real process, in Socket Mode and/or HTTP (``--mode``);
- **redis**: round trips per trigger at intake, commands and bytes per session;
- **tokens**: prompt tokens per regeneration as feedback grows, next to the naive figure;
- **rss**: app memory per 1,000 active sessions;
- **scaleout**: 1/2/4 replicas on one Redis: sessions per minute and duplicates.

It prints Markdown tables (Storyloop vs baseline, ratios, targets PASS/MISS) and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench import report
from bench.load import (
    SessionFn,
    baseline_session,
    channel_for,
    default_script,
    prompt_for,
    run_concurrent,
    storyloop_session,
    user_for,
)
from bench.metrics import (
    MonitorCapture,
    ack_summary,
    acks_by_llm_load,
    api_by_message,
    api_calls,
    commandstats_calls,
    dump_redis_lines,
    duplicate_messages,
    first_visible,
    info_section,
    llm_to_visible,
    lost,
    outcome_times,
    post_rates,
    round_trips,
    session_bytes,
    session_redis_work,
    summary_ms,
    version_gaps,
)
from bench.observe import BenchEmulator
from bench.procs import (
    BenchRedis,
    CpuMeter,
    LLMProcess,
    RssSampler,
    describe_machine,
    dump_json,
    rss_kb,
    start_baseline,
    start_storyloop,
    storyloop_env,
)
from bench.profile import Profiler
from bench.scaleout import run_replicas
from bench.stages import phase_stages
from bench.tokens import CHECKPOINTS, measured_rows, measured_script, model_curve
from bot.app import build_runtime
from bot.pipeline.models import Session, Story, StoryVersion, Turn
from bot.runtime import start_socket_mode
from storage import keys
from tests.e2e.harness import settings_from

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("latency", "redis", "tokens", "rss", "scaleout", "stages")


@dataclass
class Ctx:
    args: argparse.Namespace
    llm: LLMProcess
    redis: BenchRedis
    log_dir: Path
    extra_env: dict[str, str]

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=_ints, default=[10, 100, 500], help="e.g. 10,100,500")
    p.add_argument("--mode", choices=["socket", "http", "both"], default="both")
    p.add_argument("--llm-latency", type=float, default=1.0, help="seconds to first token")
    p.add_argument("--tps", type=float, default=50.0, help="LLM tokens per second (0 = instant)")
    p.add_argument("--replicas", type=_ints, default=[1, 2, 4], help="scale-out, e.g. 1,2,4")
    p.add_argument("--phases", default=",".join(PHASES), help=f"subset of {','.join(PHASES)}")
    p.add_argument("--quick", action="store_true", help="CI smoke: small, fast, socket only")
    p.add_argument("--out", type=Path, default=None, help="JSON results path")
    p.add_argument("--think", type=float, default=0.5, help="pause before each later trigger")
    p.add_argument(
        "--redis-think",
        type=float,
        default=0.5,
        help="the redis phase's pause before each later trigger (0: back to back, a stress case)",
    )
    p.add_argument("--ramp", type=float, default=1.0, help="spread session starts over N s")
    p.add_argument(
        "--shape",
        choices=["spread", "burst", "both"],
        default="both",
        help="latency runs with session starts spread over --ramp s, all at once, or both",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="bound of one latency run (s)")
    p.add_argument(
        "--step-timeout", type=float, default=240.0, help="bound of one trigger's wait (s)"
    )
    p.add_argument("--workers", type=int, default=None, help="STORYLOOP_WORKERS (app default)")
    p.add_argument("--progress-interval", type=float, default=None, help="app default: 2 s")
    p.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the app under test (repeatable), e.g. STORYLOOP_WORKER_MODE=thread",
    )
    p.add_argument("--rss-sessions", type=int, default=1000)
    p.add_argument(
        "--stages-sessions", type=int, default=10, help="concurrent sessions through the stages"
    )
    p.add_argument("--redis-sessions", type=int, default=3, help="10-turn sessions measured")
    p.add_argument("--token-turns", type=int, default=100, help="measured session's turns")
    p.add_argument("--scaleout-users", type=int, default=48)
    p.add_argument("--scaleout-seconds", type=float, default=45.0)
    p.add_argument(
        "--scaleout-modes",
        default="process,thread",
        help="STORYLOOP_WORKER_MODE values of the scale-out runs: a replica with its worker in "
        "its own process already uses both cores of a 2-core machine; with the worker on a "
        "thread a replica is one process",
    )
    p.add_argument(
        "--profile", type=int, default=None, help="py-spy the app during the N-session run"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.sessions = [5]
        args.mode = "socket"
        args.llm_latency, args.tps = 0.0, 0.0
        args.replicas = [1]
        args.timeout = 40.0
        args.step_timeout = 30.0
        args.rss_sessions = 40
        args.redis_sessions = 1
        args.stages_sessions = 1
        args.token_turns = 10
        args.scaleout_users = 8
        args.scaleout_seconds = 6.0
        args.scaleout_modes = "process"
        args.think = 0.0
        args.ramp = 0.2
    if args.out is None:
        name = "quick.json" if args.quick else "latest.json"
        args.out = ROOT / "bench" / "results" / name
    args.phases = [x for x in args.phases.split(",") if x]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return args


# --- latency: N concurrent sessions, baseline then Storyloop --------------------------------------


async def run_app(ctx: Ctx, app: str, mode: str, n: int, ramp_s: float) -> dict[str, Any]:
    a = ctx.args
    emu = await BenchEmulator().start()
    running = None
    redis = Redis.from_url(ctx.redis.url, decode_responses=True)
    try:
        fn: SessionFn
        if app == "baseline":
            running = await start_baseline(emu, mode=mode, log_dir=ctx.log_dir)
            fn = functools.partial(baseline_session, think_s=a.think, step_timeout_s=a.step_timeout)
        else:
            await redis.flushall()
            await ctx.llm.reset()
            await ctx.llm.configure(a.llm_latency, a.tps or None)
            running = await start_storyloop(
                emu,
                ctx.llm.base_url,
                ctx.redis.url,
                mode=mode,
                replicas=1,
                log_dir=ctx.log_dir,
                extra_env=ctx.extra_env,
                tag=f"storyloop-{mode}-{n}",
            )
            fn = functools.partial(
                storyloop_session, think_s=a.think, step_timeout_s=a.step_timeout
            )
        pid = running.pids[0]
        rss_start = rss_kb(pid)[0]
        sampler = RssSampler(pid).start()
        meter = CpuMeter(
            {"app": pid, "redis": ctx.redis.pid, "llm": ctx.llm.pid, "bench": os.getpid()},
            parts={"listener": pid},
        ).start()
        profiler = None
        if app == "storyloop" and a.profile == n:
            shape = "burst" if ramp_s == 0 else "spread"
            out = a.out.parent / f"profile-{mode}-{n}-{shape}.txt"
            profiler = await Profiler(pid, out, duration_s=a.timeout).start()
        began = time.monotonic()
        results = await run_concurrent(emu, fn, n, timeout=a.timeout, ramp_s=ramp_s)
        wall = time.monotonic() - began

        async def jobs_left() -> bool:  # acked jobs are deleted from their stream
            if app == "baseline":
                return False
            return any([await redis.xlen(stream) for stream in keys.JOB_STREAMS])

        # The work the last steps set off (e.g. the reference images after Approve) counts too.
        settle_s = await meter.settle("app", busy=jobs_left)
        cpu = meter.stop()
        peak = await sampler.stop()
        await asyncio.sleep(0.5)  # late duplicates, if any, land before they are counted
        channels = [r.channel for r in results]
        out_json: dict[str, Any] = {
            "sessions": n,
            "completed": sum(r.completed for r in results),
            "wall_s": round(wall, 1),
            "lost": lost(results),
            "acks": ack_summary(emu),
            "first_visible": {
                k: summary_ms(v, (50, 95, 99)) for k, v in sorted(first_visible(results).items())
            },
            "outcome": {
                k: summary_ms(v, (50, 95)) for k, v in sorted(outcome_times(results).items())
            },
            "api": api_calls(emu, channels),
            "api_by_message": api_by_message(emu, channels),
            "post_rates": post_rates(emu, channels),
            "duplicates": duplicate_messages(emu, channels),
            "cpu_s": cpu,
            "app_cpu_ms_per_session": round(cpu.get("app", 0) * 1000 / max(1, n), 1),
            "listener_cpu_ms_per_session": round(cpu.get("listener", 0) * 1000 / max(1, n), 1),
            "settle_s": settle_s,
            "rss_mb": {"start": round(rss_start / 1024, 1), "peak": round(peak / 1024, 1)},
        }
        if app == "storyloop":
            records = await ctx.llm.records()
            out_json["llm_to_visible"] = summary_ms(llm_to_visible(results, records), (50, 95))
            out_json["acks_by_llm_streams"] = acks_by_llm_load(emu, records)
            streamed = sum(int(r.get("completion_tokens", 0)) for r in records if r.get("stream"))
            out_json["llm_tokens_streamed"] = streamed
            out_json["app_cpu_us_per_streamed_token"] = (
                round(cpu.get("app", 0) * 1e6 / streamed, 1) if streamed else None
            )
            out_json["llm_requests"] = len(records)
            out_json["version_gaps"] = await version_gaps(redis, emu.team_id, results)
        if profiler is not None:
            out_json["profile"] = await profiler.finish()
        return out_json
    finally:
        if running is not None:
            await running.stop()
        await emu.stop()
        await redis.aclose()


def shapes(args: argparse.Namespace) -> list[str]:
    """The latency shapes to run: ``spread`` (starts over ``--ramp`` s), ``burst`` (all at once)."""
    return ["spread", "burst"] if args.shape == "both" else [args.shape]


async def phase_latency(ctx: Ctx, shape: str = "spread") -> dict[str, Any]:
    """Baseline then Storyloop, per mode and size. ``burst``: every session's ``/story`` is sent
    at the same instant (no ramp), so their acks, cards and later triggers pile up together."""
    a = ctx.args
    ramp_s = 0.0 if shape == "burst" else a.ramp
    modes = ["socket", "http"] if a.mode == "both" else [a.mode]
    out: dict[str, Any] = {}
    for mode in modes:
        out[mode] = {}
        for n in a.sessions:
            ctx.say(f"latency ({shape}): {n} sessions, {mode}: baseline")
            base = await run_app(ctx, "baseline", mode, n, ramp_s)
            ctx.say(f"latency ({shape}): {n} sessions, {mode}: Storyloop")
            ours = await run_app(ctx, "storyloop", mode, n, ramp_s)
            ctx.say(
                f"  baseline {base['completed']}/{n} in {base['wall_s']} s; "
                f"Storyloop {ours['completed']}/{n} in {ours['wall_s']} s"
            )
            out[mode][str(n)] = {"baseline": base, "storyloop": ours}
    return out


# --- Redis: round trips at intake, commands and bytes per session ---------------------------------


async def _intake_probe(
    ctx: Ctx, emu: BenchEmulator, mon: MonitorCapture, thread: tuple[str, str], probe: Any
) -> dict[str, Any]:
    """The real handlers, built exactly as in production, with no worker running: every
    command Redis sees while one trigger is acked belongs to its intake.

    The eager lane is off here: it starts *after* the ack (it is job work, done by the
    listener instead of a worker), and MONITOR's time window could not tell its commands apart.
    """
    env = {**ctx.extra_env, "STORYLOOP_EAGER": "false"}
    settings = settings_from(
        storyloop_env(emu, ctx.llm.base_url, ctx.redis.url, mode="socket", extra=env)
    )
    rt = build_runtime(settings, ctx.redis.url)
    handler = await start_socket_mode(rt)
    emu.mode = "socket"
    await emu.wait_connected(timeout=10)
    try:
        channel, thread_ts = thread
        story = emu.message(probe.channel, probe.story_ts)
        next_index = 900_000

        async def command() -> None:
            nonlocal next_index
            next_index += 1
            emu.ensure_channel(channel_for(next_index))
            await emu.slash_command(
                prompt_for(next_index), user=user_for(next_index), channel=channel_for(next_index)
            )

        async def reply() -> None:
            await emu.user_posts(channel, "one more note on the ending", thread_ts=thread_ts)

        async def chatter() -> None:
            await emu.user_posts(channel, "unrelated channel chatter")

        async def regenerate() -> None:
            await emu.click(story, "story_regenerate", user=user_for(probe.index))  # type: ignore[arg-type]

        async def approve() -> None:
            await emu.click(story, "story_approve", user=user_for(probe.index))  # type: ignore[arg-type]

        triggers = {
            "command (/story)": command,
            "thread reply": reply,
            "click (Regenerate)": regenerate,
            "click (Approve)": approve,
            "channel message (not a session thread)": chatter,
        }
        await command()  # warm the pooled connection up (setup commands are not intake)
        await asyncio.sleep(0.3)
        out: dict[str, Any] = {}
        for name, fire in triggers.items():
            seen = []
            for _ in range(3):
                start = mon.mark()
                await fire()
                await asyncio.sleep(0.25)
                seen.append(round_trips(mon.window(start)))
            counts = sorted(x["round_trips"] for x in seen)
            out[name] = {
                "round_trips": counts[len(counts) // 2],
                "max_round_trips": counts[-1],
                "commands": seen[-1]["commands"],
                "commands_inside_script": seen[-1]["inside_scripts"],
                "connection_setup_seen": sum(x["connection_setup"] for x in seen),
            }
        return out
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
        await rt.close()


async def phase_stages_of(ctx: Ctx) -> dict[str, Any]:
    """The stages script at 1 session (alone) and at ``--stages-sessions`` at once."""
    env = {"STORYLOOP_VIDEO_SIZE": "320x180", **ctx.extra_env}
    runs = sorted({1, ctx.args.stages_sessions})
    results = [
        await phase_stages(ctx.llm, ctx.redis.url, sessions=n, log_dir=ctx.log_dir, extra_env=env)
        for n in runs
    ]
    main = dict(results[-1])
    main["by_sessions"] = {
        str(r["sessions"]): {
            "completed": r["completed"],
            "cost_usd_per_video": r.get("cost_usd_per_video"),
            "confirm_to_video_s": (r.get("seconds") or {}).get("confirm_to_video"),
        }
        for r in results
    }
    return main


def _by_trigger_mean(per_session: list[dict[str, Any]], n: int) -> dict[str, dict[str, float]]:
    """Each trigger's share of a session's Redis work (the mean over completed sessions)."""
    out: dict[str, dict[str, float]] = {}
    for x in per_session:
        if not x["completed"]:
            continue
        for name, figures in x["by_trigger"].items():
            into = out.setdefault(name, {})
            for k, v in figures.items():
                into[k] = into.get(k, 0) + v / n
    return {k: {f: round(v, 1) for f, v in d.items()} for k, d in out.items()}


async def phase_redis(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    redis = Redis.from_url(ctx.redis.url, decode_responses=True)
    await redis.flushall()
    await ctx.llm.reset()
    await ctx.llm.configure(0.0, None)
    emu = await BenchEmulator().start()
    running = None
    mon = None
    try:
        running = await start_storyloop(
            emu,
            ctx.llm.base_url,
            ctx.redis.url,
            mode="socket",
            replicas=1,
            log_dir=ctx.log_dir,
            extra_env=ctx.extra_env,
            tag="storyloop-redis",
        )
        await asyncio.sleep(1.0)
        script = default_script(replies=10, regenerations=2, approve=True)
        # A warm-up session first, not counted: each process's first use of each script
        # (NOSCRIPT, SCRIPT LOAD) and of each pooled connection (HELLO, CLIENT SETINFO) is a
        # cost of starting a replica, not of a session.
        await storyloop_session(emu, 900_000, time.monotonic() + 120, script, think_s=a.redis_think)
        await asyncio.sleep(1.0)
        mon = await MonitorCapture(ctx.redis.url).start()
        # The bench's own client (INFO, SCAN, MEMORY USAGE) is not the app's work.
        me = await redis.client_info()
        bench_clients = {str(me.get("addr", ""))}
        idle_start = mon.mark()
        await asyncio.sleep(3.0)
        idle = [x for x in mon.window(idle_start) if x.source != "lua"]
        idle_rate = len(idle) / 3.0
        mem_before = int((await info_section(redis, "memory"))["used_memory_dataset"])
        stats_before = commandstats_calls(await info_section(redis, "commandstats"))
        results = []
        per_session: list[dict[str, Any]] = []
        for k in range(a.redis_sessions):
            start = mon.mark()
            began = time.monotonic()
            r = await storyloop_session(
                emu, k, time.monotonic() + 120, script, think_s=a.redis_think
            )
            await asyncio.sleep(1.0)  # the approve job acks and releases its lease
            lines = mon.window(start)
            window = time.monotonic() - began
            results.append(r)
            work = session_redis_work(lines, r.steps, exclude=bench_clients)
            if dump := os.environ.get("BENCH_DUMP_REDIS"):
                dump_redis_lines(Path(dump) / f"session-{k}.txt", lines, r.steps, bench_clients)
            per_session.append(
                {
                    "completed": r.completed,
                    "failed_at": r.failed_at,
                    "window_s": round(window, 1),
                    "round_trips": work["round_trips"],
                    "commands_sent": work["commands_sent"],
                    "commands_total": work["commands_run"],
                    "commands_inside_scripts": work["commands_inside_scripts"],
                    "polling_commands_in_window": work["polling_commands_in_window"],
                    "by_trigger": work["by_trigger"],
                    "by_command": work["by_command"],
                    "triggers": work["triggers"],
                }
            )
        mem_after = int((await info_section(redis, "memory"))["used_memory_dataset"])
        stats_after = commandstats_calls(await info_section(redis, "commandstats"))
        delta = stats_after - stats_before
        done = [r for r in results if r.completed]
        bytes_ = await session_bytes(redis, done)
        shared = {}
        for key in keys.JOB_STREAMS:
            shared[key] = {
                "bytes": int(await redis.memory_usage(key, samples=0) or 0),
                "entries": int(await redis.xlen(key)),
            }
        # A session left at v1 for the click probes (its buttons must stay clickable).
        probe = await storyloop_session(emu, 800_000, time.monotonic() + 60, [])
        await asyncio.sleep(1.0)
        await running.stop()
        running = None
        thread = (results[0].channel, results[0].card_ts or "")
        intake = await _intake_probe(ctx, emu, mon, thread, probe)
        n = max(1, len(done))
        return {
            "sessions": len(results),
            "completed": len(done),
            "script": (
                "/story, 10 thread replies, Regenerate x2 (3 versions), Approve; "
                f"{a.redis_think:g} s between a change and the next trigger"
            ),
            "idle_commands_per_s": round(idle_rate, 1),
            "intake": intake,
            "per_session": per_session,
            "round_trips_per_session": round(sum(x["round_trips"] for x in per_session) / n, 1),
            "commands_per_session": round(sum(x["commands_total"] for x in per_session) / n, 1),
            "commands_sent_per_session": round(sum(x["commands_sent"] for x in per_session) / n, 1),
            "by_trigger_per_session": _by_trigger_mean(per_session, n),
            "commandstats_per_session": {
                k: round(v / n, 1) for k, v in delta.most_common() if k not in ("INFO", "MONITOR")
            },
            "bytes": bytes_,
            "dataset_memory_delta_per_session": round((mem_after - mem_before) / n),
            "shared_streams": shared,
        }
    finally:
        if mon is not None:
            await mon.stop()
        if running is not None:
            await running.stop()
        await emu.stop()
        await redis.aclose()


# --- tokens ---------------------------------------------------------------------------------------


async def phase_tokens(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    model = model_curve(100)
    checkpoints = [c for c in CHECKPOINTS if c <= a.token_turns]
    redis = Redis.from_url(ctx.redis.url, decode_responses=True)
    await redis.flushall()
    await ctx.llm.reset()
    await ctx.llm.configure(0.0, None)
    emu = await BenchEmulator().start()
    running = None
    try:
        running = await start_storyloop(
            emu,
            ctx.llm.base_url,
            ctx.redis.url,
            mode="socket",
            replicas=1,
            log_dir=ctx.log_dir,
            extra_env=ctx.extra_env,
            tag="storyloop-tokens",
        )
        index = 700_001
        r = await storyloop_session(
            emu, index, time.monotonic() + 300, measured_script(checkpoints)
        )
        records = await ctx.llm.records()
        session = history = None
        versions: dict[int, Story] = {}
        if r.session_id:
            raw = await redis.hget(keys.session(emu.team_id, r.session_id), "data")
            session = Session.model_validate_json(raw) if raw else None
            raw_hist = await redis.lrange(keys.history(emu.team_id, r.session_id), 0, -1)
            history = [Turn.model_validate_json(x) for x in raw_hist]
            for number, data in (
                await redis.hgetall(keys.versions(emu.team_id, r.session_id))
            ).items():
                if str(number).isdigit():  # the story's; later stages' are "stage:n"
                    versions[int(number)] = StoryVersion.model_validate_json(data).story
        measured = measured_rows(checkpoints, records, index, session, versions, history or [])
        feedback_prompts = [
            int(x["prompt_tokens"])
            for x in sorted(records, key=lambda x: x["start"])
            if x.get("schema") == "feedback_reply" and x.get("tag") == index
        ]
        return {
            "model": model,
            "measured": measured,
            "measured_completed": r.completed,
            "measured_failed_at": r.failed_at,
            "feedback_answer_prompt_tokens": {
                "first": feedback_prompts[0] if feedback_prompts else None,
                "max": max(feedback_prompts, default=None),
                "last": feedback_prompts[-1] if feedback_prompts else None,
            },
        }
    finally:
        if running is not None:
            await running.stop()
        await emu.stop()
        await redis.aclose()


# --- RSS per 1,000 active sessions ----------------------------------------------------------------


async def phase_rss(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    redis = Redis.from_url(ctx.redis.url, decode_responses=True)
    await redis.flushall()
    await ctx.llm.reset()
    await ctx.llm.configure(0.0, None)
    emu = await BenchEmulator().start()
    running = None
    start_only: SessionFn = functools.partial(storyloop_session, script=[])
    try:
        running = await start_storyloop(
            emu,
            ctx.llm.base_url,
            ctx.redis.url,
            mode="socket",
            replicas=1,
            log_dir=ctx.log_dir,
            extra_env=ctx.extra_env,
            tag="storyloop-rss",
        )
        pid = running.pids[0]
        fresh = rss_kb(pid)[0]
        warm = await run_concurrent(emu, start_only, 20, timeout=120, first_index=500_000)
        await asyncio.sleep(2.0)
        before = rss_kb(pid)[0]
        batch = 100
        made = 0
        began = time.monotonic()
        for first in range(0, a.rss_sessions, batch):
            size = min(batch, a.rss_sessions - first)
            res = await run_concurrent(
                emu, start_only, size, timeout=300, ramp_s=0.5, first_index=first
            )
            made += sum(r.completed for r in res)
        await asyncio.sleep(2.0)
        after, hwm = rss_kb(pid)
        per_1000 = (after - before) * 1000 / max(1, made) / 1024
        return {
            "sessions": a.rss_sessions,
            "active_sessions": made,
            "warmup_sessions": sum(r.completed for r in warm),
            "seconds": round(time.monotonic() - began, 1),
            "rss_mb_fresh": round(fresh / 1024, 1),
            "rss_mb_before": round(before / 1024, 1),
            "rss_mb_after": round(after / 1024, 1),
            "rss_mb_hwm": round(hwm / 1024, 1),
            "rss_mb_per_1000_sessions": round(per_1000, 1),
        }
    finally:
        if running is not None:
            await running.stop()
        await emu.stop()
        await redis.aclose()


# --- scale-out ------------------------------------------------------------------------------------


async def phase_scaleout(ctx: Ctx) -> list[dict[str, Any]]:
    a = ctx.args
    out = []
    for mode in [m for m in a.scaleout_modes.split(",") if m]:
        for replicas in a.replicas:
            ctx.say(f"scale-out: {replicas} replica(s), worker {mode}, {a.scaleout_users} users")
            result = await run_replicas(
                replicas,
                llm=ctx.llm,
                redis_url=ctx.redis.url,
                redis_pid=ctx.redis.pid,
                log_dir=ctx.log_dir,
                users=a.scaleout_users,
                duration_s=a.scaleout_seconds,
                extra_env={**ctx.extra_env, "STORYLOOP_WORKER_MODE": mode},
                grace_s=30 if a.quick else 60,
            )
            out.append({**result, "worker_mode": mode})
            ctx.say(f"  {out[-1]['sessions_per_min']} sessions/min")
    return out


# --- main -----------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    extra_env: dict[str, str] = {}
    if args.workers:
        extra_env["STORYLOOP_WORKERS"] = str(args.workers)
    if args.progress_interval:
        extra_env["STORYLOOP_PROGRESS_INTERVAL"] = str(args.progress_interval)
    for item in args.app_env:
        name, _, value = item.partition("=")
        extra_env[name.strip()] = value
    results: dict[str, Any] = {
        "command": "python -m bench.run " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "config": {
            "sessions": args.sessions,
            "mode": args.mode,
            "llm_latency_s": args.llm_latency,
            "tps": args.tps,
            "replicas": args.replicas,
            "phases": args.phases,
            "think_s": args.think,
            "ramp_s": args.ramp,
            "shapes": shapes(args),
            "timeout_s": args.timeout,
            "step_timeout_s": args.step_timeout,
            "app_env": extra_env or "defaults",
            "quick": args.quick,
        },
    }
    with tempfile.TemporaryDirectory(prefix="storyloop-bench-") as tmp:
        log_dir = Path(tmp) / "logs"
        log_dir.mkdir()
        redis = BenchRedis(Path(tmp) / "redis").start()
        llm = await LLMProcess(log_dir / "llm.log").start()
        ctx = Ctx(args, llm, redis, log_dir, extra_env)
        try:
            for phase in PHASES:
                if phase not in args.phases:
                    continue
                ctx.say(f"phase: {phase}")
                t = time.monotonic()
                if phase == "latency":
                    for shape in shapes(args):
                        key = "latency" if shape == "spread" else "latency_burst"
                        t = time.monotonic()
                        try:
                            results[key] = await phase_latency(ctx, shape)
                        except Exception as exc:  # one failed phase keeps the rest
                            ctx.say(f"phase {key} failed: {type(exc).__name__}: {exc}")
                            results[key] = {"error": f"{type(exc).__name__}: {exc}"}
                        results.setdefault("phase_seconds", {})[key] = round(
                            time.monotonic() - t, 1
                        )
                    continue
                try:
                    results[phase] = await {
                        "redis": phase_redis,
                        "tokens": phase_tokens,
                        "rss": phase_rss,
                        "scaleout": phase_scaleout,
                        "stages": phase_stages_of,
                    }[phase](ctx)
                except Exception as exc:  # one failed phase keeps the rest
                    ctx.say(f"phase {phase} failed: {type(exc).__name__}: {exc}")
                    results[phase] = {"error": f"{type(exc).__name__}: {exc}"}
                results.setdefault("phase_seconds", {})[phase] = round(time.monotonic() - t, 1)
        finally:
            await llm.stop()
            redis.stop()
            if args.keep_logs:
                keep = args.out.parent / "logs"
                keep.mkdir(parents=True, exist_ok=True)
                for f in log_dir.iterdir():
                    (keep / f.name).write_bytes(f.read_bytes())
    results["duration_s"] = round(time.monotonic() - began, 1)
    results["machine"]["loadavg_at_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results["targets"] = report.targets(results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.keep_logs = bool(os.environ.get("BENCH_KEEP_LOGS"))
    results = asyncio.run(main_async(args))
    dump_json(args.out, results)
    print(report.render(results))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
