"""Turning what the emulator, the LLM server and Redis saw into figures.

Latencies come from the emulator (ack latencies it timed, the moment each post/edit landed);
Redis figures from a separate client (MONITOR for round trips, MEMORY USAGE for bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.load import SessionResult
from bench.observe import BenchEmulator
from storage import keys

POSTING = ("chat.postMessage", "chat.update")


# --- percentiles ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (like numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values_s: Iterable[float], qs: Sequence[int] = (50, 95, 99)) -> dict[str, Any]:
    """``{"n", "p50", "p95", "p99", "max"}`` in milliseconds (rounded to 0.1 ms)."""
    vals = list(values_s)
    out: dict[str, Any] = {"n": len(vals)}
    for q in qs:
        v = percentile(vals, q)
        out[f"p{q}"] = None if v is None else round(v * 1000, 1)
    out["max"] = round(max(vals) * 1000, 1) if vals else None
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 2)


# --- acks ------------------------------------------------------------------------------------


def ack_samples(emu: BenchEmulator) -> dict[str, list[tuple[float, bool]]]:
    """Every delivery's ack latency by what it was: command, click, reply (a human's thread
    message) or echo (the app's own posts and edits coming back as events)."""
    out: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for record in emu.deliveries:
        if record.kind == "slash_commands":
            kind = "command"
        elif record.kind == "interactive":
            kind = "click"
        elif record.kind == "events_api":
            event = record.payload.get("event") or {}
            human = not event.get("bot_id") and not event.get("subtype")
            kind = "reply" if human and event.get("thread_ts") else "echo"
        else:
            kind = record.kind
        out[kind].append((record.result.seconds, record.result.ok))
    return out


def ack_summary(emu: BenchEmulator) -> dict[str, dict[str, Any]]:
    out = {}
    for kind, samples in sorted(ack_samples(emu).items()):
        s = summary_ms(sec for sec, _ok in samples)
        s["failed"] = sum(not ok for _sec, ok in samples)
        s["over_3s"] = sum(sec >= 3.0 for sec, _ok in samples)
        out[kind] = s
    triggers = [x for k in ("command", "click", "reply") for x in ack_samples(emu).get(k, [])]
    s = summary_ms(sec for sec, _ok in triggers)
    s["failed"] = sum(not ok for _sec, ok in triggers)
    s["over_3s"] = sum(sec >= 3.0 for sec, _ok in triggers)
    out["all"] = s
    return out


def acks_by_llm_load(
    emu: BenchEmulator, records: Sequence[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Trigger acks (commands, clicks, replies) grouped by how many LLM answers were being
    received by the app when the trigger was sent: does the ack wait behind token streams?"""
    spans = sorted((float(r["start"]), float(r["end"])) for r in records)
    buckets: dict[str, list[float]] = defaultdict(list)
    for sent, kind, seconds, _ok in emu.ack_log:
        if kind == "echo":
            continue
        busy = sum(1 for start, end in spans if start <= sent <= end)
        name = "0" if busy == 0 else "1-24" if busy < 25 else "25-99" if busy < 100 else "100+"
        buckets[name].append(seconds)
    order = ("0", "1-24", "25-99", "100+")
    return {k: summary_ms(buckets[k]) for k in order if buckets.get(k)}


# --- visible changes -------------------------------------------------------------------------


def first_visible(results: Sequence[SessionResult]) -> dict[str, list[float]]:
    """Trigger → first visible change, by trigger (command, regenerate, approve, reply)."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in results:
        for step in r.steps:
            if step.first_visible_s is None:
                continue
            name = "reply" if step.kind == "reply" else step.name
            name = "command" if step.kind == "command" else name
            out[name].append(step.first_visible_s)
            if step.kind in ("command", "click"):
                out["commands+clicks"].append(step.first_visible_s)
    return out


def outcome_times(results: Sequence[SessionResult]) -> dict[str, list[float]]:
    """Trigger → the outcome the user waits for (story shown, answer posted, notice...)."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in results:
        for step in r.steps:
            if step.done_s is not None:
                out["reply" if step.kind == "reply" else step.name].append(step.done_s)
        if r.placeholder_s is not None:
            out["placeholder"].append(r.placeholder_s)
    return out


def llm_to_visible(
    results: Sequence[SessionResult], records: Sequence[dict[str, Any]]
) -> list[float]:
    """For every story version: its LLM stream's end → the story shown with its buttons.

    Versions are matched to streamed story requests of the same session in order; a session
    whose requests were retried (more requests than versions) is skipped.
    """
    by_tag: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec.get("schema") == "story" and rec.get("tag") is not None:
            by_tag[int(rec["tag"])].append(rec)
    out = []
    for r in results:
        recs = sorted(by_tag.get(r.index, []), key=lambda x: x["start"])
        if len(recs) < len(r.visible) or len(recs) > len(r.visible) + 1:
            continue
        for version, shown_at in sorted(r.visible.items()):
            if version - 1 < len(recs):
                out.append(shown_at - recs[version - 1]["end"])
    return out


# --- Slack Web API usage -----------------------------------------------------------------------


def api_calls(emu: BenchEmulator, channels: Sequence[str]) -> dict[str, Any]:
    """Web API calls per session by method (every session has its own channel)."""
    wanted = set(channels)
    per_method: Counter[str] = Counter()
    unscoped: Counter[str] = Counter()
    for call in emu.calls:
        channel = call.params.get("channel")
        if channel in wanted:
            per_method[call.method] += 1
        elif channel is None:
            unscoped[call.method] += 1
    n = max(1, len(wanted))
    return {
        "per_session": {m: round(c / n, 2) for m, c in sorted(per_method.items())},
        "per_session_total": round(sum(per_method.values()) / n, 2),
        "not_per_channel": dict(unscoped),
        "failed_calls": sum(not c.ok for c in emu.calls),
        "rate_limited": sum(c.status == 429 for c in emu.calls),
    }


def api_by_message(emu: BenchEmulator, channels: Sequence[str]) -> dict[str, float]:
    """Posts and edits per session by the kind of message they changed (its delivery slot's
    first part: card, story, reply, notice, approved, …; ``?`` for a message without one), so
    the report can say which Slack calls a session makes and what each is for."""
    counts: Counter[str] = Counter()
    for channel in channels:
        for change in emu.changes.get(channel, ()):
            if change.is_ephemeral:
                continue
            kind = (change.slot or "?").split(":")[0]
            counts[f"{change.method} {kind}"] += 1
    n = max(1, len(channels))
    return {k: round(v / n, 2) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def _peak_in_window(times: Sequence[float], window: float) -> int:
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def post_rates(emu: BenchEmulator, channels: Sequence[str]) -> dict[str, Any]:
    """Posts + edits per channel: the peak in any 1 s window (Slack allows ~1/s per channel
    with short bursts) and the peak sustained over 10 s."""
    wanted = set(channels)
    times: dict[str, list[float]] = defaultdict(list)
    for call in emu.calls:
        channel = call.params.get("channel")
        if call.method in POSTING and call.ok and channel in wanted:
            times[str(channel)].append(call.at)
    peaks1 = [_peak_in_window(sorted(ts), 1.0) for ts in times.values()]
    peaks10 = [_peak_in_window(sorted(ts), 10.0) / 10 for ts in times.values()]
    all_updates = sorted(c.at for c in emu.calls if c.method == "chat.update" and c.ok)
    return {
        "peak_1s_max": max(peaks1, default=0),
        "peak_1s_p50": percentile(peaks1, 50),
        "channels_over_1_per_s": sum(p > 1 for p in peaks1),
        "channels_over_3_per_s": sum(p > 3 for p in peaks1),
        "sustained_10s_max_per_s": round(max(peaks10, default=0.0), 2),
        "workspace_updates_peak_per_min": _peak_in_window(all_updates, 60.0),
    }


# --- correctness: duplicates and lost work -------------------------------------------------------


def duplicate_messages(emu: BenchEmulator, channels: Sequence[str]) -> dict[str, Any]:
    """More than one live bot message per delivery slot in a session's channel (a second
    card, a second answer to one reply, a second notice) is a duplicate."""
    dupes: list[str] = []
    for channel in channels:
        slots: Counter[str] = Counter()
        for change in emu.changes.get(channel, ()):
            live = change.message is not None and not change.message.deleted
            if change.is_post and change.slot and live:
                slots[change.slot] += 1
        dupes += [f"{channel}:{slot}x{n}" for slot, n in slots.items() if n > 1]
    return {"count": len(dupes), "examples": dupes[:10]}


async def version_gaps(redis: Redis, team: str, results: Sequence[SessionResult]) -> dict[str, Any]:
    """Story versions per session must be 1..n with no gap and n = what the session made."""
    bad: list[str] = []
    for r in results:
        if not r.session_id or not r.completed:
            continue
        fields = await redis.hkeys(keys.versions(team, r.session_id))
        numbers = sorted(int(k) for k in fields if str(k).isdigit())  # the story's versions
        expected = list(range(1, len(r.visible) + 1))
        if numbers != expected:
            bad.append(f"{r.session_id}: {numbers} (expected {expected})")
    return {"count": len(bad), "examples": bad[:10]}


def lost(results: Sequence[SessionResult]) -> dict[str, Any]:
    """Sessions whose last trigger was acknowledged but whose outcome never showed."""
    acked_no_outcome = [r for r in results if r.failed_at and "ack" not in r.failed_at]
    nacked = [r for r in results if r.failed_at and "ack" in r.failed_at]
    return {
        "incomplete": sum(not r.completed for r in results),
        "acked_without_outcome": len(acked_no_outcome),
        "not_acked": len(nacked),
        "waiting_for": dict(Counter(_waiting(r.failed_at) for r in results if r.failed_at)),
    }


def _waiting(failed_at: str | None) -> str:
    text = (failed_at or "").split(" (nothing after")[0]
    for prefix in ("answer to reply", "reply", "post for reply"):
        if text.startswith(prefix):
            return prefix
    return text[:60]


# --- Redis ---------------------------------------------------------------------------------------


@dataclass
class MonitorLine:
    at: float
    source: str  # "lua" for commands a script ran, else the client's address:port
    name: str
    args: str


@dataclass
class MonitorCapture:
    """Every command Redis executes, via MONITOR on a separate connection."""

    url: str
    lines: list[MonitorLine] = field(default_factory=list)
    _redis: Redis | None = None
    _monitor: Any = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> MonitorCapture:
        self._redis = Redis.from_url(self.url, decode_responses=True)
        self._monitor = self._redis.monitor()
        await self._monitor.__aenter__()
        self._task = asyncio.create_task(self._read())
        await asyncio.sleep(0.05)
        return self

    async def _read(self) -> None:
        while True:
            cmd = await self._monitor.next_command()
            name, _, args = str(cmd["command"]).partition(" ")
            source = (
                "lua"
                if cmd["client_type"] == "lua"
                else (f"{cmd['client_address']}:{cmd['client_port']}")
            )
            self.lines.append(MonitorLine(time.monotonic(), source, name.upper(), args))

    def mark(self) -> int:
        return len(self.lines)

    def window(self, start: int, end: int | None = None) -> list[MonitorLine]:
        return self.lines[start:end]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                await self._monitor.__aexit__(None, None, None)
        if self._redis is not None:
            await self._redis.aclose()


CONNECTION_SETUP = {"CLIENT", "HELLO", "SELECT", "PING"}


def round_trips(lines: Sequence[MonitorLine]) -> dict[str, Any]:
    """Client commands (round trips) and the commands scripts ran, from MONITOR lines."""
    client = [x for x in lines if x.source != "lua"]
    setup = [x for x in client if x.name in CONNECTION_SETUP]
    return {
        "round_trips": len(client) - len(setup),
        "connection_setup": len(setup),
        "commands": [x.name for x in client if x.name not in CONNECTION_SETUP],
        "inside_scripts": len(lines) - len(client),
    }


def key_category(key: str) -> str:
    if ":thread:" in key:
        return "thread index"
    if ":seen:" in key:
        return "dedupe keys (24 h)"
    if ":done:" in key:
        return "done markers"
    if ":eager:" in key:
        return "eager-lane placeholder markers (1 h)"
    if ":llm:" in key:
        return "LLM result cache (24 h)"
    if ":spend:" in key:
        return "spending per day"
    for suffix, name in (
        (":hist", "history"),
        (":ver", "versions"),
        (":items", "paid items in flight"),
        (":msgs", "delivery ledger"),
        (":fence", "lease"),
        (":lock", "lease"),
    ):
        if key.endswith(suffix):
            return name
    return "session"


async def session_bytes(redis: Redis, sessions: Sequence[SessionResult]) -> dict[str, Any]:
    """MEMORY USAGE (exact, SAMPLES 0) of every key that belongs to each session.

    A key belongs to a session if its name carries the session id or the session's channel
    (thread index, reply dedupe keys, done markers and LLM cache of reply jobs).
    """
    owners = {}
    for r in sessions:
        if r.session_id:
            owners[r.session_id] = r.index
            owners[f":{r.channel}:"] = r.index
    per: dict[int, Counter[str]] = defaultdict(Counter)
    keys_per: Counter[int] = Counter()
    async for key in redis.scan_iter(match="sl:*", count=1000):
        owner = next((idx for marker, idx in owners.items() if marker in key), None)
        if owner is None:
            continue
        size = int(await redis.memory_usage(key, samples=0) or 0)
        per[owner][key_category(key)] += size
        keys_per[owner] += 1
    # The approved session's job on the shared stage queue: its fields plus the entry id (the
    # stream's own allocation is shared by every session and not counted).
    stage_share = 0
    for stream in [k async for k in redis.scan_iter(match="sl:q:stage:*")]:
        entries: Any = await redis.xrange(stream)
        if entries:
            sizes = [16 + sum(len(k) + len(v) for k, v in f.items()) for _id, f in entries]
            stage_share += sum(sizes) // len(sizes)
    totals = [sum(c.values()) + stage_share for c in per.values()]
    categories: Counter[str] = Counter()
    for c in per.values():
        categories.update(c)
    n = max(1, len(per))
    return {
        "sessions": len(per),
        "bytes_per_session": round(sum(totals) / n) if totals else None,
        "max_bytes_per_session": max(totals, default=None),
        "keys_per_session": round(sum(keys_per.values()) / n, 1),
        "by_category": {k: round(v / n) for k, v in categories.most_common()}
        | ({"stage queue entry (share)": stage_share} if stage_share else {}),
    }


async def info_section(redis: Redis, section: str) -> dict[str, Any]:
    return dict(await redis.info(section))


def commandstats_calls(info: dict[str, Any]) -> Counter[str]:
    out: Counter[str] = Counter()
    for key, value in info.items():
        if key.startswith("cmdstat_") and isinstance(value, dict):
            out[key.removeprefix("cmdstat_").upper()] = int(value.get("calls", 0))
    return out


IDLE_POLLING = ("XREADGROUP", "XAUTOCLAIM")


def is_idle_polling(x: MonitorLine) -> bool:
    """A replica's work on a clock, not a session's: the workers' stream reads and reclaims and
    the App Home publisher's once-a-second look for workspaces with Homes to publish. The same
    with no session running (the idle rate the bench prints)."""
    return x.name in IDLE_POLLING or (x.name == "SMEMBERS" and x.args.startswith(keys.HOME_TEAMS))


def dump_redis_lines(
    path: Path, lines: Sequence[MonitorLine], steps: Sequence[Any], exclude: Iterable[str]
) -> None:
    """Write one session's Redis commands, each under the trigger last sent before it ran
    (``BENCH_DUMP_REDIS=dir``): where each round trip goes, for reading, not for figures."""
    skip = set(exclude)
    starts = [(float(s.sent), "reply" if s.kind == "reply" else s.name) for s in steps]
    out: list[str] = []
    current = None
    for x in lines:
        if x.source in skip:
            continue
        step = next((n for at, n in reversed(starts) if at <= x.at), "before the first trigger")
        if step != current:
            out.append(f"== {step}")
            current = step
        mark = "    " if x.source == "lua" else ""
        out.append(f"{mark}{x.at:.4f} {x.source} {x.name} {x.args[:160]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")


def session_redis_work(
    lines: Sequence[MonitorLine], steps: Sequence[Any], *, exclude: Iterable[str] = ()
) -> dict[str, Any]:
    """Round trips and commands of one session, from MONITOR lines, split by the trigger that
    was last sent when each line ran (``steps``: the session's ``bench.load.Step``s, in order).

    - A *round trip* is one request and its answer: a command, or a whole ``MULTI … EXEC``
      transaction from one client (redis-py sends it in one write and reads one reply). A
      non-transactional pipeline can't be told apart from separate commands in MONITOR's
      output, so each of its commands counts as one (over-counts, never under-counts).
    - *Commands sent*: every command a client sent (``EVALSHA`` is one; ``MULTI`` and ``EXEC``
      count), *commands run*: those plus the ones scripts ran.
    - A replica's idle polling (``is_idle_polling``: the workers' ``XREADGROUP … BLOCK`` and
      ``XAUTOCLAIM``, the Home publisher's once-a-second ``SMEMBERS``) is left out — it runs with
      no session too, and is reported as the idle rate — and one read per job (one per trigger)
      is counted instead. ``exclude``: the bench's own clients
      (its INFO, SCAN and MEMORY USAGE are not the app's work).
    """
    skip = set(exclude)
    starts = [float(s.sent) for s in steps]
    names = [("reply" if s.kind == "reply" else s.name) for s in steps]
    per: dict[str, Counter[str]] = defaultdict(Counter)
    by_name: Counter[str] = Counter()
    open_tx: set[str] = set()
    polls = 0
    for x in lines:
        if x.source in skip:
            continue
        i = next((k for k in range(len(starts) - 1, -1, -1) if starts[k] <= x.at), None)
        step = names[i] if i is not None else "before the first trigger"
        c = per[step]
        if x.source == "lua":
            c["inside_scripts"] += 1
            continue
        if is_idle_polling(x):
            polls += 1
            continue
        c["sent"] += 1
        by_name[x.name] += 1
        if x.source in open_tx:
            if x.name in ("EXEC", "DISCARD"):
                open_tx.discard(x.source)
            continue  # inside a transaction: part of the MULTI's round trip
        if x.name == "MULTI":
            open_tx.add(x.source)
        c["round_trips"] += 1
    for name in names:  # one job read per trigger
        per[name]["round_trips"] += 1
        per[name]["sent"] += 1
        per[name]["job_reads"] += 1
    by_step = {
        name: {
            "triggers": names.count(name),
            "round_trips": c["round_trips"],
            "commands_sent": c["sent"],
            "commands_run": c["sent"] + c["inside_scripts"],
        }
        for name, c in per.items()
    }
    total = Counter[str]()
    for c in per.values():
        total.update(c)
    return {
        "round_trips": total["round_trips"],
        "commands_sent": total["sent"],
        "commands_run": total["sent"] + total["inside_scripts"],
        "commands_inside_scripts": total["inside_scripts"],
        "polling_commands_in_window": polls,
        "by_trigger": by_step,
        "by_command": dict(by_name.most_common()),
        "triggers": len(names),
    }
