"""The load generator: scripted sessions driven through the Slack emulator like real users.

A Storyloop session: ``/story`` → wait for the story with its buttons → thread replies (waiting
for each answer) → Regenerate → wait for ``notice:2`` → Approve → wait for ``approved``. The
baseline session sends the same triggers and waits for the baseline's one post per trigger.

Every session has its own channel and user, so per-channel figures are per-session figures.
Every wait is bounded by the phase deadline; a session that runs out of time is reported as
incomplete (with the step it was waiting for), never left hanging.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.observe import BenchEmulator, Change
from tests.emulators.slack import AckResult

Kind = Literal["command", "click", "reply"]

FEEDBACK = (
    "make the opening warmer, with a family at the breakfast table",
    "mention the refill feature in the voice-over of scene 2",
    "shorter voice-over lines please, the pace feels rushed",
    "end on the logo with the tagline instead of the product shot",
    "add a quick beat where the bottle survives a fall",
    "the narrator should sound calm, not salesy",
    "show the bottle at the gym and at the office",
    "swap the dawn shot for a city rooftop at sunset",
    "less talk about plastic, more about taste",
    "give the kid in scene 3 a line of dialogue",
)


def channel_for(index: int) -> str:
    return f"C0B{index:06d}"


def user_for(index: int) -> str:
    return f"U0B{index:06d}"


def prompt_for(index: int) -> str:
    return f"30s bench-s{index:06d} eco water bottle launch for busy commuters"


@dataclass
class Step:
    """One trigger: when it was sent, its ack, and when its outcome became visible."""

    kind: Kind
    name: str
    sent: float
    ack_s: float | None = None
    ack_ok: bool = False
    first_visible_s: float | None = None  # first change users could see after the trigger
    done_s: float | None = None  # the outcome the session waits for


@dataclass
class SessionResult:
    index: int
    channel: str
    app: str  # "storyloop" | "baseline"
    started: float
    finished: float | None = None
    steps: list[Step] = field(default_factory=list)
    failed_at: str | None = None  # what it was waiting for when it gave up
    session_id: str | None = None
    story_ts: str | None = None
    card_ts: str | None = None
    placeholder_s: float | None = None  # /story → story placeholder visible
    visible: dict[int, float] = field(default_factory=dict)  # version → shown with buttons

    @property
    def completed(self) -> bool:
        return self.finished is not None and self.failed_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "channel": self.channel,
            "completed": self.completed,
            "failed_at": self.failed_at,
            "duration_s": None if self.finished is None else self.finished - self.started,
            "steps": [s.__dict__ for s in self.steps],
        }


#: How long one trigger may wait for its outcome before the session is reported incomplete.
STEP_TIMEOUT_S = 240.0


class _Deadline:
    def __init__(self, at: float, step_s: float = STEP_TIMEOUT_S) -> None:
        self.at = at
        self.step_s = step_s

    def left(self, since: float | None = None) -> float:
        """Time left for a wait that started (its trigger was sent) at ``since``."""
        end = self.at if since is None else min(self.at, since + self.step_s)
        return max(0.0, end - time.monotonic())


# --- one trigger at a time -------------------------------------------------------------------


async def _command(
    emu: BenchEmulator, r: SessionResult, text: str, user: str
) -> tuple[Step, AckResult]:
    step = Step("command", "story", time.monotonic())
    r.steps.append(step)
    ack = await emu.slash_command(text, user=user, channel=r.channel)
    _acked(step, ack)
    return step, ack


async def _reply(emu: BenchEmulator, r: SessionResult, thread_ts: str, text: str, user: str) -> str:
    step = Step("reply", f"reply{sum(s.kind == 'reply' for s in r.steps) + 1}", time.monotonic())
    r.steps.append(step)
    ts = await emu.user_posts(r.channel, text, user=user, thread_ts=thread_ts)
    ack = emu.message_acks.get((r.channel, ts))
    if ack is not None:
        _acked(step, ack)
    return ts


async def _click(
    emu: BenchEmulator, r: SessionResult, change: Change, action: str, user: str
) -> Step:
    name = action.removeprefix("story_")
    step = Step("click", name, time.monotonic())
    r.steps.append(step)
    assert change.message is not None
    ack = await emu.click(change.message, action, user=user)
    _acked(step, ack)
    return step


def _acked(step: Step, ack: AckResult) -> None:
    step.ack_s, step.ack_ok = ack.seconds, ack.ok


def _seen(step: Step, change: Change | None, *, first: bool = True, done: bool = True) -> bool:
    if change is None:
        return False
    if first and step.first_visible_s is None:
        step.first_visible_s = change.at - step.sent
    if done:
        step.done_s = change.at - step.sent
    return True


# --- Storyloop ---------------------------------------------------------------------------------

Op = tuple[str, str]  # ("reply", text) | ("regenerate", "") | ("approve", "")


def default_script(replies: int = 3, regenerations: int = 1, approve: bool = True) -> list[Op]:
    ops: list[Op] = [("reply", FEEDBACK[k % len(FEEDBACK)]) for k in range(replies)]
    ops += [("regenerate", "")] * regenerations
    if approve:
        ops.append(("approve", ""))
    return ops


async def _expect(
    emu: BenchEmulator,
    r: SessionResult,
    since: float,
    predicate: Callable[[Change], bool],
    what: str,
    dl: _Deadline,
) -> Change | None:
    """Wait for ``predicate`` in the session's channel; a refusal shown to the user (an
    ephemeral) or the deadline ends the session, with ``failed_at`` saying what was missing."""
    change = await emu.wait_change(
        r.channel, lambda c: c.is_ephemeral or predicate(c), after=since, timeout=dl.left(since)
    )
    if change is None:
        late = time.monotonic() - since >= dl.step_s - 0.5
        r.failed_at = f"{what} (nothing after {dl.step_s:.0f} s)" if late else what
        return None
    if change.is_ephemeral:
        r.failed_at = f"{what}: refused ({change.text[:80]})"
        return None
    return change


def _refused_command(step: Step, ack: AckResult, r: SessionResult) -> bool:
    """``/story`` answers with text only to refuse (e.g. storage unreachable)."""
    if ack.ok and (ack.get("text") or ack.get("blocks")):
        r.failed_at = f"story refused at ack ({str(ack.get('text'))[:80]})"
        return True
    if not ack.ok:
        r.failed_at = "story ack"
        return True
    return False


async def storyloop_session(
    emu: BenchEmulator,
    index: int,
    deadline: float,
    script: Sequence[Op] | None = None,
    think_s: float = 0.0,
    step_timeout_s: float = STEP_TIMEOUT_S,
) -> SessionResult:
    """Drive one Storyloop session through ``script`` (default: 3 replies, Regenerate, Approve).

    ``think_s``: a pause before each trigger after ``/story``, as a person reads and types.
    """
    ops = default_script() if script is None else list(script)
    channel, user = channel_for(index), user_for(index)
    emu.ensure_channel(channel)
    r = SessionResult(index, channel, "storyloop", time.monotonic())
    dl = _Deadline(deadline, step_timeout_s)

    step, ack = await _command(emu, r, prompt_for(index), user)
    if _refused_command(step, ack, r):
        return r
    card = await _expect(
        emu, r, step.sent, lambda c: c.is_post and c.slot == "card", "session card", dl
    )
    if card is None or card.message is None:
        return r
    _seen(step, card, done=False)
    r.card_ts = card.ts
    payload = (card.message.metadata or {}).get("event_payload") or {}
    r.session_id = str(payload.get("session") or "") or None
    placeholder = await _expect(
        emu, r, step.sent, lambda c: c.is_post and c.slot == "story", "story placeholder", dl
    )
    if placeholder is None:
        return r
    r.placeholder_s = placeholder.at - step.sent
    r.story_ts = story_ts = placeholder.ts
    story = await _expect(
        emu,
        r,
        step.sent,
        lambda c: c.ts == story_ts and "story_approve" in c.actions,
        "story v1",
        dl,
    )
    if story is None:
        return r
    _seen(step, story)
    r.visible[1] = story.at
    version = 1

    for op, text in ops:
        if think_s > 0:
            await asyncio.sleep(think_s)
        if op == "reply":
            ts = await _reply(emu, r, card.ts, text, user)
            step = r.steps[-1]
            if not step.ack_ok:
                r.failed_at = f"{step.name} ack"
                return r
            slot = f"reply:{ts}"
            answer = await _expect(
                emu,
                r,
                step.sent,
                lambda c, slot=slot: c.is_post and c.slot == slot,  # type: ignore[misc]
                f"answer to {step.name}",
                dl,
            )
            if answer is None:
                return r
            _seen(step, answer)
        elif op == "regenerate":
            step = await _click(emu, r, story, "story_regenerate", user)
            if not step.ack_ok:
                r.failed_at = "regenerate ack"
                return r
            version += 1
            first = await _expect(
                emu,
                r,
                step.sent,
                lambda c: c.ts == story_ts and c.regenerating,
                '"Regenerating…"',
                dl,
            )
            if first is None:
                return r
            _seen(step, first, done=False)
            notice_slot = f"notice:{version}"
            notice = await _expect(
                emu,
                r,
                step.sent,
                lambda c, slot=notice_slot: c.is_post and c.slot == slot,  # type: ignore[misc]
                notice_slot,
                dl,
            )
            if notice is None:
                return r
            _seen(step, notice, first=False)
            shown = await _expect(
                emu,
                r,
                step.sent,
                lambda c, v=version: (  # type: ignore[misc]
                    c.ts == story_ts and c.version == v and "story_approve" in c.actions
                ),
                f"story v{version}",
                dl,
            )
            if shown is None:
                return r
            r.visible[version] = shown.at
            story = shown
        elif op == "approve":
            step = await _click(emu, r, story, "story_approve", user)
            if not step.ack_ok:
                r.failed_at = "approve ack"
                return r
            first = await _expect(emu, r, step.sent, lambda c: True, "approval shown", dl)
            if first is None:
                return r
            _seen(step, first, done=False)
            approved = await _expect(
                emu,
                r,
                step.sent,
                lambda c: c.is_post and c.slot == "approved",
                "approved notice",
                dl,
            )
            if approved is None:
                return r
            _seen(step, approved, first=False)
    r.finished = time.monotonic()
    return r


# --- the baseline ------------------------------------------------------------------------------


async def baseline_session(
    emu: BenchEmulator,
    index: int,
    deadline: float,
    script: Sequence[Op] | None = None,
    think_s: float = 0.0,
    step_timeout_s: float = STEP_TIMEOUT_S,
) -> SessionResult:
    """The same triggers against the bare Bolt app; each waits for its one post."""
    ops = default_script() if script is None else list(script)
    channel, user = channel_for(index), user_for(index)
    emu.ensure_channel(channel)
    r = SessionResult(index, channel, "baseline", time.monotonic())
    dl = _Deadline(deadline, step_timeout_s)

    step, ack = await _command(emu, r, prompt_for(index), user)
    if _refused_command(step, ack, r):
        return r
    card = await _expect(
        emu, r, step.sent, lambda c: c.is_post and c.slot == "card", "post for /story", dl
    )
    if card is None:
        return r
    _seen(step, card)
    r.card_ts = card.ts
    for op, text in ops:
        if think_s > 0:
            await asyncio.sleep(think_s)
        if op == "reply":
            ts = await _reply(emu, r, card.ts, text, user)
            step = r.steps[-1]
            slot = f"reply:{ts}"
        else:
            step = await _click(emu, r, card, f"story_{op}", user)
            slot = "approved" if op == "approve" else "regenerated"
        if not step.ack_ok:
            r.failed_at = f"{step.name} ack"
            return r
        post = await _expect(
            emu,
            r,
            step.sent,
            lambda c, slot=slot: c.is_post and c.slot == slot,  # type: ignore[misc]
            f"post for {step.name}",
            dl,
        )
        if post is None:
            return r
        _seen(step, post)
    r.finished = time.monotonic()
    return r


# --- running many --------------------------------------------------------------------------------

SessionFn = Callable[[BenchEmulator, int, float], Awaitable[SessionResult]]


async def _guarded(fn: SessionFn, emu: BenchEmulator, index: int, deadline: float) -> SessionResult:
    """A session that can't hang past its deadline or take the phase down with an exception."""
    try:
        return await asyncio.wait_for(fn(emu, index, deadline), deadline - time.monotonic() + 10)
    except Exception as exc:  # reported as an incomplete session
        r = SessionResult(index, channel_for(index), "?", time.monotonic())
        r.failed_at = f"error: {type(exc).__name__}: {str(exc)[:200]}"
        return r


async def run_concurrent(
    emu: BenchEmulator,
    fn: SessionFn,
    count: int,
    *,
    timeout: float,
    ramp_s: float = 1.0,
    first_index: int = 0,
) -> list[SessionResult]:
    """``count`` sessions at once, their starts spread evenly over ``ramp_s`` seconds."""
    deadline = time.monotonic() + timeout
    for i in range(count):
        emu.ensure_channel(channel_for(first_index + i))

    async def one(i: int) -> SessionResult:
        if ramp_s > 0 and count > 1:
            await asyncio.sleep(ramp_s * i / count)
        return await _guarded(fn, emu, first_index + i, deadline)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def run_closed_loop(
    emu: BenchEmulator,
    fn: SessionFn,
    users: int,
    *,
    duration_s: float,
    grace_s: float,
) -> tuple[list[SessionResult], float, float]:
    """``users`` users each running sessions back to back for ``duration_s``.

    Returns every session (including those still running at the end, which get ``grace_s``
    to finish) and the measurement window (start, end).
    """
    start = time.monotonic()
    stop_at = start + duration_s
    results: list[SessionResult] = []
    rng = random.Random(7)

    async def user(u: int) -> None:
        await asyncio.sleep(rng.random() * min(1.0, duration_s / 10))
        k = 0
        while time.monotonic() < stop_at:
            index = 100_000 + u * 1_000 + k
            results.append(await _guarded(fn, emu, index, stop_at + grace_s))
            k += 1

    await asyncio.gather(*(user(u) for u in range(users)))
    return results, start, stop_at
