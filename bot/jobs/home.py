"""The App Home publisher: one ``views.publish`` per person per burst of changes.

Every session commit marks the Homes of the people it involves as *dirty* in the same Lua
script (``Writes.with_home_index``), keeping the time of the first unpublished change. Every
``home_interval_s`` this loop (in each worker) takes, in one atomic step, the users whose first
mark is at least ``home_settle_s`` old — so with several replicas each user is published by one
of them — renders their Home from the indexes and publishes it. However many commits touch a
person within the settle time, they see one publish; under a steady stream of changes, about
one per ``settle + interval``. Only people who opened their Home are ever marked.

``views.publish`` is sent with the ``hash`` Slack returned for the person's previous Home, so a
slow publish carrying older data can't overwrite a newer one: it gets ``hash_conflict`` and the
person is published again. A 429 pauses the team's Homes for its Retry-After and puts the people
back; a connection error does the same for a moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.jobs.context import FlowContext
from bot.pipeline.models import Session
from bot.slack.gateway import SlackGateway
from bot.slack.home_blocks import MINE_PER_PAGE, TEAM_PER_PAGE, home_page, home_view
from storage.home import DueHome, HomeIndex
from storage.repository import Repository

log = logging.getLogger(__name__)
BATCH = 50  # users taken per team per tick; the rest wait for the next tick
CONCURRENCY = 4  # publishes (and permalink look-ups) in flight at once
TRANSIENT_PAUSE_MS = 2000
_TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


@dataclass(frozen=True)
class _Retry:
    """Publish again later: after ``pause_ms`` (the team waits), forgetting the view hash."""

    pause_ms: int = 0
    forget_hash: bool = False


class HomePublisher:
    def __init__(
        self,
        index: HomeIndex,
        gateway: SlackGateway,
        *,
        interval_s: float,
        settle_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.index = index
        self.gateway = gateway
        self.interval_s = interval_s
        self.settle_ms = int(settle_s * 1000)
        self.clock = clock
        self.published = 0
        self._slots = asyncio.Semaphore(CONCURRENCY)  # publishes
        self._lookups = asyncio.Semaphore(CONCURRENCY)  # permalinks, asked while publishing
        self._warned_not_enabled = False

    @classmethod
    def for_context(cls, ctx: FlowContext) -> HomePublisher | None:
        """The publisher for a production context (Redis store, Slack gateway); None for the
        in-memory fakes of the unit tests, which have no Home."""
        repo, gateway = ctx.repo, ctx.gateway
        if not isinstance(repo, Repository) or not isinstance(gateway, SlackGateway):
            return None
        index = HomeIndex(repo.redis, repo.scripts, ttl_s=repo.session_ttl_s)
        return cls(
            index,
            gateway,
            interval_s=ctx.settings.home_interval_s,
            settle_s=ctx.settings.home_settle_s,
        )

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish due Homes every ``interval_s`` until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.warning("publishing App Homes failed; trying again", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.interval_s)

    async def tick(self) -> None:
        for team in await self.index.teams():
            due = await self.index.take_due(team, settle_ms=self.settle_ms, limit=BATCH)
            if due:
                await self._publish_all(team, due)

    async def _publish_all(self, team: str, due: list[DueHome]) -> None:
        """Publish each taken Home; whoever couldn't be published is put back."""
        outcomes: dict[str, _Retry | None] = {}

        async def one(home: DueHome) -> None:
            async with self._slots:
                try:
                    await self.gateway.for_workspace(team)  # OAuth: the workspace's token
                    outcomes[home.user_id] = await self.publish(team, home)
                except Exception:
                    log.warning("App Home of %s not published", home.user_id, exc_info=True)
                    outcomes[home.user_id] = _Retry(TRANSIENT_PAUSE_MS)

        try:
            await asyncio.gather(*(one(home) for home in due))
        except asyncio.CancelledError:
            # Stopping mid-publish: whoever wasn't published is due again for the next worker.
            unfinished = [h.user_id for h in due if h.user_id not in outcomes]
            await self.index.put_back(team, unfinished, pause_ms=0)
            raise
        retries = {user: r for user, r in outcomes.items() if r is not None}
        if retries:
            pause = max(r.pause_ms for r in retries.values())
            forget = any(r.forget_hash for r in retries.values())
            await self.index.put_back(team, list(retries), pause_ms=pause, forget_hash=forget)

    async def publish(self, team: str, home: DueHome) -> _Retry | None:
        """Render one person's Home and publish it; a ``_Retry`` if it must be done again."""
        data = await self.index.read(
            team,
            home.user_id,
            page=home.page,
            mine_per_page=MINE_PER_PAGE,
            team_per_page=TEAM_PER_PAGE,
        )
        page = home_page(home.user_id, data.mine, data.team, data.team_total, data.page)
        links = dict(data.links)
        await self._find_links(page.shown, links)
        view = home_view(page, links, now=self.clock())
        extra = {"hash": home.view_hash} if home.view_hash else {}
        try:
            resp = await self.gateway.call(
                "views_publish", wait_on_429=False, user_id=home.user_id, view=view, **extra
            )
        except SlackApiError as exc:
            return self._refused(home, exc)
        except _TRANSIENT as exc:
            log.info("views.publish for %s failed (%s); will retry", home.user_id, exc)
            return _Retry(TRANSIENT_PAUSE_MS)
        self.published += 1
        shown = resp.get("view") if isinstance(resp.get("view"), dict) else {}
        view_hash = shown.get("hash") if isinstance(shown, dict) else None
        await self.index.published(team, home.user_id, str(view_hash) if view_hash else None)
        return None

    def _refused(self, home: DueHome, exc: SlackApiError) -> _Retry | None:
        status = exc.response.status_code
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if status == 429:
            retry_after = float(exc.response.headers.get("Retry-After", 1) or 1)
            log.info("views.publish rate limited; Homes wait %.0f s", retry_after)
            return _Retry(int(max(retry_after, 1.0) * 1000))
        if error == "hash_conflict":
            return _Retry(forget_hash=True)  # someone else published since: render again
        if status >= 500:
            return _Retry(TRANSIENT_PAUSE_MS)
        if error == "not_enabled":
            if not self._warned_not_enabled:
                self._warned_not_enabled = True
                log.warning(
                    "The App Home tab is not enabled for this app (views.publish: not_enabled). "
                    "Turn on features.app_home.home_tab_enabled in the app manifest."
                )
            return None
        log.error("views.publish for %s refused: %s", home.user_id, error or status)
        return None

    async def _find_links(self, sessions: list[Session], links: dict[str, str]) -> None:
        """Ask Slack once per session for its thread's permalink, and keep it with the session.

        A session whose card isn't posted yet has no thread; it gets its link on a later
        render (the commit that records the card marks the Home again)."""
        missing = {s.id: s for s in sessions if s.id not in links and s.thread_ts}.values()

        async def one(s: Session) -> None:
            async with self._lookups:
                try:
                    resp = await self.gateway.call(
                        "chat_getPermalink",
                        wait_on_429=False,
                        channel=s.channel_id,
                        message_ts=s.thread_ts,
                    )
                except (SlackApiError, *_TRANSIENT) as exc:
                    log.info("no permalink for session %s yet: %s", s.id, exc)
                    return
                link = resp.get("permalink")
                if isinstance(link, str) and link:
                    links[s.id] = link
                    await self.index.note_link(s, link)

        await asyncio.gather(*(one(s) for s in missing))
