"""The narrow async repository over Redis: sessions, history, versions, leases, delivery ledger.

Serialisation lives here (pydantic JSON, never pickle). Every session write is a compare-and-set
on the session's ``rev`` and, when a worker holds the session, on its fence token — so a stale
worker can never overwrite what a newer one committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel

from bot.pipeline.artifacts import PaidItem
from bot.pipeline.models import Session, Stage, StoryVersion, Turn
from storage import jobview, keys
from storage.connection import Client
from storage.home import involved
from storage.jobview import JobView
from storage.scripts import Scripts

VersionT = TypeVar("VersionT", bound=BaseModel)


class CommitConflict(Exception):
    """The session changed underneath us (rev mismatch) or our lease was taken over."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EagerState(StrEnum):
    RUNNING = "running"  # still running, or died / lost its lease: it may have posted
    SHOWN = "shown"  # handed over with the job's placeholder showing
    HANDED = "handed"  # handed over (finished, or stopped before posting anything)


@dataclass(frozen=True)
class HandOff:
    """What the eager lane's hand-off did: ``ours``, the lease was still the lane's (the job's
    marker says how it left the job); ``lost``, the (slot, ts) of each message the lane posted
    whose slot already had another recorded (two messages for one slot: the lane deletes its
    own)."""

    ours: bool
    lost: list[tuple[str, str]]


@dataclass
class Writes:
    """Extra writes committed atomically with a session (see ``commit.lua``)."""

    keys: list[str] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)

    def _add(self, op: str, key: str, a: str, b: str) -> None:
        self.keys.append(key)
        self.ops += [op, str(len(self.keys) + 2), a, b]  # +2: KEYS[1], KEYS[2] are fixed

    def add_version(self, session: Session, version: StoryVersion) -> Writes:
        key = keys.versions(session.team_id, session.id)
        self._add("HSET", key, str(version.number), version.model_dump_json())
        return self

    def add_turn(self, session: Session, turn: Turn) -> Writes:
        self._add("RPUSH", keys.history(session.team_id, session.id), turn.model_dump_json(), "-")
        return self

    def index_thread(self, session: Session, thread_ts: str) -> Writes:
        """Map the thread to the session, and adopt replies that arrived before the mapping."""
        key = keys.thread(session.team_id, session.channel_id, thread_ts)
        self._add("SET", key, session.id, "-")
        early = keys.early_replies(session.team_id, session.channel_id, thread_ts)
        history = keys.history(session.team_id, session.id)
        self._add("ADOPT", early, history, f"{keys.jobs_stream(session.team_id)}:{session.id}")
        return self

    def mark_done(self, job_id: str, marker: dict[str, Any]) -> Writes:
        # Read only while Slack or the queue may re-deliver the job: a day, not the session's
        # lifetime (it names the session, so it must not outlive a deletion by months).
        self._add("SET", keys.done(job_id), json.dumps(marker), str(keys.DEDUPE_TTL_S))
        return self

    def forget_llm_result(self, job_id: str, step: str) -> Writes:
        """The cached LLM answer is only needed until its result is committed."""
        self._add("HDEL", keys.llm_results(job_id), step, "-")
        return self

    def add_artifact(self, session: Session, stage: str, number: int, data: str) -> Writes:
        """A version of a later stage (image set, storyboard, video) — or of something kept the
        same way, such as a video plan (``stage="video_plan"``) — next to the story's versions."""
        key = keys.versions(session.team_id, session.id)
        self._add("HSET", key, keys.version_field(stage, number), data)
        return self

    def forget_cancel(self, session: Session) -> Writes:
        self._add("DEL", keys.cancel(session.team_id, session.id), "-", "-")
        return self

    def forget_items(self, session: Session) -> Writes:
        """The paid items of a generation are only needed until its outcome is committed."""
        self._add("DEL", keys.items(session.team_id, session.id), "-", "-")
        return self

    def touch_session(self, session: Session) -> Writes:
        """Give every key of the session the session's own expiry: a session expires as a whole,
        its configured TTL after its last activity (every commit is activity), never piece by
        piece — a version written on day one must not expire before the session it belongs to."""
        team, sid = session.team_id, session.id
        # A key an op of this commit writes gets the TTL with it (HSET, RPUSH in commit.lua).
        written = {
            self.keys[int(self.ops[i + 1]) - 3]
            for i in range(0, len(self.ops), 4)
            if self.ops[i] in ("HSET", "RPUSH")
        }
        for key in keys.session_keys(team, sid)[1:]:  # [0] is the session hash: always written
            if key not in written:
                self._add("EXPIRE", key, "-", "-")
        self._add("EXPIRE", keys.fence(team, sid), "-", "-")
        if session.thread_ts:
            self._add("EXPIRE", keys.thread(team, session.channel_id, session.thread_ts), "-", "-")
        return self

    def with_home_index(self, session: Session) -> Writes:
        """A copy that also files ``session`` in the App Home's indexes (the team's recent
        sessions, and each involved person's) and marks those people's Homes to be published
        again (``storage/home.py``). Every commit carries it, so an index can't miss a change."""
        out = Writes(list(self.keys), list(self.ops))
        team, score = session.team_id, repr(session.updated_at)
        out._add("ZADD", keys.home_recent(team), session.id, score)
        out._add("ZTRIM", keys.home_recent(team), str(keys.HOME_RECENT_MAX), "-")
        out._add("VIEWERS", keys.home_viewers(team), "-", "-")
        for user in involved(session):
            mine = keys.home_mine(team, user)
            out._add("ZADD", mine, session.id, score)
            out._add("ZTRIM", mine, str(keys.HOME_MINE_MAX), "-")
            out._add("DIRTY", keys.home_dirty(team), user, "-")
        return out


class Repository:
    def __init__(self, redis: Client, *, session_ttl_s: int) -> None:
        self.redis = redis
        self.scripts = Scripts(redis)
        self.session_ttl_s = session_ttl_s

    # --- sessions -------------------------------------------------------------------------
    async def get(self, team_id: str, session_id: str) -> Session | None:
        view = jobview.current(team_id, session_id)
        if view is not None:
            return view.session  # read with the lease; only this job has written it since
        raw = await self.redis.hget(keys.session(team_id, session_id), "data")
        return Session.model_validate_json(raw) if raw else None

    async def commit(
        self,
        old: Session | None,
        new: Session,
        *,
        fence: int | None,
        writes: Writes | None = None,
        finish: str = "",
    ) -> Session:
        """Write ``new`` if the stored rev is still ``old.rev``; returns the committed session.

        ``finish``: the job's queue entry, when this commit is the job's last step (its outcome
        is already shown): the same script acknowledges the job and gives the lease back."""
        expected = old.rev if old is not None else 0
        committed = new.model_copy(update={"rev": expected + 1})
        writes = (writes or Writes()).with_home_index(committed)
        # Delivery records a worker's job kept for its next write (``defer_records``) go with
        # this one: fenced by the lease, so nobody else records these slots meanwhile.
        view = jobview.current(new.team_id, new.id)
        records = dict(view.unflushed or {}) if view is not None and view.markers else {}
        for slot, ts in records.items():
            writes._add("HSET", keys.messages(new.team_id, new.id), slot, ts)
        writes = writes.touch_session(committed)
        if finish and fence is not None:
            stream, raw = keys.job_entry(finish)
            writes._add("FINISH", stream, keys.JOBS_GROUP, raw)
        result = await self.scripts.run(
            "commit",
            [
                keys.session(new.team_id, new.id),
                keys.lock(new.team_id, new.id),
                *writes.keys,
            ],
            [
                expected,
                "" if fence is None else str(fence),
                committed.model_dump_json(),
                self.session_ttl_s,
                len(writes.keys),
                *writes.ops,
            ],
        )
        if result == -1:
            raise CommitConflict("lease lost")
        if result == 0:
            raise CommitConflict("revision changed")
        if view is not None:
            if records:
                view.unflushed = {}
            _fold(view, committed, writes)
            view.finished = view.finished or bool(finish and fence is not None)
        return committed

    async def history(self, session: Session) -> list[Turn]:
        view = jobview.current(session.team_id, session.id)
        if view is not None and view.history is not None:
            return list(view.history)
        raw = await self.redis.lrange(keys.history(session.team_id, session.id), 0, -1)
        turns = [Turn.model_validate_json(item) for item in raw]
        if view is not None:
            view.history = list(turns)
        return turns

    async def history_length(self, session: Session) -> int:
        view = jobview.current(session.team_id, session.id)
        if view is not None and view.history is not None:
            return len(view.history)
        if view is not None and view.history_len is not None:
            return view.history_len
        return int(await self.redis.llen(keys.history(session.team_id, session.id)))

    async def _version_raw(self, session: Session, field: str) -> str | None:
        """A version's JSON: versions are written once (a new one is a new field), so the job's
        view keeps what it has read or committed."""
        view = jobview.current(session.team_id, session.id)
        if view is not None and field in view.versions:
            return view.versions[field]
        raw = await self.redis.hget(keys.versions(session.team_id, session.id), field)
        if raw and view is not None:
            view.versions[field] = str(raw)
        return str(raw) if raw else None

    async def version(self, session: Session, number: int) -> StoryVersion | None:
        raw = await self._version_raw(session, str(number))
        return StoryVersion.model_validate_json(raw) if raw else None

    async def all_versions(self, session: Session) -> list[StoryVersion]:
        raw = await self.redis.hgetall(keys.versions(session.team_id, session.id))
        found = [StoryVersion.model_validate_json(v) for v in raw.values()]
        return sorted(found, key=lambda v: v.number)

    async def artifact(
        self, session: Session, stage: str, number: int, model: type[VersionT]
    ) -> VersionT | None:
        """Version ``number`` of a later stage (or a video plan), as ``model``."""
        raw = await self._version_raw(session, keys.version_field(stage, number))
        return model.model_validate_json(raw) if raw else None

    async def artifacts(
        self, session: Session, stage: Stage, model: type[VersionT]
    ) -> list[tuple[int, VersionT]]:
        """Every version of ``stage``, oldest first."""
        raw = await self.redis.hgetall(keys.versions(session.team_id, session.id))
        prefix = f"{stage}:"
        found = [
            (int(str(field)[len(prefix) :]), model.model_validate_json(value))
            for field, value in raw.items()
            if str(field).startswith(prefix) and str(field)[len(prefix) :].isdigit()
        ]
        return sorted(found, key=lambda pair: pair[0])

    async def stage_versions(
        self, session: Session, stage: Stage, model: type[VersionT]
    ) -> list[VersionT]:
        """Every version of ``stage``, the story's too (kept under bare numbers), oldest first:
        what the Versions modal lists."""
        raw = await self.redis.hgetall(keys.versions(session.team_id, session.id))
        prefix = "" if stage is Stage.STORY else f"{stage}:"
        found = []
        for name, value in raw.items():
            field = str(name)
            number = field[len(prefix) :] if field.startswith(prefix) else ""
            if number.isdigit():
                found.append((int(number), model.model_validate_json(value)))
        return [version for _number, version in sorted(found, key=lambda pair: pair[0])]

    async def cancel_requested(self, session: Session) -> dict[str, str] | None:
        """A Cancel click recorded for the session: ``{"job": …, "user": …}``."""
        raw = await self.redis.get(keys.cancel(session.team_id, session.id))
        return dict(json.loads(raw)) if raw else None

    # --- paid items (images, clips): their state before and after each paid step ----------
    async def items(self, session: Session) -> dict[str, PaidItem]:
        view = jobview.current(session.team_id, session.id)
        if view is not None and view.items is not None:
            raw: dict[str, str] = view.items  # read with the lease; only this job writes them
        else:
            found = await self.redis.hgetall(keys.items(session.team_id, session.id))
            raw = {str(k): str(v) for k, v in found.items()}
        return {field: PaidItem.model_validate_json(value) for field, value in raw.items()}

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
        """Record an item's state; only the job holding the session's lease may. ``spend``
        (day, item id, cost): count the item's cost in its workspace's day in the same round
        trip, as ``record_spend`` does (whatever the lease: the money is spent). ``record``
        (slot, file id): the file the item was shared as, recorded in the delivery ledger with
        it (as ``record_message``: the first record wins). Returns that slot's value after the
        write ('' without ``record``)."""
        script_keys = [
            keys.lock(session.team_id, session.id),
            keys.items(session.team_id, session.id),
        ]
        args: list[Any] = [fence, field, item.model_dump_json(), self.session_ttl_s]
        if spend is not None:
            day, item_id, cost_usd = spend
            script_keys.append(keys.spend(session.team_id, day))
            args += ["spend", item_id, repr(cost_usd), keys.SPEND_TTL_S]
        elif record is not None:
            script_keys.append(keys.messages(session.team_id, session.id))
            args += ["record", *record]
        else:
            args.append("")
        done, winner = await self.scripts.run("item", script_keys, args)
        if int(done) != 1:
            raise CommitConflict("lease lost")
        view = jobview.current(session.team_id, session.id)
        if view is not None and view.items is not None:
            view.items[field] = item.model_dump_json()
        if view is not None and record is not None:
            view.ledger[record[0]] = str(winner)
        return str(winner)

    async def record_spend(self, team_id: str, day: str, item_id: str, cost_usd: float) -> float:
        """Count one paid item's cost in its workspace's day, once; returns the day's total."""
        total = await self.scripts.run(
            "spend", [keys.spend(team_id, day)], [item_id, repr(cost_usd), keys.SPEND_TTL_S]
        )
        return float(total)

    async def spent_on(self, team_id: str, day: str) -> float:
        raw = await self.redis.hget(keys.spend(team_id, day), "_total")
        return float(raw) if raw else 0.0

    async def session_for_thread(self, team_id: str, channel_id: str, thread_ts: str) -> str | None:
        sid = await self.redis.get(keys.thread(team_id, channel_id, thread_ts))
        return str(sid) if sid else None

    # --- leases ---------------------------------------------------------------------------
    async def acquire(
        self, team_id: str, session_id: str, lease_ms: int, *, job_id: str = ""
    ) -> int:
        """The new fence token, or 0 if another worker holds the session (or it is reserved
        for another job by the eager lane's handoff).

        For a job (``job_id``), the same round trip reads what the job reads next (claim.lua)
        and keeps it as the job's view for the rest of the job's task (storage/jobview.py)."""
        if not job_id:
            token = await self.scripts.run(
                "acquire",
                [
                    keys.lock(team_id, session_id),
                    keys.fence(team_id, session_id),
                    keys.session(team_id, session_id),
                ],
                [lease_ms, self.session_ttl_s, keys.DEDUPE_TTL_S, job_id],
            )
            return int(token)
        found = await self.scripts.run(
            "claim",
            [
                keys.lock(team_id, session_id),
                keys.fence(team_id, session_id),
                keys.session(team_id, session_id),
                keys.done(job_id),
                keys.eager(team_id, job_id),
                keys.tombstone(team_id, session_id),
                keys.history(team_id, session_id),
                keys.messages(team_id, session_id),
                keys.llm_results(job_id),
                keys.versions(team_id, session_id),
                keys.items(team_id, session_id),
            ],
            [lease_ms, self.session_ttl_s, keys.DEDUPE_TTL_S, job_id],
        )
        token = int(found[0])
        if token:
            jobview.begin(_view(team_id, session_id, job_id, found[1:]))
        return token

    def end_job(self) -> None:
        """The job is over: its task reads Redis again (storage/jobview.py)."""
        jobview.end()

    async def close_job(self, job_id: str) -> list[tuple[str, str]]:
        """The job stops (whatever the outcome): write the delivery records it still keeps
        (``defer_records``; a job that finished has none left), and have any still to come —
        a shielded post in flight — written at once. Returns the (slot, ts) of each whose slot
        already had another message recorded: a second message, for the caller to delete."""
        view = jobview.current_job(job_id)
        if view is None or not view.markers:
            return []
        view.closed = True
        records, view.unflushed = dict(view.unflushed or {}), None
        if not records:
            return []
        lost = await self.scripts.run(
            "finish",
            [
                keys.jobs_stream(view.team_id),  # not touched: records only (no entry id)
                keys.lock(view.team_id, view.session_id),
                keys.messages(view.team_id, view.session_id),
            ],
            ["", "", "", self.session_ttl_s, *jobview.record_args(records)],
        )
        return jobview.lost_records(records, lost)

    async def seize(self, team_id: str, session_id: str, lease_ms: int) -> int:
        """Take the lease even from a job that holds it (``/story delete``): that job is fenced
        out. Returns the new fence token."""
        token = await self.scripts.run(
            "seize",
            [
                keys.lock(team_id, session_id),
                keys.fence(team_id, session_id),
                keys.session(team_id, session_id),
            ],
            [lease_ms, self.session_ttl_s, keys.DEDUPE_TTL_S],
        )
        return int(token)

    async def holds(self, team_id: str, session_id: str, token: int) -> bool:
        """Is the lease still ours? Checked before edits a stale worker must not make."""
        return await self.redis.get(keys.lock(team_id, session_id)) == str(token)

    async def renew(self, team_id: str, session_id: str, token: int, lease_ms: int) -> bool:
        ok = await self.scripts.run("renew", [keys.lock(team_id, session_id)], [token, lease_ms])
        return bool(ok)

    async def release(self, team_id: str, session_id: str, token: int) -> None:
        await self.scripts.run("release", [keys.lock(team_id, session_id)], [token])

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
        """The eager lane gives the lease back, saying how it left the job; a job it showed the
        first change of keeps the lease reserved for its worker for ``reserve_ms``. The same
        script writes the lane's delivery-ledger records."""
        view = jobview.current(team_id, session_id)
        records = dict(view.unflushed or {}) if view is not None else {}
        ours, *lost = await self.scripts.run(
            "handoff",
            [
                keys.lock(team_id, session_id),
                keys.eager(team_id, job_id),
                keys.messages(team_id, session_id),
            ],
            [
                token,
                keys.EAGER_TTL_S,
                state.value,
                job_id,
                reserve_ms,
                self.session_ttl_s,
                *jobview.record_args(records),
            ],
        )
        if view is not None:
            view.unflushed, view.defer = None, False  # anything after goes straight to Redis
        return HandOff(bool(int(ours)), jobview.lost_records(records, lost))

    async def eager_state(self, team_id: str, job_id: str) -> EagerState | None:
        """What the eager lane did with a job; None if it never ran it."""
        view = jobview.markers_of(job_id)
        raw = view.eager if view is not None else await self.redis.get(keys.eager(team_id, job_id))
        return EagerState(raw) if raw in set(EagerState) else None

    # --- delivery ledger (placeholder-then-update) ---------------------------------------
    async def message_ts(self, session: Session, slot: str) -> str | None:
        view = jobview.current(session.team_id, session.id)
        if view is not None:
            return view.ledger.get(slot)  # read with the lease, plus what this job recorded
        raw = await self.redis.hget(keys.messages(session.team_id, session.id), slot)
        return str(raw) if raw else None

    async def note_message(self, session: Session, slot: str, value: str) -> None:
        """Overwrite a ledger entry (an upload's pending file id: a new upload replaces it)."""
        await self._ledger_put(session, slot, value, keep_first=False)

    async def record_message(self, session: Session, slot: str, ts: str) -> str:
        """Record the ts for a slot; if one was recorded first, that one wins and is returned."""
        return await self._ledger_put(session, slot, ts, keep_first=True)

    async def _ledger_put(
        self, session: Session, slot: str, value: str, *, keep_first: bool
    ) -> str:
        view = jobview.current(session.team_id, session.id)
        if (
            view is not None
            and view.defer
            and view.unflushed is not None
            and keep_first
            and not view.closed
        ):
            # Kept for one later write (first writer wins there too): the eager lane's hand-off
            # — if the lane dies before, its "running" marker has the worker look in Slack —
            # or a worker's finish — if it dies before, the job comes back and replays these
            # steps looking in Slack first (Job.recover).
            if known := view.ledger.get(slot):
                return known
            view.ledger[slot] = view.unflushed[slot] = value
            return value
        stored, *_ = await self.scripts.run(
            "hput",
            [keys.messages(session.team_id, session.id)],
            [slot, value, self.session_ttl_s, "1" if keep_first else "0"],
        )
        view = jobview.current(session.team_id, session.id)
        if view is not None:
            view.ledger[slot] = str(stored)
        return str(stored)

    def defer_records(self, job_id: str, *, on: bool) -> None:
        """While ``on``, the running job's new delivery-ledger records wait for its finish
        (``JobQueue.finish``), one round trip for all. Only for steps a retry replays with
        ``recover`` (it finds an unrecorded post by its metadata): a record lost with a crash
        costs a lookup then, never a second post."""
        view = jobview.current_job(job_id)
        if view is None or not view.markers:  # not a worker's job (the lane keeps its own)
            return
        view.defer = on
        if on and view.unflushed is None:
            view.unflushed = {}

    # --- deletion (``/story delete``, bot/jobs/deletion.py) ---------------------------------
    async def tombstone(self, team_id: str, session_id: str) -> dict[str, Any] | None:
        """What is left of a deleted session: ``{"by", "at", "job", "channel", "card_ts",
        "thread_ts"}``; None if it wasn't deleted."""
        view = jobview.current(team_id, session_id)
        if view is not None:
            return view.tombstone  # a delete seizes the lease: it fences this job out first
        raw = await self.redis.get(keys.tombstone(team_id, session_id))
        return dict(json.loads(raw)) if raw else None

    async def unindex(self, session: Session) -> None:
        """Take the session out of the workspace's indexes: its thread (replies there are no
        longer feedback) and the App Home lists; the Homes of the people involved who look at
        theirs are published again without it. Idempotent."""
        team, sid = session.team_id, session.id
        people = list(involved(session))
        pipe = self.redis.pipeline(transaction=False)
        if session.thread_ts:
            pipe.delete(keys.thread(team, session.channel_id, session.thread_ts))
        pipe.zrem(keys.home_recent(team), sid)
        for user in people:
            pipe.zrem(keys.home_mine(team, user), sid)
        pipe.zmscore(keys.home_viewers(team), people)
        *_, seen = await pipe.execute()
        viewers = [user for user, score in zip(people, seen or [], strict=False) if score]
        if viewers:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zadd(keys.home_dirty(team), dict.fromkeys(viewers, 0), lt=True)
            pipe.expire(keys.home_dirty(team), self.session_ttl_s)
            await pipe.execute()

    async def erase(self, session: Session, *, fence: int, tombstone: dict[str, Any]) -> None:
        """Delete every key of the session's data and leave its tombstone, only under the
        lease ``fence`` (else ``CommitConflict``)."""
        team, sid = session.team_id, session.id
        result = await self.scripts.run(
            "erase",
            [
                keys.lock(team, sid),
                keys.tombstone(team, sid),
                keys.fence(team, sid),
                *keys.session_keys(team, sid),
                keys.cancel(team, sid),
            ],
            [fence, json.dumps(tombstone), keys.TOMBSTONE_TTL_S],
        )
        if int(result) != 1:
            raise CommitConflict("lease lost")

    # --- finished jobs ----------------------------------------------------------------------
    async def done(self, job_id: str) -> dict[str, Any] | None:
        view = jobview.markers_of(job_id)
        if view is not None:
            return view.done
        raw = await self.redis.get(keys.done(job_id))
        return dict(json.loads(raw)) if raw else None

    async def mark_done(self, job_id: str, marker: dict[str, Any]) -> None:
        """A job that changed nothing (a refusal): remembered as long as Slack may re-deliver."""
        await self.redis.set(keys.done(job_id), json.dumps(marker), ex=keys.DEDUPE_TTL_S)
        view = jobview.current_job(job_id)
        if view is not None:
            view.done = marker

    # --- LLM results cached per job, so a crash after the LLM answered doesn't bill twice ----
    async def cached_llm(self, job_id: str, step: str) -> str | None:
        view = jobview.current_job(job_id)
        if view is not None:
            return view.llm.get(step)
        raw = await self.redis.hget(keys.llm_results(job_id), step)
        return str(raw) if raw else None

    async def cache_llm(self, job_id: str, step: str, value: str) -> list[tuple[str, str]]:
        """Keep an LLM answer until its result is committed (first value wins). The same
        round trip writes the delivery records the job kept for now (``defer_records``: a
        reply's streamed answer); returns the (slot, ts) of each whose slot already had
        another message recorded — a second message, for the caller to take back."""
        view = jobview.current_job(job_id)
        records = dict(view.unflushed or {}) if view is not None and view.markers else {}
        script_keys, extra = [keys.llm_results(job_id)], []
        if view is not None and records:
            script_keys.append(keys.messages(view.team_id, view.session_id))
            extra = [self.session_ttl_s, *jobview.record_args(records)]
        stored, *lost = await self.scripts.run(
            "hput", script_keys, [step, value, keys.LLM_CACHE_TTL_S, "1", *extra]
        )
        if view is not None:
            view.llm[step] = str(stored)
            if records:
                view.unflushed = {}
        return jobview.lost_records(records, lost)

    async def forget_llm_results(self, job_id: str) -> None:
        """Drop every LLM answer cached for ``job_id``, whatever its step.

        For a job of a deleted session (``/story delete``): a generation that was writing when
        the delete seized its session caches the LLM's answer after the erase and then can't
        commit it, so that text — the session's data — would outlive the delete by a day. Such
        a job always comes back (it was never acked) and ends on the tombstone; this runs then.
        A job's answers are one hash (``keys.llm_results``): one DEL, no SCAN.
        """
        await self.redis.delete(keys.llm_results(job_id))
        view = jobview.current_job(job_id)
        if view is not None:
            view.llm.clear()


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in zip(flat[0::2], flat[1::2], strict=True)}


def _view(team_id: str, session_id: str, job_id: str, found: list[Any]) -> JobView:
    """claim.lua's answer (after the token) as the job's view."""
    done, eager, tomb, data, history, ledger, llm, versions, items = found
    return JobView(
        team_id=team_id,
        session_id=session_id,
        job_id=job_id,
        session=Session.model_validate_json(data) if data else None,
        done=dict(json.loads(done)) if done else None,
        eager=str(eager) or None,
        tombstone=dict(json.loads(tomb)) if tomb else None,
        history=[Turn.model_validate_json(item) for item in history],
        ledger=_pairs(ledger),
        llm=_pairs(llm),
        versions=_pairs(versions),
        items=_pairs(items),
    )


def _fold(view: JobView, committed: Session, writes: Writes) -> None:
    """What a commit of this job wrote, into its view: the session, new versions, its done
    marker, dropped LLM answers; appended turns make the next history read a fresh one."""
    view.session = committed
    versions = keys.versions(committed.team_id, committed.id)
    for i in range(0, len(writes.ops), 4):
        op, index, a, b = writes.ops[i : i + 4]
        key = writes.keys[int(index) - 3]  # KEYS[1], KEYS[2] are the session and its lock
        if op == "HSET" and key == versions:
            view.versions[a] = b
        elif op in ("RPUSH", "ADOPT"):
            view.history, view.history_len = None, None
        elif op == "SET" and key == keys.done(view.job_id):
            view.done = dict(json.loads(a))
        elif op == "HDEL" and key == keys.llm_results(view.job_id):
            view.llm.pop(a, None)
        elif op == "DEL" and key == keys.items(committed.team_id, committed.id):
            view.items = {}
