"""In-memory implementations of the job layer's ports (``bot/jobs/ports.py``), for fast tests of
the review loop: no Redis, no Slack, no HTTP.

They keep the production semantics that the flows rely on, not just the shapes:

- ``MemoryStore`` keeps Redis's data under the key names of ``storage/keys.py`` and commits like
  ``commit.lua`` (rev compare-and-set, fence check, a re-sent commit recognised, ``Writes.ops``
  interpreted op by op), fences paid items like ``item.lua``, counts spend once like
  ``spend.lua`` and takes leases like ``lease.lua``/``handoff.lua``;
- ``MemoryChat`` posts each slot once through the same ledger (the store), finds a message by
  its slot metadata when asked to ``recover``, and refuses edits of messages that don't exist;
- ``MemoryFiles`` shares a slot's file once, with the pending-file-id step of ``Uploads``;
- ``ScriptedWriter`` and ``CountingImages`` answer from scripts and count every call.

``Loop`` wires them into a ``FlowContext`` and runs jobs the way the worker does (lease, done
marker replay, release).
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from bot.config import Settings, load_settings
from bot.crashpoints import CrashPoints
from bot.jobs.context import FlowContext
from bot.jobs.delivery import deliver
from bot.jobs.flows import Flows
from bot.jobs.model import Job
from bot.llm.client import LLMError, Progress, ReplyProgress
from bot.media.images import GeneratedImage, ImageError
from bot.media.video import VideoError, VideoJob
from bot.pipeline.artifacts import PaidItem
from bot.pipeline.drafts import FeedbackAnswer, SceneDraft, StoryDraft
from bot.pipeline.models import Session, StoryVersion, Turn, Usage
from bot.pipeline.pricing import ImageUsage
from bot.pipeline.prompts import ChatMessage
from bot.pipeline.stage_drafts import (
    ImageDraft,
    ImagePlanDraft,
    ImageRedoDraft,
    ShotDraft,
    StoryboardDraft,
)
from bot.pipeline.triggers import Trigger
from bot.slack.blocks import Rendered
from bot.slack.gateway import NotPostable, SlackDeliveryError
from bot.slack.uploads import UploadRefused
from storage import keys
from storage.repository import CommitConflict, EagerState, HandOff, Writes

ModelT = TypeVar("ModelT", bound=BaseModel)
VersionT = TypeVar("VersionT", bound=BaseModel)
LEASE_MS = 30_000


class WrongType(Exception):
    """A key used as two kinds of value (Redis's WRONGTYPE): a bug in the key names."""


# --- session store ------------------------------------------------------------------------------


class MemoryStore:
    """``storage.repository.Repository`` over dicts keyed like Redis (TTLs are not kept)."""

    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        self.lists: dict[str, list[str]] = {}
        self.streams: dict[str, list[dict[str, str]]] = {}
        self.commits = 0  # commits applied (a recognised re-send doesn't count)
        self.unreachable_lease_checks = 0  # the next N ``holds`` raise, as redis-py does when down
        self.unreachable_marks = 0  # the next N ``mark_done`` raise, the same way

    # --- raw Redis-like access (also for assertions) ----------------------------------------
    def _check(self, key: str, kind: dict[str, Any]) -> None:
        for other in (self.strings, self.hashes, self.lists, self.streams):
            if other is not kind and key in other:
                raise WrongType(key)

    def hash_at(self, key: str) -> dict[str, str]:
        self._check(key, self.hashes)
        return self.hashes.setdefault(key, {})

    def list_at(self, key: str) -> list[str]:
        self._check(key, self.lists)
        return self.lists.setdefault(key, [])

    def string(self, key: str) -> str | None:
        self._check(key, self.strings)
        return self.strings.get(key)

    def set_string(self, key: str, value: str) -> None:
        self._check(key, self.strings)
        self.strings[key] = value

    def delete(self, key: str) -> None:
        for kind in (self.strings, self.hashes, self.lists, self.streams):
            kind.pop(key, None)

    def xadd(self, key: str, entry: dict[str, str]) -> None:
        self._check(key, self.streams)
        self.streams.setdefault(key, []).append(entry)

    # --- sessions ---------------------------------------------------------------------------
    async def get(self, team_id: str, session_id: str) -> Session | None:
        raw = self.hashes.get(keys.session(team_id, session_id), {}).get("data")
        return Session.model_validate_json(raw) if raw else None

    async def commit(
        self,
        old: Session | None,
        new: Session,
        *,
        fence: int | None,
        writes: Writes | None = None,
        finish: str = "",  # no queue here: the job's worker-side ending isn't modelled
    ) -> Session:
        expected = old.rev if old is not None else 0
        committed = new.model_copy(update={"rev": expected + 1})
        writes = writes or Writes()
        result = self._commit(
            keys.session(new.team_id, new.id),
            keys.lock(new.team_id, new.id),
            expected,
            "" if fence is None else str(fence),
            committed.model_dump_json(),
            writes,
        )
        if result == -1:
            raise CommitConflict("lease lost")
        if result == 0:
            raise CommitConflict("revision changed")
        return committed

    def _commit(
        self, session_key: str, lock: str, expected: int, fence: str, data: str, writes: Writes
    ) -> int:
        """``commit.lua``, step by step (an unknown op errors after the writes before it, as
        a Lua ``error_reply`` does)."""
        if fence != "" and self.string(lock) != fence:
            return -1
        current = self.hashes.get(session_key, {})
        rev = int(current.get("rev") or "0")
        if rev != expected:
            if rev == expected + 1 and current.get("data") == data:
                return 1  # a re-sent commit that already applied: nothing twice
            return 0
        stored = self.hash_at(session_key)
        stored["rev"] = str(rev + 1)
        stored["data"] = data
        self.commits += 1
        all_keys = [session_key, lock, *writes.keys]
        ops = writes.ops
        for i in range(0, len(ops), 4):
            op, index, a, b = ops[i : i + 4]
            key = all_keys[int(index) - 1]  # Lua's KEYS[index]
            if op == "HSET":
                self.hash_at(key)[a] = b
            elif op == "RPUSH":
                self.list_at(key).append(a)
            elif op == "SET":
                self.set_string(key, a)
            elif op == "XADD":
                self.xadd(key, {"id": a, "job": b})
            elif op == "DEL":
                self.delete(key)
            elif op == "HDEL":
                self.hashes.get(key, {}).pop(a, None)
            elif op == "ADOPT":
                # Replies that came before the thread was indexed join the history and queue.
                match = re.match(r"^(.*):([^:]+)$", b)
                assert match is not None, b
                stream, sid = match.group(1), match.group(2)
                for raw in self.lists.get(key, []):
                    early = json.loads(raw)
                    self.list_at(a).append(early["turn"])
                    self.xadd(stream, {"id": early["id"], "job": early["job"], "sid": sid})
                self.delete(key)
            else:
                raise ValueError(f"unknown op {op}")
        return 1

    async def history(self, session: Session) -> list[Turn]:
        raw = self.lists.get(keys.history(session.team_id, session.id), [])
        return [Turn.model_validate_json(item) for item in raw]

    async def history_length(self, session: Session) -> int:
        return len(self.lists.get(keys.history(session.team_id, session.id), []))

    async def version(self, session: Session, number: int) -> StoryVersion | None:
        raw = self.hashes.get(keys.versions(session.team_id, session.id), {}).get(str(number))
        return StoryVersion.model_validate_json(raw) if raw else None

    async def artifact(
        self, session: Session, stage: str, number: int, model: type[VersionT]
    ) -> VersionT | None:
        versions = self.hashes.get(keys.versions(session.team_id, session.id), {})
        raw = versions.get(keys.version_field(stage, number))
        return model.model_validate_json(raw) if raw else None

    # --- paid items and spend ---------------------------------------------------------------
    async def items(self, session: Session) -> dict[str, PaidItem]:
        raw = self.hashes.get(keys.items(session.team_id, session.id), {})
        return {f: PaidItem.model_validate_json(v) for f, v in raw.items()}

    async def set_item(
        self,
        session: Session,
        field: str,
        item: PaidItem,
        *,
        fence: int,
        spend: tuple[str, str, float] | None = None,
        record: tuple[str, str] | None = None,
    ) -> str:
        if spend is not None:
            await self.record_spend(session.team_id, *spend)
        if self.string(keys.lock(session.team_id, session.id)) != str(fence):
            raise CommitConflict("lease lost")
        self.hash_at(keys.items(session.team_id, session.id))[field] = item.model_dump_json()
        if record is None:
            return ""
        return await self.record_message(session, *record)

    async def record_spend(self, team_id: str, day: str, item_id: str, cost_usd: float) -> float:
        spend = self.hash_at(keys.spend(team_id, day))
        if item_id not in spend:
            spend[item_id] = repr(cost_usd)
            spend["_total"] = repr(float(spend.get("_total", "0")) + cost_usd)
        return float(spend.get("_total", "0"))

    async def spent_on(self, team_id: str, day: str) -> float:
        raw = self.hashes.get(keys.spend(team_id, day), {}).get("_total")
        return float(raw) if raw else 0.0

    # --- delivery ledger (bot.slack.gateway.MessageLedger) ----------------------------------
    async def message_ts(self, session: Session, slot: str) -> str | None:
        return self.hashes.get(keys.messages(session.team_id, session.id), {}).get(slot)

    async def cancel_requested(self, session: Session) -> dict[str, str] | None:
        raw = self.strings.get(keys.cancel(session.team_id, session.id))
        return dict(json.loads(raw)) if raw else None

    async def note_message(self, session: Session, slot: str, value: str) -> None:
        self.hash_at(keys.messages(session.team_id, session.id))[slot] = value

    async def record_message(self, session: Session, slot: str, ts: str) -> str:
        return self.hash_at(keys.messages(session.team_id, session.id)).setdefault(slot, ts)

    # --- leases (lease.lua, renew.lua, release.lua, handoff.lua) ----------------------------
    async def acquire(
        self, team_id: str, session_id: str, lease_ms: int, *, job_id: str = ""
    ) -> int:
        lock = keys.lock(team_id, session_id)
        holder = self.string(lock)
        if holder and not (job_id and holder == f"handoff:{job_id}"):
            return 0
        fence = keys.fence(team_id, session_id)
        token = int(self.string(fence) or "0") + 1
        self.set_string(fence, str(token))
        self.set_string(lock, str(token))
        return token

    async def seize(self, team_id: str, session_id: str, lease_ms: int) -> int:
        self.delete(keys.lock(team_id, session_id))
        return await self.acquire(team_id, session_id, lease_ms)

    async def holds(self, team_id: str, session_id: str, token: int) -> bool:
        if self.unreachable_lease_checks:
            self.unreachable_lease_checks -= 1
            raise ConnectionError("Redis is unreachable (scripted)")
        return self.string(keys.lock(team_id, session_id)) == str(token)

    async def renew(self, team_id: str, session_id: str, token: int, lease_ms: int) -> bool:
        return await self.holds(team_id, session_id, token)

    async def release(self, team_id: str, session_id: str, token: int) -> None:
        if await self.holds(team_id, session_id, token):
            self.delete(keys.lock(team_id, session_id))

    async def close_job(self, job_id: str) -> list[tuple[str, str]]:
        return []  # records are never kept back here (defer_records)

    def end_job(self) -> None:
        """Nothing kept per job: every read here is a dict lookup."""

    def expire_lease(self, team_id: str, session_id: str) -> None:
        """The lease ran out (its holder crashed or paused)."""
        self.delete(keys.lock(team_id, session_id))

    async def handoff(
        self,
        team_id: str,
        session_id: str,
        token: int,
        job_id: str,
        state: EagerState,
        *,
        reserve_ms: int,
    ) -> HandOff:
        # The fake writes ledger records at once (no job view): none wait for the hand-off.
        lock = keys.lock(team_id, session_id)
        if self.string(lock) != str(token):
            return HandOff(False, [])
        self.set_string(keys.eager(team_id, job_id), state.value)
        if state is EagerState.SHOWN:
            self.set_string(lock, f"handoff:{job_id}")
        else:
            self.delete(lock)
        return HandOff(True, [])

    async def eager_state(self, team_id: str, job_id: str) -> EagerState | None:
        raw = self.string(keys.eager(team_id, job_id))
        return EagerState(raw) if raw in set(EagerState) else None

    # --- deletion (erase.lua) -----------------------------------------------------------------
    async def tombstone(self, team_id: str, session_id: str) -> dict[str, Any] | None:
        raw = self.string(keys.tombstone(team_id, session_id))
        return dict(json.loads(raw)) if raw else None

    async def unindex(self, session: Session) -> None:
        if session.thread_ts:
            self.delete(keys.thread(session.team_id, session.channel_id, session.thread_ts))

    async def erase(self, session: Session, *, fence: int, tombstone: dict[str, Any]) -> None:
        team, sid = session.team_id, session.id
        if self.string(keys.lock(team, sid)) != str(fence):
            raise CommitConflict("lease lost")
        if self.string(keys.tombstone(team, sid)) is None:
            self.set_string(keys.tombstone(team, sid), json.dumps(tombstone))
        for key in [*keys.session_keys(team, sid), keys.cancel(team, sid)]:
            self.delete(key)

    # --- finished jobs and cached LLM answers -----------------------------------------------
    async def done(self, job_id: str) -> dict[str, Any] | None:
        raw = self.string(keys.done(job_id))
        return dict(json.loads(raw)) if raw else None

    async def mark_done(self, job_id: str, marker: dict[str, Any]) -> None:
        if self.unreachable_marks:
            self.unreachable_marks -= 1
            raise ConnectionError("Redis is unreachable (scripted)")
        self.set_string(keys.done(job_id), json.dumps(marker))

    def defer_records(self, job_id: str, *, on: bool) -> None:
        """Records are written at once here: an in-memory store has no round trips to save."""

    async def cached_llm(self, job_id: str, step: str) -> str | None:
        return self.hashes.get(keys.llm_results(job_id), {}).get(step)

    async def cache_llm(self, job_id: str, step: str, value: str) -> list[tuple[str, str]]:
        self.hash_at(keys.llm_results(job_id)).setdefault(step, value)  # HSETNX
        return []  # records are never kept back here (defer_records)

    async def forget_llm_results(self, job_id: str) -> None:
        self.delete(keys.llm_results(job_id))

    def cached_llm_keys(self) -> list[str]:
        """LLM answers still cached (each should go with the commit of its result)."""
        return sorted(
            f"{key}:{step}"
            for key, steps in self.hashes.items()
            if ":llm:" in key
            for step in steps
        )

    # --- intake (what intake_feedback.lua does before a Feedback job runs) ------------------
    def add_user_turn(self, session: Session, turn: Turn) -> None:
        self.list_at(keys.history(session.team_id, session.id)).append(turn.model_dump_json())


# --- chat -------------------------------------------------------------------------------------


@dataclass
class Message:
    """One message in the fake Slack: what it shows now and every version it showed."""

    channel: str
    ts: str
    thread_ts: str | None
    slot: str
    shown: list[Rendered]
    deleted: bool = False

    @property
    def now(self) -> Rendered:
        return self.shown[-1]

    @property
    def text(self) -> str:
        return block_text(self.now)

    @property
    def actions(self) -> list[str]:
        return action_ids(self.now)


@dataclass(frozen=True)
class Ephemeral:
    channel_id: str
    user_id: str
    msg: Rendered
    thread_ts: str | None
    response_url: str | None

    @property
    def text(self) -> str:
        return block_text(self.msg)


def block_text(msg: Rendered) -> str:
    """Every piece of text in a message's blocks (and its fallback text), one per line."""
    found: list[str] = [msg.text]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            text = node.get("text")
            if isinstance(text, str):
                found.append(text)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(msg.blocks)
    return "\n".join(found)


def action_ids(msg: Rendered) -> list[str]:
    """The buttons' action ids, in order (accessories and action blocks)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "button" and isinstance(node.get("action_id"), str):
                found.append(node["action_id"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(msg.blocks)
    return found


class MemoryAnswer:
    """``bot.jobs.ports.AnswerDraft`` of ``MemoryChat``: keeps the texts shown (``shown``) and
    posts the answer's one message (``post_once``: a replay finds it) when it finishes."""

    def __init__(self, chat: MemoryChat, session: Session, slot: str, *, recover: bool) -> None:
        self.chat = chat
        self.session = session
        self.slot = slot
        self.recover = recover
        self.shown: list[str] = []
        chat.answers.append(self)

    async def show(self, text: str) -> None:
        self.shown.append(text)

    async def finish(self, msg: Rendered) -> str:
        return await self.chat.post_once(
            self.session, self.slot, msg, thread_ts=self.session.thread_ts, recover=self.recover
        )


class MemoryChat:
    """``bot.slack.gateway.SlackGateway`` over a list of messages; the ledger is the store."""

    def __init__(self, ledger: MemoryStore) -> None:
        self.ledger = ledger
        self.messages: dict[str, Message] = {}  # by ts, in posting order
        self.posts: list[Message] = []
        self.updates: list[tuple[str, Rendered]] = []
        self.ephemerals: list[Ephemeral] = []
        self.deleted: list[str] = []
        self.not_postable: dict[str, str] = {}  # channel → error, e.g. "not_in_channel"
        self.answers: list[MemoryAnswer] = []  # every answer opened, in order
        self.admins: set[str] = set()  # workspace admins and owners (users.info)
        self._seq = 0

    def _ts(self) -> str:
        self._seq += 1
        return f"{1_700_000_000 + self._seq}.{self._seq:06d}"

    # --- for assertions ---------------------------------------------------------------------
    def slot(self, slot: str) -> Message | None:
        """The live message posted for ``slot`` (None if never posted)."""
        return next(
            (m for m in self.posts if m.slot == slot and not m.deleted),
            None,
        )

    def slots(self, prefix: str = "") -> list[str]:
        return [m.slot for m in self.posts if m.slot.startswith(prefix) and not m.deleted]

    # --- the port ---------------------------------------------------------------------------
    async def post_once(
        self,
        session: Session,
        slot: str,
        msg: Rendered,
        *,
        thread_ts: str | None,
        recover: bool = False,
        fresh: bool = False,
    ) -> str:
        known = None if fresh else await self.ledger.message_ts(session, slot)
        if known:
            return known
        if recover:
            found = self._find_posted(session, slot, thread_ts)
            if found:
                return await self.ledger.record_message(session, slot, found)
        if session.channel_id in self.not_postable:
            raise NotPostable(self.not_postable[session.channel_id])
        ts = self._ts()
        message = Message(session.channel_id, ts, thread_ts, slot, [msg])
        self.messages[ts] = message
        self.posts.append(message)
        winner = await self.ledger.record_message(session, slot, ts)
        if winner != ts:
            await self.delete(session, ts)
        return winner

    async def open_answer(
        self,
        session: Session,
        slot: str,
        *,
        recipient_id: str,
        after_ts: str,
        draft: Callable[[str], Rendered],
        stream: bool = True,
        recover: bool = False,
        earlier: Sequence[str] = (),
        reach: Callable[[str], None] | None = None,
    ) -> MemoryAnswer:
        """No streaming here: the text shown is kept, the answer posted once when finished."""
        return MemoryAnswer(self, session, slot, recover=recover)

    def _find_posted(self, session: Session, slot: str, thread_ts: str | None) -> str | None:
        """``conversations.replies/history include_all_metadata``: our message for ``slot``
        (Slack's metadata carries the slot; the fake keeps it on the message)."""
        for m in self.posts:
            if (
                not m.deleted
                and m.channel == session.channel_id
                and m.slot == slot
                and m.thread_ts == thread_ts
            ):
                return m.ts
        return None

    async def update(
        self, session: Session, ts: str, msg: Rendered, *, best_effort: bool = False
    ) -> None:
        found = self.messages.get(ts)
        if found is None or found.deleted or found.channel != session.channel_id:
            raise SlackDeliveryError("message_not_found")
        found.shown.append(msg)
        self.updates.append((ts, msg))

    async def sync_pages(
        self,
        session: Session,
        slot: str,
        pages: Sequence[Rendered],
        *,
        first_ts: str,
        recover: bool,
    ) -> tuple[str, ...]:
        await self.update(session, first_ts, pages[0])
        extra: list[str] = []
        for index, page in enumerate(pages[1:], start=2):
            ts = await self.post_once(
                session, f"{slot}:p{index}", page, thread_ts=session.thread_ts, recover=recover
            )
            await self.update(session, ts, page)
            extra.append(ts)
        for stale in session.extra_message_ts:
            if stale not in extra:
                await self.delete(session, stale)
        return tuple(extra)

    async def permalink(self, session: Session, ts: str) -> str | None:
        if ts not in self.messages:
            return None
        return f"https://example.slack.com/archives/{session.channel_id}/p{ts.replace('.', '')}"

    async def is_admin(self, user_id: str) -> bool:
        return user_id in self.admins

    async def delete(self, session: Session, ts: str) -> None:
        found = self.messages.get(ts)
        if found is not None and not found.deleted:
            found.deleted = True
            self.deleted.append(ts)

    async def ephemeral(
        self,
        *,
        channel_id: str,
        user_id: str,
        msg: Rendered,
        thread_ts: str | None = None,
        response_url: str | None = None,
    ) -> None:
        self.ephemerals.append(Ephemeral(channel_id, user_id, msg, thread_ts, response_url))


# --- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedFile:
    file_id: str
    channel: str
    thread_ts: str
    slot: str
    filename: str
    title: str
    data: bytes


class MemoryFiles:
    """``bot.slack.uploads.Uploads``: the file id is noted as pending before the upload is
    completed, so a replay finds a completed upload in the thread instead of sharing twice."""

    def __init__(self, ledger: MemoryStore) -> None:
        self.ledger = ledger
        self.files: list[SharedFile] = []
        self.refuse: deque[str] = deque()  # Slack errors for the next uploads
        self._seq = 0

    def refuse_next(self, error: str) -> None:
        self.refuse.append(error)

    def in_thread(self, thread_ts: str, suffix: str = "") -> list[SharedFile]:
        return [f for f in self.files if f.thread_ts == thread_ts and f.filename.endswith(suffix)]

    async def upload_once(
        self,
        session: Session,
        slot: str,
        *,
        filename: str,
        data: bytes,
        title: str,
        thread_ts: str,
        comment: str | None = None,
        record: bool = True,
    ) -> str:
        known = await self.ledger.message_ts(session, slot)
        if known:
            return known
        pending = await self.ledger.message_ts(session, f"{slot}:pending")
        if pending and any(f.file_id == pending and f.thread_ts == thread_ts for f in self.files):
            if not record:
                return pending
            return await self.ledger.record_message(session, slot, pending)
        if self.refuse:
            raise UploadRefused(self.refuse.popleft())
        self._seq += 1
        file_id = f"F{self._seq:08d}"
        await self.ledger.note_message(session, f"{slot}:pending", file_id)
        self.files.append(
            SharedFile(file_id, session.channel_id, thread_ts, slot, filename, title, data)
        )
        if not record:
            return file_id
        return await self.ledger.record_message(session, slot, file_id)

    async def fetch(self, file_id: str) -> bytes:
        found = next((f for f in self.files if f.file_id == file_id), None)
        if found is None:
            raise UploadRefused("file_not_found")
        return found.data


# --- video and speech: counted, so a test can prove nothing is spent before a confirmation --


class CountingVideo:
    """A ``VideoProvider`` that only counts: the unit tests stop before a render (the render,
    with real clips and ffmpeg, is proven end to end in tests/e2e/test_video_flow.py)."""

    supported_seconds = (4, 8, 12)
    size = "640x360"
    model = "fake-video"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def create(
        self, *, prompt: str, seconds: int, size: str, input_reference: bytes | None
    ) -> VideoJob:
        self.calls.append("create")
        raise VideoError("provider", "not in unit tests")

    async def get(self, job_id: str) -> VideoJob:
        self.calls.append("get")
        raise VideoError("not_found", "not in unit tests")

    async def download(self, job_id: str) -> bytes:
        self.calls.append("download")
        raise VideoError("not_found", "not in unit tests")

    async def delete(self, job_id: str) -> bool:
        self.calls.append("delete")
        return False

    async def recent(self, limit: int = 50) -> list[VideoJob]:
        self.calls.append("recent")
        return []


class CountingSpeech:
    def __init__(self) -> None:
        self.calls = 0

    async def speak(self, text: str) -> bytes:
        self.calls += 1
        return b"ID3"


# --- the LLM ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriterCall:
    kind: str  # "story" | "feedback" | the structured model's name
    messages: tuple[ChatMessage, ...]


def story_draft(n: int = 1, *, summary: str = "") -> StoryDraft:
    """A story of three 10-second scenes (a 30 s session's length)."""
    return StoryDraft(
        title=f"The Bottle That Came Back (take {n})",
        logline="A refillable bottle follows its owner through one sunny day.",
        narrative="Morning, the harbour, a refill, and the bottle comes home.",
        scenes=[
            SceneDraft(duration_s=10, visuals="Sunrise over the harbour.", voiceover="Every day."),
            SceneDraft(duration_s=10, visuals="Hero refills the bottle.", voiceover="Refill."),
            SceneDraft(duration_s=10, visuals="The bottle on a shelf.", voiceover="Come back."),
        ],
        summary_of_changes=summary,
    )


def image_plan(count: int = 3) -> ImagePlanDraft:
    drafts = [
        ImageDraft(name="Hero", kind="character", role="The owner.", prompt="A cheerful hero"),
        ImageDraft(name="Harbour", kind="location", role="Where it starts.", prompt="A harbour"),
        ImageDraft(name="Style frame", kind="style", role="The look.", prompt="Warm pastel look"),
        ImageDraft(name="Bottle", kind="prop", role="The product.", prompt="A steel bottle"),
    ]
    return ImagePlanDraft(images=drafts[:count], summary_of_changes="A new set.")


def image_redo() -> ImageRedoDraft:
    return ImageRedoDraft(
        name="Harbour",
        kind="location",
        role="Where it starts.",
        prompt="A harbour in bright sunlight",
        summary_of_changes="Brighter, more sunlight.",
    )


def storyboard() -> StoryboardDraft:
    return StoryboardDraft(
        shots=[
            ShotDraft(
                scene=1,
                duration_s=10,
                shot_type="Wide",
                camera="static",
                action="Sunrise over the harbour.",
                audio="Every day.",
                references=["Harbour", "Style frame"],
            ),
            ShotDraft(
                scene=2,
                duration_s=10,
                shot_type="Medium",
                camera="push-in",
                action="Hero refills the bottle.",
                references=["Hero"],
            ),
            ShotDraft(
                scene=3,
                duration_s=10,
                shot_type="Close-up",
                camera="static",
                action="The bottle on a shelf.",
                references=["unknown image"],
            ),
        ],
        summary_of_changes="A new shot list.",
    )


def feedback_answer(
    reply: str = "Got it — I'll make it brighter.",
    *,
    changes: Sequence[str] = ("Make it brighter",),
    targets: Sequence[int] = (),
    wants_regenerate: bool = False,
) -> FeedbackAnswer:
    return FeedbackAnswer(
        reply=reply,
        planned_changes=list(changes),
        targets=list(targets),
        wants_regenerate=wants_regenerate,
    )


class ScriptedWriter:
    """The LLM: answers from per-kind scripts (queued answers first, then a default), records
    every call, and raises a queued ``LLMError`` instead when told to."""

    USAGE = Usage(prompt_tokens=120, completion_tokens=80)

    def __init__(self) -> None:
        self.calls: list[WriterCall] = []
        self.stories: deque[StoryDraft] = deque()
        self.answers: deque[FeedbackAnswer] = deque()
        self.drafts: dict[type[BaseModel], deque[BaseModel]] = {}
        self.errors: deque[LLMError] = deque()
        self.defaults: dict[type[BaseModel], BaseModel] = {
            ImagePlanDraft: image_plan(),
            ImageRedoDraft: image_redo(),
            StoryboardDraft: storyboard(),
        }

    def queue(self, draft: BaseModel) -> None:
        """Answer the next structured call for ``type(draft)`` with ``draft``."""
        self.drafts.setdefault(type(draft), deque()).append(draft)

    def fail_next(self, message: str = "The story writer is busy right now.") -> None:
        self.errors.append(LLMError(message, retryable=True, detail="scripted"))

    def count(self, kind: str) -> int:
        return sum(1 for c in self.calls if c.kind == kind)

    def _call(self, kind: str, messages: Sequence[ChatMessage]) -> None:
        self.calls.append(WriterCall(kind, tuple(messages)))
        if self.errors:
            raise self.errors.popleft()

    async def write_story(
        self, messages: Sequence[ChatMessage], on_progress: Progress | None = None
    ) -> tuple[StoryDraft, Usage]:
        self._call("story", messages)
        draft = self.stories.popleft() if self.stories else story_draft(self.count("story"))
        if on_progress is not None:
            await on_progress([draft.model_dump_json()])
        return draft, self.USAGE

    async def answer_feedback(
        self, messages: Sequence[ChatMessage]
    ) -> tuple[FeedbackAnswer, Usage]:
        self._call("feedback", messages)
        return (self.answers.popleft() if self.answers else feedback_answer()), self.USAGE

    async def stream_feedback(
        self, messages: Sequence[ChatMessage], on_reply: ReplyProgress
    ) -> tuple[FeedbackAnswer, Usage]:
        """``answer_feedback`` (same script, same call record), its reply shown in halves."""
        answer, usage = await self.answer_feedback(messages)
        half = len(answer.reply) // 2
        for end in (half, len(answer.reply)):
            if end:
                await on_reply(answer.reply[:end])
        return answer, usage

    async def structured(
        self, messages: Sequence[ChatMessage], model: type[ModelT], name: str | None = None
    ) -> tuple[ModelT, Usage]:
        self._call(model.__name__, messages)
        queued = self.drafts.get(model)
        draft = queued.popleft() if queued else self.defaults[model]
        return model.model_validate(draft.model_dump()), self.USAGE


# --- images -----------------------------------------------------------------------------------


def tiny_png(rgb: tuple[int, int, int] = (255, 128, 0)) -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + bytes(rgb))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


class CountingImages:
    """``ImageMaker``: a tiny PNG per call, every call (a paid one) counted; can be told to
    fail a coming call with ``ImageError(code, message)``."""

    USAGE = ImageUsage(text_input_tokens=50, output_tokens=1000)

    def __init__(self) -> None:
        self.prompts: list[str] = []  # every call, made or failed
        self._failures: dict[int, Exception] = {}  # call number (1-based) → what it raises

    @property
    def calls(self) -> int:
        return len(self.prompts)

    def fail_next(self, code: str, message: str = "", *, after: int = 0) -> None:
        """Fail the call after ``after`` more successful ones (0: the very next call)."""
        self._failures[self.calls + after + 1] = ImageError(code, message or f"Failed: {code}.")

    def crash_next(self, *, after: int = 0) -> None:
        """The process dies while that call is out (the provider may still bill it)."""
        self._failures[self.calls + after + 1] = SimulatedCrash("during the image call")

    async def generate(self, prompt: str) -> GeneratedImage:
        self.prompts.append(prompt)
        error = self._failures.pop(self.calls, None)
        if error is not None:
            raise error
        return GeneratedImage(tiny_png(), self.USAGE)


# --- crashes ----------------------------------------------------------------------------------


class SimulatedCrash(Exception):
    """The process died at a crash point (nothing in the job layer catches this)."""


class CrashAt(CrashPoints):
    """``CrashPoints`` that raise at the named point (``point@N``: on its N-th pass) instead of
    killing the process, so a test can then run the same job again as a re-delivery."""

    def reach(self, point: str) -> None:
        if point != self.name:
            return
        self.remaining -= 1
        if self.remaining == 0:
            raise SimulatedCrash(point)


# --- wiring -----------------------------------------------------------------------------------


class Clock:
    """A deterministic clock: starts at ``start`` and moves on ``step`` seconds per reading."""

    def __init__(self, start: float = 1_767_225_600.0, step: float = 0.25) -> None:
        self.now = start  # 2026-01-01T00:00:00Z
        self.step = step

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now


def settings_for(data_dir: Path, **env: object) -> Settings:
    """Settings as ``load_settings`` builds them, with test credentials and no ``.env``."""
    return load_settings(
        _env_file=None,
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_APP_TOKEN="xapp-test",
        OPENAI_API_KEY="k",
        STORYLOOP_DATA_DIR=str(data_dir),
        **env,
    )


@dataclass
class Loop:
    """The review loop over the fakes, run the way the worker runs it."""

    store: MemoryStore
    chat: MemoryChat
    files: MemoryFiles
    writer: ScriptedWriter
    images: CountingImages
    clock: Clock
    ctx: FlowContext
    flows: Flows
    jobs: list[Job] = field(default_factory=list)

    async def run(self, trigger: Trigger, *, deliveries: int = 1, entry_id: str = "1-0") -> Job:
        """One delivery of ``trigger``'s job: take the session's lease (a new fence token), replay
        the job's done marker if it has one (else run the flow), then give the lease back — as
        ``Worker._process`` does. A ``SimulatedCrash`` propagates; the lease is gone after it
        (it would run out)."""
        team, sid = trigger.team_id, trigger.session_id
        fence = await self.store.acquire(team, sid, LEASE_MS, job_id=trigger.job_id)
        assert fence, f"session {sid} is leased by another job"
        job = Job(trigger.job_id, trigger, entry_id, deliveries, fence)
        self.jobs.append(job)
        try:
            marker = await self.store.done(job.id)
            if marker is not None:
                steps = [str(step) for step in marker.get("deliver") or []]
                s = await self.store.get(team, sid)
                if steps and s is not None:
                    await deliver(self.ctx, job, s, steps)
            else:
                await self.flows.run(job)
        except SimulatedCrash:
            self.store.expire_lease(team, sid)
            raise
        finally:
            await self.store.release(team, sid, fence)
        return job


def build_loop(tmp_path: Path, *, crash: CrashPoints | None = None, **env: object) -> Loop:
    """Fakes and a ``FlowContext`` over them (``env``: settings, e.g.
    ``STORYLOOP_DAILY_SPEND_LIMIT_USD=1``)."""
    store = MemoryStore()
    chat = MemoryChat(store)
    files = MemoryFiles(store)
    writer = ScriptedWriter()
    images = CountingImages()
    clock = Clock()
    ctx = FlowContext(
        settings=settings_for(tmp_path / "data", **env),
        repo=store,
        gateway=chat,
        llm=writer,
        crash=crash or CrashPoints(None),
        images=images,
        uploads=files,
        spool=tmp_path / "spool",
        video=CountingVideo(),
        speech=CountingSpeech(),
        clock=clock,
    )
    return Loop(store, chat, files, writer, images, clock, ctx, Flows(ctx))
