"""The printed report (Markdown, pasted as-is into bench/README.md) and the targets check."""

from __future__ import annotations

from typing import Any

from bench.tokens import flatness

KB = 1024
TRIGGERS = ("command", "click", "reply")
VISIBLE = ("command", "regenerate", "approve")
VISIBLE_LABELS = {
    "command": "/story → session card (baseline: its post)",
    "regenerate": 'Regenerate → "Regenerating…" (baseline: its post)',
    "approve": "Approve → first edit (baseline: its post)",
    "commands+clicks": "all commands + clicks",
    "reply": "thread reply → answer (Storyloop: LLM-bound)",
}


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(float(a) / float(b), 2)


SHAPES = {"latency": "spread", "latency_burst": "burst"}
Run = tuple[str, str, int, dict[str, Any], dict[str, Any]]


def _runs(results: dict[str, Any]) -> list[Run]:
    """(shape, mode, sessions, Storyloop, baseline) of every latency run, spread first."""
    out = []
    for key, shape in SHAPES.items():
        latency = results.get(key)
        if not isinstance(latency, dict) or "error" in latency:
            continue
        for mode, by_n in latency.items():
            for n, pair in sorted(by_n.items(), key=lambda kv: int(kv[0])):
                out.append((shape, mode, int(n), pair["storyloop"], pair["baseline"]))
    return out


def _where(shape: str, mode: str, n: int) -> list[str]:
    return [shape, MODE_NAMES.get(mode, mode), str(n)]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


MODE_NAMES = {"socket": "Socket Mode", "http": "HTTP"}


def render(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    c = results.get("config", {})
    out = [
        f"## Storyloop benchmark ({results.get('started_at', '')})",
        "",
        f"- Machine: {m.get('nproc')} CPU ({m.get('cpu')}), {m.get('memory_gib')} GiB RAM, "
        f"Python {m.get('python')}, redis-server {m.get('redis')} (AOF everysec)",
        f"- Command: `{results.get('command')}` — took {_f(results.get('duration_s'))} s; "
        f"app at `{m.get('app_commit')}`; load average {m.get('loadavg_at_start')} at start, "
        f"{m.get('loadavg_at_end')} at end (the machine is shared: see CPU 'other' below)",
        f"- LLM: {c.get('llm_latency_s')} s to first token, "
        f"{c.get('tps') or 'instant'} tokens/s; user think time {c.get('think_s')} s; "
        f"session starts: *spread* over {c.get('ramp_s')} s, *burst* all in one instant "
        f"(run: {', '.join(c.get('shapes') or ['spread'])}); app settings: {c.get('app_env')}",
    ]
    runs = _runs(results)
    if runs:
        out += ["", "### Ack latency, ms (Storyloop vs baseline)", ""]
        rows = []
        for shape, mode, n, ours, base in runs:
            for kind in TRIGGERS:
                s, b = ours["acks"].get(kind, {}), base["acks"].get(kind, {})
                rows.append(
                    [
                        *_where(shape, mode, n),
                        kind,
                        " / ".join(_f(s.get(k)) for k in ("p50", "p95", "p99", "max")),
                        " / ".join(_f(b.get(k)) for k in ("p50", "p95", "p99", "max")),
                        " / ".join(
                            _f(_ratio(s.get(k), b.get(k)), 2) for k in ("p50", "p95", "p99")
                        ),
                        f"{_f(s.get('failed'))} / {_f(b.get('failed'))}",
                    ]
                )
        out.append(
            _table(
                [
                    "starts",
                    "mode",
                    "sessions",
                    "trigger",
                    "Storyloop p50 / p95 / p99 / max",
                    "baseline p50 / p95 / p99 / max",
                    "ratio p50 / p95 / p99",
                    "not acked (S / B)",
                ],
                rows,
            )
        )
        out += ["", "### Trigger → first visible Slack change, ms", ""]
        rows = []
        for shape, mode, n, ours, base in runs:
            for kind in (*VISIBLE, "commands+clicks", "reply"):
                s, b = ours["first_visible"].get(kind, {}), base["first_visible"].get(kind, {})
                rows.append(
                    [
                        *_where(shape, mode, n),
                        VISIBLE_LABELS[kind],
                        " / ".join(_f(s.get(k)) for k in ("p50", "p95", "p99")),
                        " / ".join(_f(b.get(k)) for k in ("p50", "p95", "p99")),
                        " / ".join(_f(_ratio(s.get(k), b.get(k)), 2) for k in ("p95", "p99")),
                    ]
                )
            ph = ours["outcome"].get("placeholder", {})
            rows.append(
                [
                    *_where(shape, mode, n),
                    "/story → story placeholder (Storyloop only)",
                    f"{_f(ph.get('p50'))} / {_f(ph.get('p95'))}",
                    "",
                    "",
                ]
            )
        out.append(
            _table(
                [
                    "starts",
                    "mode",
                    "sessions",
                    "trigger → change",
                    "Storyloop p50 / p95 / p99",
                    "baseline p50 / p95 / p99",
                    "ratio p95 / p99",
                ],
                rows,
            )
        )
        out += ["", "### Sessions, outcomes and cost", ""]
        rows = []
        for shape, mode, n, ours, base in runs:
            lv = ours.get("llm_to_visible", {})
            story = ours["outcome"].get("story", {})
            rows.append(
                [
                    *_where(shape, mode, n),
                    f"{ours['completed']}/{n} in {_f(ours['wall_s'])} s",
                    f"{base['completed']}/{n} in {_f(base['wall_s'])} s",
                    f"{_f(story.get('p50'))} / {_f(story.get('p95'))}",
                    f"{_f(lv.get('p50'))} / {_f(lv.get('p95'))} / {_f(lv.get('max'))}",
                    f"{ours['lost']['acked_without_outcome']} / {ours['duplicates']['count']}"
                    f" / {ours.get('version_gaps', {}).get('count', '-')}",
                    f"{_f(ours['app_cpu_ms_per_session'])} "
                    f"({_f(ours.get('listener_cpu_ms_per_session'))} listener) / "
                    f"{_f(base['app_cpu_ms_per_session'])}",
                    f"{_f(ours['rss_mb']['peak'])} / {_f(base['rss_mb']['peak'])}",
                    " / ".join(
                        _f(ours["cpu_s"].get(k)) for k in ("app", "bench", "llm", "redis", "other")
                    ),
                ]
            )
        out.append(
            _table(
                [
                    "starts",
                    "mode",
                    "sessions",
                    "Storyloop completed",
                    "baseline completed",
                    "/story → story v1 shown, ms p50 / p95",
                    "LLM last token → story shown, ms p50 / p95 / max",
                    "lost / duplicates / version gaps",
                    "app CPU ms per session, until idle (S (its listener) / B)",
                    "app RSS peak MB (S / B)",
                    "CPU s during Storyloop run: app / bench+emulator / LLM / redis / other",
                ],
                rows,
            )
        )
        out += ["", "### Slack Web API per session", ""]
        rows = []
        for shape, mode, n, ours, base in runs:
            pr = ours["post_rates"]
            rows.append(
                [
                    *_where(shape, mode, n),
                    ", ".join(f"{k} {_f(v)}" for k, v in ours["api"]["per_session"].items()),
                    ", ".join(f"{k} {_f(v)}" for k, v in base["api"]["per_session"].items()),
                    f"{pr['peak_1s_max']} / {_f(pr['peak_1s_p50'])}",
                    _f(pr["sustained_10s_max_per_s"], 2),
                    f"{pr['channels_over_1_per_s']} / {pr['channels_over_3_per_s']}",
                    _f(pr["workspace_updates_peak_per_min"]),
                    f"{ours['api']['rate_limited']} / {ours['api']['failed_calls']}",
                ]
            )
        out.append(
            _table(
                [
                    "starts",
                    "mode",
                    "sessions",
                    "Storyloop calls per session",
                    "baseline calls per session",
                    "posts+edits per channel, peak in 1 s (max / median)",
                    "per channel, peak 10 s average /s",
                    "channels with > 1 / > 3 in 1 s",
                    "chat.update per minute, whole workspace (peak)",
                    "429s / failed calls",
                ],
                rows,
            )
        )
        # What the calls were for: posts and edits by the kind of message they changed.
        first = next((r for r in runs if r[3].get("api_by_message")), None)
        if first is not None:
            shape, mode, n, ours, _base = first
            out += [
                "",
                f"Posts and edits per session by message ({shape}, {MODE_NAMES.get(mode, mode)},"
                f" {n} sessions; a streamed answer's chat.startStream is counted when it got its"
                " slot): " + ", ".join(f"{k} {_f(v)}" for k, v in ours["api_by_message"].items()),
            ]
    out += _render_redis(results.get("redis"))
    out += _render_rss(results.get("rss"))
    out += _render_tokens(results.get("tokens"))
    out += _render_scaleout(results.get("scaleout"))
    out += _render_stages(results.get("stages"))
    out += ["", "### Targets", ""]
    out.append(
        _table(
            ["target", "measured", "result"],
            [[t["target"], t["value"], t["status"]] for t in results.get("targets", [])],
        )
    )
    for phase in ("latency", "latency_burst", "redis", "tokens", "rss", "scaleout", "stages"):
        data = results.get(phase)
        if isinstance(data, dict) and "error" in data:
            out.append(f"\nPhase {phase} failed: {data['error']}")
    return "\n".join(out)


def _render_stages(data: Any) -> list[str]:
    """Stages 2-3: paid calls, cost and Redis bytes per session through the storyboard."""
    if not isinstance(data, dict) or "error" in data:
        return []
    seconds = data.get("seconds") or {}
    calls = data.get("slack_calls_per_session") or {}
    kinds = data.get("redis_bytes_by_kind") or {}
    return [
        "",
        "### Stages: story → reference images → storyboard → video",
        "",
        f"{data.get('completed')}/{data.get('sessions')} concurrent sessions "
        f"({data.get('script')}) in {_f(data.get('wall_s'))} s.",
        "",
        _table(
            ["figure", "per session"],
            [
                [str(cell) for cell in row]
                for row in [
                    ["images the user asked for", data.get("images_requested_per_session")],
                    [
                        "paid image calls (counted by the image emulator)",
                        data.get("image_calls_per_session"),
                    ],
                    ["images returned", data.get("images_made_per_session")],
                    [
                        "cost of the whole session (USD, from usage)",
                        data.get("cost_usd_per_session"),
                    ],
                    ["paid video jobs (one per planned clip)", data.get("video_calls_per_session")],
                    ["speech calls (the voice-over)", data.get("speech_calls_per_session")],
                    ["cost per finished video (USD)", data.get("cost_usd_per_video")],
                    [
                        "Confirm → video shown (s), by concurrent sessions",
                        ", ".join(
                            f"{k}: {v.get('confirm_to_video_s')} s"
                            for k, v in (data.get("by_sessions") or {}).items()
                        ),
                    ],
                    [
                        "Redis bytes (every key of the session, bound 64 KB)",
                        f"{data.get('redis_bytes_per_session')} "
                        f"(max {data.get('redis_bytes_max')})",
                    ],
                    [
                        "seconds: story / images v1 / storyboard v1 / Confirm → video / all",
                        " / ".join(
                            str(seconds.get(k))
                            for k in (
                                "story",
                                "images_v1",
                                "storyboard_v1",
                                "confirm_to_video",
                                "total",
                            )
                        ),
                    ],
                    ["Redis bytes by kind", ", ".join(f"{k} {v}" for k, v in kinds.items())],
                    ["Slack calls", ", ".join(f"{k} {v}" for k, v in calls.items())],
                ]
            ],
        ),
    ]


def _render_redis(data: Any) -> list[str]:
    if not isinstance(data, dict) or "error" in data:
        return []
    out = ["", "### Redis", ""]
    rows = [
        [
            name,
            _f(x["round_trips"]),
            _f(x["max_round_trips"]),
            ", ".join(x["commands"]) or "-",
            _f(x["commands_inside_script"]),
        ]
        for name, x in data["intake"].items()
    ]
    out.append(
        _table(
            [
                "intake (before the ack)",
                "round trips",
                "max of 3",
                "commands sent",
                "commands run inside the script",
            ],
            rows,
        )
    )
    b = data["bytes"]
    out += [
        "",
        f"Per session ({data['script']}; {data['completed']}/{data['sessions']} completed): "
        f"**{_f(data['round_trips_per_session'])} round trips**, "
        f"**{_f(data.get('commands_sent_per_session'))} commands sent**, "
        f"{_f(data['commands_per_session'])} commands incl. those inside scripts, "
        f"**{_f(b.get('bytes_per_session'))} bytes** (max {_f(b.get('max_bytes_per_session'))}; "
        f"{_f(b.get('keys_per_session'))} keys). Shared streams afterwards: "
        + ", ".join(
            f"{k} {_f(v['bytes'])} bytes / {v['entries']} entries"
            for k, v in data.get("shared_streams", {}).items()
        )
        + ". "
        f"An idle replica sends {_f(data['idle_commands_per_s'])} commands/s (worker polling).",
        "",
        "Per trigger (a round trip is one command or one MULTI…EXEC; one job read per trigger): "
        + "; ".join(
            f"{name} (x{_f(x.get('triggers'))}): {_f(x.get('round_trips'))} round trips, "
            f"{_f(x.get('commands_sent'))} sent, {_f(x.get('commands_run'))} run"
            for name, x in (data.get("by_trigger_per_session") or {}).items()
        ),
        "",
        "Bytes per session by kind of key: "
        + ", ".join(f"{k} {_f(v)}" for k, v in b.get("by_category", {}).items()),
        "",
        "Commands per session (INFO commandstats, incl. inside scripts and idle polling): "
        + ", ".join(f"{k} {_f(v)}" for k, v in list(data["commandstats_per_session"].items())[:14]),
    ]
    return out


def _render_rss(data: Any) -> list[str]:
    if not isinstance(data, dict) or "error" in data:
        return []
    return [
        "",
        "### App memory",
        "",
        f"RSS {_f(data['rss_mb_before'])} MB after warm-up → {_f(data['rss_mb_after'])} MB with "
        f"{_f(data['active_sessions'])} more active sessions (story shown, awaiting review): "
        f"**{_f(data['rss_mb_per_1000_sessions'])} MB per 1,000 active sessions** "
        f"(fresh process {_f(data['rss_mb_fresh'])} MB, high-water {_f(data['rss_mb_hwm'])} MB; "
        f"{_f(data['seconds'])} s to start them).",
    ]


def _render_tokens(data: Any) -> list[str]:
    if not isinstance(data, dict) or "error" in data:
        return []
    model = {r["turns"]: r for r in data["model"]}
    measured = {r["turns"]: r for r in data["measured"]}
    turns = sorted({1, 2, 5, 10, 20, 30, 50, 75, 100} | set(measured))
    rows = []
    for t in turns:
        mo, me = model.get(t, {}), measured.get(t, {})
        rows.append(
            [
                str(t),
                _f(mo.get("storyloop")),
                _f(mo.get("naive")),
                _f(me.get("storyloop")),
                _f(me.get("naive")),
            ]
        )
    flat_model = flatness(data["model"], "storyloop")
    flat_measured = flatness(data["measured"], "storyloop")
    fa = data.get("feedback_answer_prompt_tokens", {})
    return [
        "",
        "### LLM prompt tokens per regeneration",
        "",
        _table(
            [
                "feedback turns",
                "Storyloop (prompt builder)",
                "naive: whole history",
                "Storyloop (measured via app)",
                "naive (same real history)",
            ],
            rows,
        ),
        "",
        f"Largest deviation from the 20-turn value over 20-100 turns: builder "
        f"{_pct(flat_model)}, measured {_pct(flat_measured)}. Feedback-answer prompts in the "
        f"measured session: first {_f(fa.get('first'))}, max {_f(fa.get('max'))}, "
        f"last {_f(fa.get('last'))} tokens.",
    ]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _scaleout_modes(data: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Scale-out runs by worker mode (runs before worker modes existed count as "thread")."""
    modes: dict[str, list[dict[str, Any]]] = {}
    for x in data:
        modes.setdefault(str(x.get("worker_mode", "thread")), []).append(x)
    return modes


def _render_scaleout(data: Any) -> list[str]:
    if not isinstance(data, list) or not data:
        return []
    rows = []
    for mode, runs in _scaleout_modes(data).items():
        one = next((x["sessions_per_min"] for x in runs if x.get("replicas") == 1), None)
        for x in runs:
            cpu = ", ".join(f"{k} {_f(v)}" for k, v in x["cpu_s"].items())
            rows.append(
                [
                    mode,
                    str(x["replicas"]),
                    _f(x["sessions_per_min"]),
                    _f(_ratio(x["sessions_per_min"], one), 2),
                    f"{x['completed_total']}/{x['started']}",
                    str(x["lost"]["acked_without_outcome"]),
                    str(x["duplicates"]["count"]),
                    str(x["version_gaps"]["count"]),
                    _f(x["acks"]["all"].get("p99")),
                    cpu,
                ]
            )
    users, window = data[0]["users"], data[0]["window_s"]
    return [
        "",
        f"### Scale-out (Socket Mode, LLM instant, {users} users back to back for {window} s)",
        "",
        "Worker *process*: a replica is a listener and a worker process (the default); "
        "*thread*: one process, the worker on a thread (`STORYLOOP_WORKER_MODE=thread`).",
        "",
        _table(
            [
                "worker",
                "replicas",
                "completed sessions/min",
                "vs 1 replica",
                "completed / started",
                "lost",
                "duplicate messages",
                "version gaps",
                "ack p99 ms",
                "CPU s used",
            ],
            rows,
        ),
    ]


# --- targets -----------------------------------------------------------------------------------


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def targets(results: dict[str, Any]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def add(target: str, value: str, ok: bool | None) -> None:
        out.append({"target": target, "value": value, "status": _status(ok)})

    runs = _runs(results)
    for shape, mode, n, ours, base in runs:
        # Target 1 of issue 12: every ack and first-visible figure, p95 and p99, ≤ the baseline.
        ratios: list[tuple[float, str]] = []
        for section, kinds in (("acks", TRIGGERS), ("first_visible", VISIBLE)):
            for kind in kinds:
                for q in ("p95", "p99"):
                    r = _ratio(
                        ours[section].get(kind, {}).get(q), base[section].get(kind, {}).get(q)
                    )
                    if r is not None:
                        name = "ack" if section == "acks" else "first visible"
                        ratios.append((r, f"{name} {kind} {q}"))
        misses = sorted((x for x in ratios if x[0] > 1.0), reverse=True)
        worst = max(ratios, default=None)
        value = (
            "no figures"
            if worst is None
            else f"worst {_f(worst[0], 2)} ({worst[1]}); over 1.0: "
            + (", ".join(f"{what} {_f(r, 2)}" for r, what in misses) or "none")
        )
        add(
            f"acks and first visible changes, p95 and p99, ratio ≤ 1.0 — {shape}, "
            f"{MODE_NAMES.get(mode, mode)}, {n} sessions",
            value,
            None if worst is None else not misses,
        )
    for shape, mode in sorted({r[:2] for r in runs}, key=lambda x: (x[0] != "spread", x[1])):
        mine = [r[1:] for r in runs if r[:2] == (shape, mode)]
        label = f"{shape}, {MODE_NAMES.get(mode, mode)}"
        big = [r for r in mine if r[1] >= 400]
        if big:
            _mode, n, ours, _base = max(big, key=lambda r: r[1])
            acks = ours["acks"]
            worst = max((v.get("max") or 0 for v in acks.values()), default=0)
            failed = sum(v.get("failed", 0) for k, v in acks.items() if k != "all")
            add(
                f"every ack < 3 s at ≥ 400 sessions — {label} (run: {n})",
                f"max {_f(worst)} ms, {failed} not acked",
                worst < 3000 and failed == 0,
            )
            add(
                f"every session completes at ≥ 400 — {label} (run: {n})",
                f"{ours['completed']}/{n}",
                ours["completed"] == n,
            )
            bad = (
                ours["lost"]["acked_without_outcome"]
                + ours["duplicates"]["count"]
                + ours.get("version_gaps", {}).get("count", 0)
            )
            add(
                f"nothing lost at ≥ 400 (no acked trigger without outcome, no duplicate) — "
                f"{label} (run: {n})",
                f"{ours['lost']['acked_without_outcome']} lost, "
                f"{ours['duplicates']['count']} duplicates",
                bad == 0,
            )
        else:
            add(
                f"at ≥ 400 sessions: acks < 3 s, all complete, nothing lost — {label}",
                "no run",
                None,
            )

    redis = results.get("redis")
    if isinstance(redis, dict) and "intake" in redis:
        worst = max(x["max_round_trips"] for x in redis["intake"].values())
        add("≤ 3 Redis round trips per trigger at intake", f"max {worst}", worst <= 3)
        trips, sent = redis.get("round_trips_per_session"), redis.get("commands_sent_per_session")
        add(
            "≤ 100 Redis round trips per session (issue 12)",
            _f(trips),
            None if trips is None else trips <= 100,
        )
        add(
            "≤ 120 Redis commands sent per session (issue 12)",
            _f(sent),
            None if sent is None else sent <= 120,
        )
        b = redis["bytes"].get("max_bytes_per_session")
        add(
            "≤ 32 KB of Redis per session (10 feedback turns, 3 versions)",
            f"{_f(b)} bytes max ({_f((b or 0) / KB)} KB)",
            None if b is None else b <= 32 * KB,
        )
    else:
        add("≤ 3 Redis round trips per trigger at intake", "not run", None)
        add("≤ 32 KB of Redis per session", "not run", None)

    tokens = results.get("tokens")
    if isinstance(tokens, dict) and "model" in tokens:
        fm = flatness(tokens["model"], "storyloop")
        add(
            "prompt tokens per regeneration flat (±10%) from 20 to 100 turns — prompt builder",
            _pct(fm),
            None if fm is None else fm <= 0.10,
        )
        fx = flatness(tokens["measured"], "storyloop")
        add(
            "prompt tokens per regeneration flat (±10%) from 20 to 100 turns — measured via app",
            _pct(fx),
            None if fx is None else fx <= 0.10,
        )

    scale = results.get("scaleout")
    if isinstance(scale, list) and scale:
        for mode, mode_runs in _scaleout_modes(scale).items():
            by = {x["replicas"]: x for x in mode_runs}
            name = (
                f"scale-out: 2 replicas ≥ 1.5x sessions/min of one (LLM latency 0, worker {mode})"
            )
            if 1 in by and 2 in by:
                r = _ratio(by[2]["sessions_per_min"], by[1]["sessions_per_min"])
                add(
                    name,
                    f"{_f(r, 2)}x ({_f(by[2]['sessions_per_min'])} vs "
                    f"{_f(by[1]['sessions_per_min'])}/min)",
                    None if r is None else r >= 1.5,
                )
            else:
                add(name, "no 1+2 replica runs", None)
            for replicas in sorted(by):
                x = by[replicas]
                bad = x["duplicates"]["count"] + x["version_gaps"]["count"]
                add(
                    f"scale-out: {replicas} replica(s), worker {mode}, 0 duplicates"
                    + (" (target at 4)" if replicas == 4 else ""),
                    f"{x['duplicates']['count']} duplicate messages, "
                    f"{x['version_gaps']['count']} version gaps, "
                    f"{x['lost']['acked_without_outcome']} lost",
                    bad == 0,
                )
    return out
