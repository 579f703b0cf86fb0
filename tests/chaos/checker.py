"""The promise checker: after a scripted run, every trigger has exactly one visible outcome.

A run is driven through a ``Trace``: it performs each trigger on the Slack emulator (``/story``,
a button click, a thread reply) and records what Slack knows about it (ack, response_url,
event ts) plus every fault the run injected, with timestamps. ``check()`` then reads what the
emulator recorded and what Redis holds and judges each trigger:

- acknowledged (or durably recorded although its ack was lost) → exactly one visible outcome;
- neither → at most one (it may have been recorded before the ack got lost);

and the whole workspace: no delivery slot posted twice, versions moving by one (``notice:2``,
``notice:3`` … without gaps, Redis versions 1..N), every session at rest in a consistent state,
no job left behind, no unescaped broadcast in anything the bot said.

Outcomes per trigger kind:

- ``/story`` → one session card (slot ``card``) and one story message (slot ``story``) that
  ended with review buttons, a failure with Retry, or the approved footer; or one plain-words
  failure (the ack's ephemeral, or a response_url post).
- thread reply ``ts`` → one message with slot ``reply:{ts}``; or answered together with a later
  reply (coalesced: a later user turn of the session history has its ``reply:`` message); or
  covered by a regeneration notice (``notice:N`` for a version whose feedback includes ``ts``).
- click → the effect its job committed (the job's done marker names the delivery steps:
  ``approved``, ``notice:N``, a failure with Retry, or the story itself) or one response_url
  refusal.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.jobs.stages.video import PLANS
from bot.pipeline.artifacts import (
    ImageOutcome,
    ImageSetVersion,
    StoryboardVersion,
    VideoPlan,
    VideoVersion,
)
from bot.pipeline.models import Session, Stage, Status, StoryVersion, Turn, TurnRole
from bot.pipeline.triggers import session_id_for
from bot.slack.actions import parse_button
from handlers import replies
from storage import keys
from storage.connection import Client
from tests.e2e.harness import action_ids, block_text, session_of, slot_of
from tests.emulators.slack import ResponsePost, SlackEmulator, StoredMessage

TriggerKind = Literal["command", "click", "reply"]
CLICK_KINDS = {
    "story_approve": "approve",
    "story_regenerate": "regenerate",
    "story_retry": "retry",
    "stage_redo": "redo",
    "video_confirm": "confirm",
    "video_cancel": "cancel",
}
AT_REST = (
    Status.AWAITING_REVIEW,
    Status.FAILED,
    Status.QUEUED,
    Status.AWAITING_CONFIRMATION,
    Status.CANCELLED,
    Status.DONE,
)
WORKING = (Status.STARTING, Status.GENERATING, Status.REGENERATING)


# --- the trace ---------------------------------------------------------------------------------


@dataclass
class Trigger:
    """One thing a user did, and what Slack knows about it."""

    n: int
    kind: TriggerKind
    at: float  # seconds since the trace started
    user: str
    channel: str
    session: str | None = None
    text: str = ""
    action: str | None = None  # click: story_approve / story_regenerate / story_retry
    version: int | None = None  # click: the version the button was bound to
    ts: str | None = None  # reply: the message ts
    thread_ts: str | None = None
    response_url: str | None = None
    job_id: str | None = None
    ack_ok: bool = False  # command/click: the ack reached Slack in time
    ack_text: str = ""  # command: an ephemeral given with the ack (e.g. "can't record that")
    ack_error: str | None = None

    def describe(self) -> str:
        sid = (self.session or "?")[:8]
        if self.kind == "command":
            what = f"/story {self.text!r} by {self.user} → session {sid}"
        elif self.kind == "click":
            what = f"click {self.action} v{self.version} by {self.user} on session {sid}"
        else:
            what = f"reply ts={self.ts} {self.text[:40]!r} by {self.user} in session {sid}"
        ack = "ack" if self.ack_ok else f"NO ACK ({self.ack_error})"
        if self.kind == "reply":
            ack = ""
        elif self.ack_text:
            ack += f" + ephemeral {self.ack_text[:50]!r}"
        return f"#{self.n} {what} {ack}".rstrip()


@dataclass
class Fault:
    at: float
    kind: str
    detail: str = ""


class Trace:
    """Performs triggers on the emulator and keeps the ordered log of triggers and faults."""

    def __init__(self, emu: SlackEmulator, *, seed: int | None = None) -> None:
        self.emu = emu
        self.seed = seed
        self.t0 = time.monotonic()
        self.triggers: list[Trigger] = []
        self.faults: list[Fault] = []
        self.recoveries: list[Fault] = []

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def _new(self, kind: TriggerKind, user: str, channel: str, **fields: Any) -> Trigger:
        trigger = Trigger(len(self.triggers) + 1, kind, self.now(), user, channel, **fields)
        self.triggers.append(trigger)
        return trigger

    def fault(self, kind: str, detail: str = "") -> Fault:
        fault = Fault(self.now(), kind, detail)
        self.faults.append(fault)
        return fault

    def recovery(self, kind: str, detail: str = "") -> Fault:
        """The end of an injected fault (restart, SIGCONT, Redis back): logged, not counted."""
        event = Fault(self.now(), kind, detail)
        self.recoveries.append(event)
        return event

    def _record_of(self, ack: Any) -> dict[str, Any]:
        for record in reversed(self.emu.deliveries):
            if record.result is ack:
                return record.payload
        raise AssertionError("the emulator has no delivery record for this ack")

    async def command(
        self, text: str, *, user: str = "U0ALICE", channel: str = "C0PUBLIC"
    ) -> Trigger:
        """``/story text``; the session id is derived from the command's trigger_id."""
        ack = await self.emu.slash_command(text, user=user, channel=channel)
        payload = self._record_of(ack)
        team = str(payload["team_id"])
        sid = session_id_for(team, str(payload["trigger_id"]))
        return self._new(
            "command",
            user,
            channel,
            session=sid,
            text=text,
            response_url=str(payload["response_url"]),
            job_id=f"start:{team}:{sid}",
            ack_ok=ack.ok,
            ack_text=str(ack.get("text") or ""),
            ack_error=ack.error,
        )

    async def click(
        self,
        message: StoredMessage,
        action_id: str,
        *,
        user: str = "U0ALICE",
        value: str | None = None,
    ) -> Trigger:
        """A button click on a stored message (its current blocks must have the button);
        ``value`` overrides the button's value (a stale client's click)."""
        ack = await self.emu.click(message, action_id, user=user, value=value)
        payload = self._record_of(ack)
        action = payload["actions"][0]
        value = parse_button(action.get("value"))
        team = str(payload["team"]["id"])
        sid = value.session if value else None
        kind = CLICK_KINDS.get(action_id, action_id)
        return self._new(
            "click",
            user,
            message.channel,
            session=sid,
            action=action_id,
            version=value.version if value else None,
            response_url=str(payload["response_url"]),
            job_id=f"{kind}:{team}:{sid}:{user}:{action['action_ts']}",
            ack_ok=ack.ok,
            ack_error=ack.error,
        )

    async def reply(
        self, card: StoredMessage, text: str, *, user: str = "U0BOB", deliver: bool = True
    ) -> Trigger:
        """A human reply in a session card's thread (delivered as a message event)."""
        ts = await self.emu.user_posts(
            card.channel, text, user=user, thread_ts=card.ts, deliver=deliver
        )
        return self._new(
            "reply",
            user,
            card.channel,
            session=session_of(card),
            text=text,
            ts=ts,
            thread_ts=card.ts,
            job_id=f"msg:{self.emu.team_id}:{card.channel}:{ts}",
        )

    def reply_acked(self, trigger: Trigger) -> bool:
        """Did any delivery of this reply's message event get acked (first try or retry)?"""
        return any(
            record.result.ok
            for record in self.emu.deliveries
            if record.kind == "events_api"
            and (record.payload.get("event") or {}).get("type") == "message"
            and (record.payload.get("event") or {}).get("ts") == trigger.ts
        )

    def log(self) -> list[str]:
        """Triggers and faults in time order, one line each."""
        lines = [(t.at, f"t={t.at:8.3f}  {t.describe()}") for t in self.triggers]
        lines += [(f.at, f"t={f.at:8.3f}  FAULT {f.kind} {f.detail}".rstrip()) for f in self.faults]
        lines += [
            (f.at, f"t={f.at:8.3f}  (recovered) {f.kind} {f.detail}".rstrip())
            for f in self.recoveries
        ]
        return [line for _, line in sorted(lines, key=lambda x: x[0])]

    def faults_by_kind(self) -> dict[str, int]:
        return dict(Counter(f.kind for f in self.faults))


# --- the verdict -------------------------------------------------------------------------------


@dataclass
class Finding:
    category: Literal["lost", "duplicated", "inconsistent", "unquiescent"]
    detail: str
    trigger: Trigger | None = None

    def __str__(self) -> str:
        who = f"{self.trigger.describe()}: " if self.trigger else ""
        return f"[{self.category}] {who}{self.detail}"


@dataclass
class Report:
    trace: Trace
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)  # where the sessions ended up
    images: int = 0  # images made and shown, over every session's versions

    def _of(self, category: str) -> list[Finding]:
        return [f for f in self.findings if f.category == category]

    @property
    def lost(self) -> list[Finding]:
        return self._of("lost")

    @property
    def duplicated(self) -> list[Finding]:
        return self._of("duplicated")

    @property
    def ok(self) -> bool:
        return not self.findings

    def figures(self) -> str:
        kinds = Counter(t.kind for t in self.trace.triggers)
        faults = self.trace.faults_by_kind()
        return (
            f"seed={self.trace.seed} triggers={len(self.trace.triggers)} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}) "
            f"faults={sum(faults.values())} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(faults.items())) or 'none'}) "
            f"lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"inconsistent={len(self._of('inconsistent'))} "
            f"unquiescent={len(self._of('unquiescent'))} "
            f"stages=({', '.join(f'{k} {v}' for k, v in sorted(self.stages.items()))}) "
            f"images={self.images}"
        )

    def render(self) -> str:
        lines = ["CHAOS CHECK " + ("PASSED" if self.ok else "FAILED"), self.figures()]
        if self.outcomes:
            lines.append(
                "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
            )
        lines += [str(f) for f in self.findings]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"trace (seed {self.trace.seed}):")
        lines += ["  " + line for line in self.trace.log()]
        return "\n".join(lines)

    def assert_ok(self) -> None:
        if not self.ok:
            print(self.render())
            raise AssertionError(self.render())


# --- reading the world -------------------------------------------------------------------------


@dataclass
class SessionView:
    """What Redis holds for one session, and its bot messages in Slack by slot."""

    session: Session
    versions: dict[int, StoryVersion]  # the story's
    history: list[Turn]
    slots: dict[str, list[StoredMessage]]
    images: dict[int, ImageSetVersion] = field(default_factory=dict)
    boards: dict[int, StoryboardVersion] = field(default_factory=dict)
    videos: dict[int, VideoVersion] = field(default_factory=dict)
    plans: dict[int, VideoPlan] = field(default_factory=dict)  # the video's cost plans
    # Files the emulator shows in the session's thread, and the file ids the ledger recorded.
    files: list[str] = field(default_factory=list)

    def slot(self, name: str) -> list[StoredMessage]:
        return self.slots.get(name, [])

    def review(self, stage: Stage, number: int) -> StoredMessage | None:
        """The message a later stage's version is reviewed on (a storyboard's last page)."""
        if stage in (Stage.REFERENCE_IMAGE, Stage.VIDEO):
            found = self.slot(f"{stage}:v{number}")
            return found[0] if found else None
        page = re.compile(rf"^{stage}:v{number}:p(\d+)$")
        pages = sorted(
            (slot for slot in self.slots if page.match(slot)),
            key=lambda slot: int(slot.rsplit("p", 1)[1]),
        )
        return self.slot(pages[-1])[0] if pages else None

    def stage_versions(self, stage: Stage) -> dict[int, Any]:
        if stage is Stage.REFERENCE_IMAGE:
            return dict(self.images)
        if stage is Stage.STORYBOARD:
            return dict(self.boards)
        if stage is Stage.VIDEO:
            return dict(self.videos)
        return dict(self.versions)


def _story_state(msg: StoredMessage) -> str:
    ids = action_ids(msg)
    if "story_approve" in ids:
        return "review"
    if "story_retry" in ids:
        return "failed"
    if any(str(b.get("block_id", "")).endswith("_approved") for b in msg.blocks or []):
        return "approved"
    return "working"


def _url_id(url: str | None) -> str:
    return (url or "").rstrip("/").rsplit("/", 1)[-1]


def _responses(emu: SlackEmulator, url: str | None) -> list[ResponsePost]:
    if not url:
        return []
    wanted = _url_id(url)
    return [r for r in emu.responses if r.url_id == wanted and r.status == 200]


async def _sessions(redis: Client, team: str, known: set[str]) -> dict[str, Session]:
    prefix = keys.session(team, "")
    found: dict[str, Session] = {}
    async for key in redis.scan_iter(match=f"{prefix}*", count=500):
        sid = str(key)[len(prefix) :]
        if ":" in sid:
            continue
        known.add(sid)
    for sid in known:
        raw = await redis.hget(keys.session(team, sid), "data")
        if raw:
            found[sid] = Session.model_validate_json(raw)
    return found


async def _view(
    emu: SlackEmulator, redis: Client, s: Session, slots: dict[str, list[StoredMessage]]
) -> SessionView:
    raw_versions = await redis.hgetall(keys.versions(s.team_id, s.id))
    versions = {
        int(k): StoryVersion.model_validate_json(v) for k, v in raw_versions.items() if k.isdigit()
    }
    images, boards, videos, plans = {}, {}, {}, {}
    for field_name, raw in raw_versions.items():
        stage, _, number = str(field_name).partition(":")
        if stage == Stage.REFERENCE_IMAGE and number.isdigit():
            images[int(number)] = ImageSetVersion.model_validate_json(raw)
        elif stage == Stage.STORYBOARD and number.isdigit():
            boards[int(number)] = StoryboardVersion.model_validate_json(raw)
        elif stage == Stage.VIDEO and number.isdigit():
            videos[int(number)] = VideoVersion.model_validate_json(raw)
        elif stage == PLANS and number.isdigit():
            plans[int(number)] = VideoPlan.model_validate_json(raw)
    raw_history = await redis.lrange(keys.history(s.team_id, s.id), 0, -1)
    history = [Turn.model_validate_json(item) for item in raw_history]
    files = [f.id for f in emu.files_in_thread(s.channel_id, s.thread_ts)] if s.thread_ts else []
    return SessionView(s, versions, history, slots, images, boards, videos, plans, files)


async def pending_jobs(redis: Client) -> int:
    """Jobs not yet acknowledged: entries left in the stream (acks delete them)."""
    try:
        return sum([int(await redis.xlen(stream)) for stream in keys.JOB_STREAMS])
    except Exception:
        return -1


def redeliveries_pending(emu: SlackEmulator) -> int:
    """Failed event deliveries the emulator will still retry (Slack's redelivery schedule)."""
    if not emu.redeliver_unacked:
        return 0
    limit = min(3, len(emu.retry_delays))
    attempts: dict[str, set[int]] = defaultdict(set)
    failed: list[tuple[str, int]] = []
    for record in emu.deliveries:
        if record.kind != "events_api":
            continue
        event_id = str(record.payload.get("event_id"))
        attempts[event_id].add(record.retry_attempt)
        if not record.result.ok and record.retry_attempt < limit:
            failed.append((event_id, record.retry_attempt))
    return sum(1 for event_id, attempt in failed if attempt + 1 not in attempts[event_id])


async def wait_quiescent(
    emu: SlackEmulator, redis: Client, *, timeout: float = 30.0, settle: float = 1.0
) -> bool:
    """Wait until no job is pending, no redelivery is due and Slack saw nothing new for
    ``settle`` seconds. Bounded: returns False after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: tuple[int, ...] = ()
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        snapshot = (len(emu.calls), len(emu.deliveries), len(emu.responses), len(emu.messages))
        busy = await pending_jobs(redis) != 0 or redeliveries_pending(emu) > 0
        if snapshot != last or busy:
            last = snapshot
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since >= settle:
            return True
        await asyncio.sleep(0.1)
    return False


# --- the checks --------------------------------------------------------------------------------


async def check(emu: SlackEmulator, redis: Client, trace: Trace) -> Report:
    """Judge the run: see the module docstring for the rules."""
    report = Report(trace)
    team = emu.team_id
    slots: dict[str, dict[str, list[StoredMessage]]] = defaultdict(lambda: defaultdict(list))
    for msg in emu.bot_messages():
        sid, slot = session_of(msg), slot_of(msg)
        if sid and slot:
            slots[sid][slot].append(msg)
    known = {t.session for t in trace.triggers if t.session}
    sessions = await _sessions(redis, team, known)
    views = {sid: await _view(emu, redis, s, slots[sid]) for sid, s in sessions.items()}

    pending = await pending_jobs(redis)
    if pending:
        report.findings.append(Finding("unquiescent", f"{pending} job(s) still in the stream"))

    # Slots posted twice, response_urls answered twice.
    for sid, by_slot in slots.items():
        for slot, msgs in by_slot.items():
            if len(msgs) > 1:
                report.findings.append(
                    Finding(
                        "duplicated",
                        f"slot {slot!r} of session {sid[:8]} posted {len(msgs)} times "
                        f"(ts {', '.join(m.ts for m in msgs)})",
                    )
                )
    per_url = Counter(r.url_id for r in emu.responses if r.status == 200)
    for url_id, count in per_url.items():
        if count > 1:
            report.findings.append(
                Finding("duplicated", f"response_url {url_id} answered {count} times")
            )

    for trigger in trace.triggers:
        await _check_trigger(report, emu, redis, trace, trigger, views)
    for view in views.values():
        await _check_session(report, redis, view)
        report.stages[view.session.stage.value] += 1
        report.images += sum(
            1
            for number, version in view.images.items()
            for image in version.images
            if image.outcome is ImageOutcome.MADE and image.made_in == number
        )

    broadcasts = emu.unescaped_broadcasts()
    for item in broadcasts:
        report.findings.append(
            Finding("inconsistent", f"unescaped broadcast in bot output: {item.text[:80]!r}")
        )
    return report


async def _recorded(redis: Client, team: str, trigger: Trigger) -> bool:
    return bool(trigger.job_id) and bool(
        await redis.exists(keys.dedupe(team, trigger.job_id or ""))
    )


async def _marker(redis: Client, job_id: str | None) -> dict[str, Any] | None:
    if not job_id:
        return None
    raw = await redis.get(keys.done(job_id))
    return dict(json.loads(raw)) if raw else None


async def _check_trigger(
    report: Report,
    emu: SlackEmulator,
    redis: Client,
    trace: Trace,
    t: Trigger,
    views: dict[str, SessionView],
) -> None:
    team = emu.team_id
    acked = trace.reply_acked(t) if t.kind == "reply" else t.ack_ok
    recorded = await _recorded(redis, team, t)
    view = views.get(t.session or "")
    outcomes: list[str] = []
    if t.kind == "command":
        outcomes = _command_outcomes(report, emu, t, view)
    elif t.kind == "reply":
        outcomes = _reply_outcomes(report, t, view)
    else:
        outcomes = await _click_outcomes(report, emu, redis, t, view)
    report.outcomes.update(o.split(":", 1)[0] for o in outcomes)
    must = acked or recorded
    if must and not outcomes:
        why = "acked" if acked else "recorded (its ack was lost)"
        report.findings.append(Finding("lost", f"{why} but no visible outcome", t))
    elif len(outcomes) > 1:
        report.findings.append(Finding("duplicated", f"{len(outcomes)} outcomes: {outcomes}", t))


def _command_outcomes(
    report: Report, emu: SlackEmulator, t: Trigger, view: SessionView | None
) -> list[str]:
    outcomes: list[str] = []
    # "Couldn't confirm it recorded that … if nothing appears, try again" is a status, not an
    # outcome: Redis may have run the intake after all (hung, then resumed). It counts as the
    # outcome only when nothing else appears.
    unconfirmed = t.ack_text == replies.UNAVAILABLE
    if t.ack_text and not unconfirmed:
        outcomes.append(f"ack-ephemeral:{t.ack_text[:60]}")
    outcomes += [f"response:{r.text[:60]}" for r in _responses(emu, t.response_url)]
    if view is None:
        if unconfirmed and not outcomes:
            outcomes.append(f"ack-ephemeral:{t.ack_text[:60]}")
        return outcomes
    cards, stories = view.slot("card"), view.slot("story")
    if cards:
        outcomes.append("story-card")
        if not stories:
            report.findings.append(Finding("lost", "session card posted but no story message", t))
        else:
            state = _story_state(stories[0])
            if state == "working":
                report.findings.append(
                    Finding(
                        "lost",
                        f"story message stuck at {block_text(stories[0]).splitlines()[0]!r}",
                        t,
                    )
                )
    elif stories:
        report.findings.append(Finding("inconsistent", "story message without a session card", t))
    if unconfirmed and not outcomes:
        outcomes.append(f"ack-ephemeral:{t.ack_text[:60]}")
    return outcomes


def _reply_outcomes(report: Report, t: Trigger, view: SessionView | None) -> list[str]:
    if view is None:
        return []
    direct = view.slot(f"reply:{t.ts}")
    if len(direct) > 1:
        return [f"reply:{m.ts}" for m in direct]
    if direct:
        return [f"reply:{direct[0].ts}"]
    users = [turn for turn in view.history if turn.role is TurnRole.USER]
    seen = [i for i, turn in enumerate(users) if turn.ts == t.ts]
    if len(seen) > 1:
        report.findings.append(
            Finding("duplicated", f"reply recorded {len(seen)} times in history", t)
        )
    if not seen:
        return []
    for later in users[seen[0] + 1 :]:
        if view.slot(f"reply:{later.ts}"):
            return [f"coalesced:{later.ts}"]
    # An answer committed for this reply (alone or coalesced) must be the visible outcome; only
    # a reply that never got an answer can be covered by the regeneration that took it in.
    answered = {turn.ts for turn in view.history if turn.role is TurnRole.ASSISTANT}
    if any(turn.ts in answered for turn in users[seen[0] :]):
        return []
    for number, version in sorted(view.versions.items()):
        if number >= 2 and t.ts in version.feedback_ts and view.slot(f"notice:{number}"):
            return [f"notice:{number}"]
    for stage in (Stage.REFERENCE_IMAGE, Stage.STORYBOARD):
        for number, later in sorted(view.stage_versions(stage).items()):
            if t.ts in later.feedback_ts and view.review(stage, number) is not None:
                return [f"review:{stage}:{number}"]
    for number, plan in sorted(view.plans.items()):  # "try again" on a video: a new plan
        if t.ts in plan.feedback_ts and view.slot(f"{Stage.VIDEO}:plan:{number}"):
            return [f"plan:{number}"]
    return []


async def _click_outcomes(
    report: Report, emu: SlackEmulator, redis: Client, t: Trigger, view: SessionView | None
) -> list[str]:
    answers = _responses(emu, t.response_url)
    # "Couldn't confirm it recorded that" is a status, not an outcome (as for commands): the
    # intake may have run after all; it counts only when nothing else came of the click.
    outcomes = [f"response:{r.text[:60]}" for r in answers if r.text != replies.UNAVAILABLE]
    unconfirmed = [f"response:{r.text[:60]}" for r in answers if r.text == replies.UNAVAILABLE]
    outcomes = await _click_effects(report, redis, t, view, outcomes)
    return outcomes or unconfirmed


async def _click_effects(
    report: Report, redis: Client, t: Trigger, view: SessionView | None, outcomes: list[str]
) -> list[str]:
    marker = await _marker(redis, t.job_id)
    if marker is None or view is None:
        return outcomes
    steps = [str(s) for s in marker.get("deliver") or []]
    if not steps:
        if not outcomes:
            report.findings.append(
                Finding("lost", "its job ended in a refusal that never reached the user", t)
            )
        return outcomes
    effect = None
    notices = [s for s in steps if s.startswith("notice:")]
    reviews = [s.split(":") for s in steps if s.startswith("review:")]
    approvals = [s for s in view.slots if s == "approved" or s.startswith("approved:")]
    if t.action == "story_approve" and approvals and view.session.approvals:
        # An approval goes on into the next stage's generation under the same job: its
        # notice is the click's outcome, whatever the marker of the generation lists.
        effect = "approved"
    elif "approved" in steps or any(s.startswith("approved:") for s in steps):
        effect = "approved" if approvals else None
    elif "failure" in steps or any(s.startswith("failure:") for s in steps):
        failed = view.slot(f"fail:{t.job_id}")
        stories = view.slot("story")
        if failed or (stories and _story_state(stories[0]) == "failed"):
            effect = "failure-with-retry"
    elif any(st.startswith("cancelled:") for st in steps):
        cancelled = next(st for st in steps if st.startswith("cancelled:"))
        effect = "cancelled" if view.slot(cancelled) else None
    elif any(st.startswith("plan:") for st in steps):
        plan = next(st for st in steps if st.startswith("plan:"))
        effect = "video-plan" if view.slot(f"video:{plan}") else None
    elif reviews:
        _, stage, number = reviews[0]
        found = view.review(Stage(stage), int(number))
        effect = f"review:{stage}:{number}" if found is not None else None
    elif notices:
        effect = notices[0] if view.slot(notices[0]) else None
    elif view.slot("story") and _story_state(view.slot("story")[0]) != "working":
        effect = "story"
    if effect is None:
        report.findings.append(
            Finding("lost", f"its job committed {steps} but Slack doesn't show it", t)
        )
        return outcomes
    return [*outcomes, effect]


async def _check_session(report: Report, redis: Client, view: SessionView) -> None:
    s = view.session
    sid = s.id[:8]

    def bad(detail: str) -> None:
        report.findings.append(Finding("inconsistent", f"session {sid}: {detail}"))

    story_n = s.version_of(Stage.STORY)
    numbers = sorted(view.versions)
    if numbers != list(range(1, story_n + 1)):
        bad(f"versions hash holds {numbers}, the story is at v{story_n}")
    notices = sorted(
        int(slot.split(":", 1)[1])
        for slot in view.slots
        if slot.startswith("notice:") and slot.split(":", 1)[1].isdigit()
    )
    expected = list(range(2, story_n + 1))
    if notices != expected:
        bad(f"regeneration notices {notices}, expected {expected} (one per new version)")
    for number in notices:
        text = block_text(view.slot(f"notice:{number}")[0])
        if f"v{number}" not in text:
            bad(f"notice:{number} says {text[:60]!r}")
    users = [turn.ts for turn in view.history if turn.role is TurnRole.USER]
    for ts, count in Counter(users).items():
        if count > 1:
            report.findings.append(
                Finding("duplicated", f"session {sid}: reply {ts} is {count} times in history")
            )
    answers = [turn.ts for turn in view.history if turn.role is TurnRole.ASSISTANT]
    for ts, count in Counter(answers).items():
        if count > 1:
            report.findings.append(
                Finding("duplicated", f"session {sid}: answer to {ts} stored {count} times")
            )

    story = view.slot("story")
    state = _story_state(story[0]) if story else None
    text = block_text(story[0]) if story else ""
    if s.status in WORKING:
        if s.status is Status.STARTING and s.thread_ts is None:
            marker = await _marker(redis, f"start:{s.team_id}:{s.id}")
            if marker is not None:
                report.notes.append(
                    f"session {sid} was given up before its card was posted; it stays "
                    "'starting' in Redis (invisible in Slack)"
                )
                return
        bad(f"stuck in {s.status.value} (active job {s.active_job}) with the queue at rest")
        return
    if s.status not in (*AT_REST, Status.UNPOSTABLE):
        bad(f"ended in status {s.status.value}")
    if s.status is Status.UNPOSTABLE:
        report.notes.append(f"session {sid} could not post in its channel")
        return
    if s.active_job is not None:
        bad(f"at rest ({s.status.value}) but still names active job {s.active_job}")
    if not view.slot("card"):
        bad(f"{s.status.value} but no session card in Slack")
    if s.stage is not Stage.STORY:
        _check_later_stages(view, bad)
        return
    if s.status is Status.AWAITING_REVIEW:
        if state != "review":
            bad(f"awaiting review but the story message shows {state}")
        elif f"Story v{s.version}" not in text:
            bad(f"awaiting review of v{s.version} but the story message shows {text[:60]!r}")
    elif s.status is Status.FAILED:
        if s.version == 0 and state != "failed":
            bad(f"failed before v1 but the story message shows {state}")
        if s.version > 0:
            if state != "review":
                bad(f"failed regeneration but the story message shows {state}")
            if not any(slot.startswith("fail:") for slot in view.slots):
                bad("failed regeneration with no failure message (and Retry) in the thread")
    elif s.status is Status.QUEUED:
        bad("queued but still in the story stage")


def _check_later_stages(view: SessionView, bad: Callable[[str], None]) -> None:
    """A session past its story: every approval shown once, every stage's versions in order,
    only the newest version reviewable, every image of a version in the thread once."""
    s = view.session
    story = view.slot("story")
    if not story or _story_state(story[0]) != "approved":
        bad("past the story, but the story message doesn't show it approved")
    for approval in s.approvals:
        slot = "approved" if approval.stage is Stage.STORY else f"approved:{approval.stage}"
        if len(view.slot(slot)) != 1:
            bad(f"{len(view.slot(slot))} notices for the {approval.stage} approval")
    for stage in (Stage.REFERENCE_IMAGE, Stage.STORYBOARD, Stage.VIDEO):
        versions = view.stage_versions(stage)
        current = s.version_of(stage)
        if sorted(versions) != list(range(1, current + 1)):
            bad(f"{stage} versions {sorted(versions)}, expected 1..{current}")
        for number in versions:
            review = view.review(stage, number)
            buttons = set(action_ids(review)) if review is not None else set()
            live = bool(buttons & {"story_approve", "story_regenerate"})
            should = s.stage is stage and number == s.version and s.status in AT_REST
            if review is None:
                bad(f"{stage} v{number} is committed but has no review message")
            elif live != should:
                bad(f"{stage} v{number} review buttons {'shown' if live else 'missing'}")
    for number, images in view.images.items():
        for image in images.images:
            made = image.outcome is ImageOutcome.MADE
            if made and image.file_id not in view.files:
                bad(f"image {image.spec.index} of v{number} is not in the thread")
    if len(view.files) != len(set(view.files)):
        bad("a file is shared twice in the thread")
    for number, video in view.videos.items():
        if video.file_id not in view.files:
            bad(f"video v{number} is not in the thread")
    _check_plans(view, bad)
    if s.status is Status.DONE:
        if s.stage is not Stage.COMPLETE or len(s.approvals) != 4:
            bad(f"done at {s.stage} with {len(s.approvals)} approvals")
        if len(view.slot("complete")) != 1:
            bad(f"{len(view.slot('complete'))} 'session complete' messages")
    elif s.status is Status.QUEUED:
        bad(f"queued at {s.stage}: every stage is built")
    elif s.status is Status.FAILED and not any(slot.startswith("fail:") for slot in view.slots):
        bad(f"{s.stage} failed with no failure message (and Retry) in the thread")
    elif s.status is Status.CANCELLED and not any(
        slot.startswith("cancelled:") for slot in view.slots
    ):
        bad("cancelled with no message saying so")


def _check_plans(view: SessionView, bad: Callable[[str], None]) -> None:
    """Video plans: each shown once; only the newest one, waiting, can be confirmed."""
    s = view.session
    for number in range(1, s.plan + 1):
        msgs = view.slot(f"video:plan:{number}")
        if len(msgs) != 1:
            bad(f"video plan {number} shown {len(msgs)} times")
            continue
        live = "video_confirm" in action_ids(msgs[0])
        should = number == s.plan and s.status is Status.AWAITING_CONFIRMATION
        if live != should:
            bad(f"video plan {number} confirm button {'shown' if live else 'missing'}")
