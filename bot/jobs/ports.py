"""The small ports the review loop talks to: session store, chat, writer (LLM), images, files.

``bot/jobs`` (flows, generation, delivery, stages) reaches the outside world only through the
``FlowContext`` fields typed here, never through Redis, the Slack Web API or an HTTP client
directly. Each port lists exactly the calls the job layer makes today, with the signatures of the
production implementation (``Repository``, ``SlackGateway``, ``LLMClient``, ``ImageClient``,
``Uploads``), so ``mypy --strict`` proves the concrete ones satisfy them where ``bot/app.py``
builds the context. Keeping them small is what lets the review loop have fast unit tests with
in-memory fakes (``tests/unit/fakes.py``) besides the end-to-end ones: a fake only has to honour
these few calls — and their semantics, which the docstrings state — to run the real flows.

A call added to the job layer belongs here first; a fake that doesn't implement it then fails the
unit tests' type check instead of the flows failing at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from bot.llm.client import Progress, ReplyProgress
from bot.media.images import ImageMaker  # already a port: reused, not repeated
from bot.pipeline.artifacts import PaidItem
from bot.pipeline.drafts import FeedbackAnswer, StoryDraft
from bot.pipeline.models import Session, StoryVersion, Turn, Usage
from bot.pipeline.prompts import ChatMessage
from bot.slack.blocks import Rendered
from storage.repository import EagerState, HandOff, Writes

__all__ = [
    "AnswerDraft",
    "Chat",
    "FileSharer",
    "ImageMaker",
    "JobStore",
    "Leases",
    "SessionStore",
    "Writer",
]

VersionT = TypeVar("VersionT", bound=BaseModel)
ModelT = TypeVar("ModelT", bound=BaseModel)


class SessionStore(Protocol):
    """Sessions and what belongs to them, as the flows and stages read and write them.

    Every session write is a compare-and-set: ``commit`` writes ``new`` only if the stored
    ``rev`` is still ``old.rev`` (0 for a new session) and, with a ``fence``, only while the
    session's lease holds that token; the ``Writes`` (a version, a turn, the thread index, the
    job's done marker, forgetting items or cached LLM answers) apply in the same atomic step or
    not at all. A lost lease or a changed rev raises ``storage.repository.CommitConflict``.
    Paid items are fenced the same way (``set_item``). This is what makes a stale worker
    harmless, so a fake must keep these rules, not just store values.
    """

    # --- sessions and their history -------------------------------------------------------
    async def get(self, team_id: str, session_id: str) -> Session | None: ...

    async def commit(
        self,
        old: Session | None,
        new: Session,
        *,
        fence: int | None,
        writes: Writes | None = None,
        finish: str = "",
    ) -> Session:
        """Write ``new`` (rev = old rev + 1) and ``writes`` atomically; returns what was
        committed. ``finish``: the job's queue entry when this commit is its last step — the
        store may acknowledge the job and give its lease back in the same write."""
        ...

    async def history(self, session: Session) -> list[Turn]: ...

    async def history_length(self, session: Session) -> int: ...

    # --- versions: the story's, and later stages' artifacts -------------------------------
    async def version(self, session: Session, number: int) -> StoryVersion | None: ...

    async def artifact(
        self, session: Session, stage: str, number: int, model: type[VersionT]
    ) -> VersionT | None: ...

    # --- paid items and the workspace's daily spending ------------------------------------
    async def items(self, session: Session) -> dict[str, PaidItem]: ...

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
        """Record a paid item's state before its next step, only under the lease ``fence``;
        with ``spend`` (day, item id, cost) also count its cost as ``record_spend`` does —
        first, and even when the lease is lost; with ``record`` (slot, file id) also record
        the file it was shared as, as ``record_message`` does (one write for both). Returns
        the slot's value after the write ('' without ``record``)."""
        ...

    async def record_spend(self, team_id: str, day: str, item_id: str, cost_usd: float) -> float:
        """Count ``item_id``'s cost in the day once (a replay adds nothing); the day's total."""
        ...

    async def spent_on(self, team_id: str, day: str) -> float: ...

    # --- the delivery ledger, the lease, finished jobs, cached LLM answers ----------------
    async def message_ts(self, session: Session, slot: str) -> str | None:
        """The ts (or file id) recorded for a delivery slot; what ``Chat``/``FileSharer``
        record when they post."""
        ...

    async def record_message(self, session: Session, slot: str, ts: str) -> str:
        """Record a slot's ts (or file id) unless one was recorded first; returns the winner."""
        ...

    def defer_records(self, job_id: str, *, on: bool) -> None:
        """While ``on``, ``record_message`` keeps the job's records for its finish to write
        (one round trip for all); only for steps a retry replays looking in Slack first."""
        ...

    async def cancel_requested(self, session: Session) -> dict[str, str] | None:
        """A Cancel click recorded at intake while a render holds the session."""
        ...

    async def holds(self, team_id: str, session_id: str, token: int) -> bool:
        """Is the lease still ``token``'s? Checked before edits a stale worker must not make."""
        ...

    async def mark_done(self, job_id: str, marker: dict[str, Any]) -> None: ...

    async def cached_llm(self, job_id: str, step: str) -> str | None: ...

    async def cache_llm(self, job_id: str, step: str, value: str) -> list[tuple[str, str]]:
        """Keep an LLM answer until its result is committed (first value wins), writing the
        delivery records ``defer_records`` kept in the same round trip; returns the (slot, ts)
        of those whose slot already had another message recorded."""
        ...

    async def forget_llm_results(self, job_id: str) -> None:
        """Drop every LLM answer cached for ``job_id`` (a job of a deleted session)."""
        ...

    # --- deletion (bot/jobs/deletion.py) ----------------------------------------------------
    async def tombstone(self, team_id: str, session_id: str) -> dict[str, Any] | None:
        """What is left of a deleted session (who, when, job, channel, card_ts), or None."""
        ...

    async def unindex(self, session: Session) -> None:
        """Take the session out of the thread index and the App Home lists (idempotent)."""
        ...

    async def erase(self, session: Session, *, fence: int, tombstone: dict[str, Any]) -> None:
        """Delete the session's data and leave ``tombstone``, only under the lease ``fence``
        (else ``CommitConflict``)."""
        ...


class Leases(Protocol):
    """What the worker and the eager lane do around a job, through the same store: take,
    renew and give back the session lease, hand a job over, and read a job's done marker.

    Not used by the flows themselves; it is here because ``Worker`` and ``EagerLane`` reach the
    store as ``flows.ctx.repo``, so the context's store must offer it too.
    """

    async def acquire(
        self, team_id: str, session_id: str, lease_ms: int, *, job_id: str = ""
    ) -> int:
        """A new fence token (it only grows), or 0 while another job holds the session."""
        ...

    async def seize(self, team_id: str, session_id: str, lease_ms: int) -> int:
        """A new fence token, taking the lease even from its holder (``/story delete``)."""
        ...

    async def renew(self, team_id: str, session_id: str, token: int, lease_ms: int) -> bool: ...

    async def release(self, team_id: str, session_id: str, token: int) -> None: ...

    async def close_job(self, job_id: str) -> list[tuple[str, str]]:
        """The job stops: write the delivery records ``defer_records`` still keeps, and any
        still to come at once; returns the (slot, ts) whose slot had another message first."""
        ...

    def end_job(self) -> None:
        """The job whose lease ``acquire(job_id=…)`` took is over (the store may have kept what
        it read with the lease for that job: ``storage/jobview.py``)."""
        ...

    async def handoff(
        self,
        team_id: str,
        session_id: str,
        token: int,
        job_id: str,
        state: EagerState,
        *,
        reserve_ms: int,
    ) -> HandOff: ...

    async def eager_state(self, team_id: str, job_id: str) -> EagerState | None: ...

    async def done(self, job_id: str) -> dict[str, Any] | None: ...


class JobStore(SessionStore, Leases, Protocol):
    """The store as ``FlowContext`` holds it: the flows' part and the worker's part."""


class AnswerDraft(Protocol):
    """One thread answer on its way into Slack while the LLM writes it (``Chat.open_answer``).

    ``show`` is given the answer's text so far (raw, unescaped; it may start over shorter after
    an LLM retry) and shows what it can — streamed where Slack allows, throttled edits where not,
    nothing at all in a fake. ``finish`` gives the slot's one message its final form (posting it
    if nothing was shown yet) and returns its ts; like ``post_once`` it raises ``NotPostable`` or
    ``SlackDeliveryError``.
    """

    async def show(self, text: str) -> None: ...

    async def finish(self, msg: Rendered) -> str: ...


class Chat(Protocol):
    """Messages in the session's channel and thread (``bot.slack.gateway.SlackGateway``).

    Every post has a *slot*; ``post_once`` posts a slot at most once — it returns the ts the
    ledger (the session store's ``message_ts``) knows, or, with ``recover``, the message it
    finds in Slack by its metadata — and records the ts in the ledger. Everything after that is
    an ``update``. A refused post raises ``NotPostable`` (the app can't post in the channel) or
    ``SlackDeliveryError`` (anything else); ``ephemeral`` never raises.
    """

    async def post_once(
        self,
        session: Session,
        slot: str,
        msg: Rendered,
        *,
        thread_ts: str | None,
        recover: bool = False,
        fresh: bool = False,
    ) -> str: ...

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
    ) -> AnswerDraft:
        """The answer message for ``slot`` (a reply to ``recipient_id``'s feedback posted at
        ``after_ts``), shown as it is written: Slack's chat streaming when ``stream`` and the
        workspace allows it, else ``draft(text)`` edited in place. At most one message per slot:
        a message an earlier attempt began — for this slot or one of the ``earlier`` slots it
        now answers together — is taken over, never doubled. ``reach``: crash points."""
        ...

    async def update(
        self, session: Session, ts: str, msg: Rendered, *, best_effort: bool = False
    ) -> None: ...

    async def sync_pages(
        self,
        session: Session,
        slot: str,
        pages: Sequence[Rendered],
        *,
        first_ts: str,
        recover: bool,
    ) -> tuple[str, ...]:
        """Page 1 edits ``first_ts``; pages 2… are slots ``{slot}:p{k}``; stale extra pages
        of the session are deleted. Returns the extra pages' ts."""
        ...

    async def permalink(self, session: Session, ts: str) -> str | None: ...

    async def group_members(self, group_id: str) -> frozenset[str]:
        """The members of a user group now (empty if Slack won't say: nobody gains a right
        by a failed lookup)."""
        ...

    async def is_admin(self, user_id: str) -> bool:
        """Is the person a workspace admin or owner now (False if Slack won't say: nobody
        gains a right by a failed lookup)."""
        ...

    async def delete(self, session: Session, ts: str) -> None: ...

    async def ephemeral(
        self,
        *,
        channel_id: str,
        user_id: str,
        msg: Rendered,
        thread_ts: str | None = None,
        response_url: str | None = None,
    ) -> None: ...


class Writer(Protocol):
    """The LLM (``bot.llm.client.LLMClient``). Each call is retried inside the client as it
    sees fit and raises ``LLMError`` (with words for the user) when it gives up."""

    async def write_story(
        self, messages: Sequence[ChatMessage], on_progress: Progress | None = None
    ) -> tuple[StoryDraft, Usage]:
        """Stream a story; ``on_progress`` sees the text so far."""
        ...

    async def answer_feedback(
        self, messages: Sequence[ChatMessage]
    ) -> tuple[FeedbackAnswer, Usage]: ...

    async def stream_feedback(
        self, messages: Sequence[ChatMessage], on_reply: ReplyProgress
    ) -> tuple[FeedbackAnswer, Usage]:
        """``answer_feedback``, streamed: ``on_reply`` sees the reply text so far."""
        ...

    async def structured(
        self, messages: Sequence[ChatMessage], model: type[ModelT], name: str | None = None
    ) -> tuple[ModelT, Usage]:
        """One structured answer of ``model`` (image plan, image redo, storyboard, …)."""
        ...


class FileSharer(Protocol):
    """Files into a session's thread (``bot.slack.uploads.Uploads``).

    ``upload_once`` shares a slot's file at most once and records its file id in the same
    ledger as posts (``message_ts(session, slot)`` finds it) — or, with ``record=False``,
    leaves that record to the caller's next write (``set_item(…, record=…)``): the pending
    file id noted before the upload lets a retry find a shared file either way. It raises
    ``UploadRefused`` (with words for the user) when Slack won't take the file.
    """

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
    ) -> str: ...

    async def fetch(self, file_id: str) -> bytes:
        """A file's bytes back from Slack (a reference image, a kept clip)."""
        ...
