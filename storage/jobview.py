"""What a job read when it took its session's lease, kept for the rest of that job.

A worker takes the lease with ``claim.lua``, which in the same round trip reads what every job
reads next: its done and eager markers, the tombstone, the session, its history, its delivery
ledger, the job's cached LLM answers, the current and approved versions and the paid items.
While the lease is ours nobody else writes the session, its ledger, its versions or its items
(every writer holds the lease, and a commit is fenced by it), so these reads stay true for the
job — except what the job itself writes,
which the repository folds in as it writes it. Reading them again would only repeat the same
answers at a round trip each.

Two things are not frozen, and are treated so:

- **History**: thread replies are appended at intake without the lease. The claim's copy is a
  snapshot like any read (a reply that lands after it is answered by its own job, exactly as
  one landing after a fresh read would be); a commit that appends turns drops the copy, so
  the next read is fresh.
- **Lease loss**: a job that loses its lease keeps a view that may go stale, but everything it
  could do with it is fenced — commits, paid-item writes and posts check the lease, and a slot
  recorded by the new owner wins ``record_message`` (the loser deletes its post).

The view lives in a context variable of the job's own task (and the tasks it starts), set by
``Repository.acquire`` for a job and cleared when the job ends; other tasks — the Home
publisher, other jobs — never see it and read Redis as before. The listener's eager lane gets
a smaller one the same way: ``intake.lua`` reads the tombstone, the history's length and the
ledger when it takes the lease for the lane, and ``Intake.submit`` sets the view in the
handler's task, from which the lane's task is started (a task inherits its creator's context).
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from bot.pipeline.models import Session, Turn


@dataclass
class JobView:
    team_id: str
    session_id: str
    job_id: str
    session: Session | None
    done: dict[str, Any] | None
    eager: str | None
    tombstone: dict[str, Any] | None
    history: list[Turn] | None
    history_len: int | None = None  # when only the length was read (the eager lane's view)
    ledger: dict[str, str] = field(default_factory=dict)
    llm: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # field → JSON (never rewritten)
    # The session's paid items (field → JSON), written only under the lease (item.lua); None:
    # not read (the eager lane's view), read them from Redis.
    items: dict[str, str] | None = None
    finished: bool = False  # the job's last commit acknowledged it and gave the lease back
    markers: bool = True  # done and eager markers were read (the eager lane's view has none)
    # Delivery-ledger records (slot → ts) kept here and written by one later round trip
    # instead of one each: the eager lane's by its hand-off (handoff.lua), a worker's by the
    # job's finish (finish.lua). None: nothing kept. ``defer``: new records are kept (else
    # written at once); on for the whole lane, for a worker only while it shows steps that a
    # retry replays looking in Slack first (bot/jobs/delivery.py).
    unflushed: dict[str, str] | None = None
    defer: bool = False
    # The job is over (``Repository.close_job``): a post still in flight — shielded, it
    # outlives a job stopped for a lost lease — records at once, and loses to a slot the new
    # owner recorded first (its message is then deleted), as if nothing had been kept back.
    closed: bool = False
    # The task that read it for others (the handler that ran the intake): not served there,
    # only in the tasks it starts — the eager lane — so the handler's own code reads Redis.
    not_in: asyncio.Task[object] | None = None

    def covers(self, team_id: str, session_id: str) -> bool:
        return self.team_id == team_id and self.session_id == session_id


_VIEW: ContextVar[JobView | None] = ContextVar("storyloop_job_view", default=None)


def _get() -> JobView | None:
    view = _VIEW.get()
    if view is None or (view.not_in is not None and view.not_in is asyncio.current_task()):
        return None
    return view


def current(team_id: str, session_id: str) -> JobView | None:
    """The running job's view, if it is of this session."""
    view = _get()
    return view if view is not None and view.covers(team_id, session_id) else None


def current_job(job_id: str) -> JobView | None:
    """The running job's view, if it is this job's."""
    view = _get()
    return view if view is not None and view.job_id == job_id else None


def markers_of(job_id: str) -> JobView | None:
    """The running job's view, if it is this job's and holds the job's done and eager markers."""
    view = current_job(job_id)
    return view if view is not None and view.markers else None


def record_args(records: dict[str, str]) -> list[str]:
    """Kept delivery records as the scripts that write them take them (``records.lua``):
    slot, ts, slot, ts, …"""
    return [x for pair in records.items() for x in pair]


def lost_records(records: dict[str, str], lost: list[Any]) -> list[tuple[str, str]]:
    """The (slot, ts) of each kept record whose slot a script found taken by another message."""
    return [(str(slot), records[str(slot)]) for slot in lost]


def begin(view: JobView) -> None:
    _VIEW.set(view)


def end() -> None:
    _VIEW.set(None)
