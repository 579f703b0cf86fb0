"""The Versions button and its modal: list a stage's versions, compare two, restore one.

Listing, paging and comparing only *read* what is stored and draw the modal — nothing changes,
so nothing is recorded. Restore changes the session, so it is recorded durably as a trigger
before the ack, like every review click; the worker decides it under the session lease
(``bot/jobs/restore.py``), so a restore racing a regenerate has one winner. A click inside a
modal carries no channel and no ``response_url``: the channel comes from the stored session,
and the modal itself says what happened. Slack calls (``views.open``/``views.update``) run
after the ack (``handlers/afterack.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline import review as say
from bot.pipeline.artifacts import VideoPlan, VideoVersion
from bot.pipeline.diffs import Diff, diff_versions
from bot.pipeline.models import Session, Stage, Turn
from bot.pipeline.triggers import Restore
from bot.pipeline.versions import MODELS, AnyVersion, VersionRow, rows
from bot.services import HandlerServices
from bot.slack.actions import (
    COMPARE_BLOCK,
    RestoreButtonValue,
    VersionsAction,
    VersionsMetadata,
    parse_button,
)
from bot.slack.version_blocks import compare_view, notice_view, versions_view
from handlers import replies, workspace
from handlers.afterack import AfterAck

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)
PLANS = "video_plan"  # where the video's plans are kept beside its versions


class VersionReader(Protocol):
    """The reads the modal needs (``storage.repository.Repository`` has them)."""

    async def get(self, team_id: str, session_id: str) -> Session | None: ...

    async def history(self, session: Session) -> list[Turn]: ...

    async def stage_versions(
        self, session: Session, stage: Stage, model: type[ModelT]
    ) -> list[ModelT]: ...

    async def artifact(
        self, session: Session, stage: str, number: int, model: type[ModelT]
    ) -> ModelT | None: ...


# --- parsing ------------------------------------------------------------------------------------


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _action(body: dict[str, Any]) -> dict[str, Any]:
    actions = body.get("actions") or []
    return _dict(actions[0]) if isinstance(actions, list) and actions else {}


@dataclass(frozen=True)
class OpenClick:
    """The Versions button on a review message."""

    team: str
    user: str
    channel: str
    trigger_id: str
    session: str
    stage: Stage


def parse_open(body: dict[str, Any]) -> OpenClick | None:
    value = parse_button(_action(body).get("value"))
    team = workspace.payload_team(body)
    user = _dict(body.get("user")).get("id")
    channel = _dict(body.get("channel")).get("id") or _dict(body.get("container")).get("channel_id")
    trigger_id = body.get("trigger_id")
    if not (value and team and user and channel and trigger_id):
        return None
    return OpenClick(
        str(team), str(user), str(channel), str(trigger_id), value.session, value.stage
    )


@dataclass(frozen=True)
class ViewClick:
    """A click inside the Versions modal: no channel, no response_url; the view says which
    session and stage it lists (its private metadata)."""

    team: str
    user: str
    view_id: str
    action_ts: str
    value: object
    meta: VersionsMetadata | None
    state: dict[str, Any]


def parse_view_click(body: dict[str, Any]) -> ViewClick | None:
    view = _dict(body.get("view"))
    action = _action(body)
    team = workspace.payload_team(body)
    user = _dict(body.get("user")).get("id")
    view_id = view.get("id")
    action_ts = action.get("action_ts")
    if not (team and isinstance(user, str) and user and isinstance(view_id, str) and view_id):
        return None
    return ViewClick(
        team=team,
        user=user,
        view_id=view_id,
        action_ts=str(action_ts or ""),
        value=action.get("value"),
        meta=VersionsMetadata.parse(view.get("private_metadata")),
        state=_dict(_dict(view.get("state")).get("values")),
    )


def compare_choice(state: dict[str, Any], meta: VersionsMetadata) -> tuple[int, int] | None:
    """The two versions picked in the Compare selects (as shown: the older and the current one
    when untouched), or None when there aren't two."""
    block = _dict(state.get(COMPARE_BLOCK))

    def picked(action: VersionsAction) -> int | None:
        raw = _dict(_dict(block.get(str(action))).get("selected_option")).get("value")
        return int(raw) if isinstance(raw, str) and raw.isdigit() and len(raw) <= 5 else None

    new = picked(VersionsAction.COMPARE_TO) or meta.current
    old = picked(VersionsAction.COMPARE_FROM) or new - 1
    return (old, new) if old >= 1 and new >= 1 else None


def restore_trigger(click: ViewClick, value: RestoreButtonValue, s: Session) -> Restore:
    """The durable Restore: the session the button names, in the channel of the session the
    modal was opened for (``s``), checked against each other by the worker."""
    assert click.meta is not None
    return Restore(
        team_id=click.team,
        channel_id=s.channel_id,
        user_id=click.user,
        session_id=value.session,
        stage=value.stage,
        version=value.version,
        current=value.current,
        modal_session=click.meta.session,
        message_ts=click.view_id,
        action_ts=click.action_ts,
    )


# --- reading ------------------------------------------------------------------------------------


async def load_rows(reader: VersionReader, s: Session, stage: Stage) -> list[VersionRow]:
    found = await reader.stage_versions(s, stage, MODELS[stage])
    versions: list[AnyVersion] = [v for v in found if isinstance(v, AnyVersion)]
    return rows(versions, await reader.history(s))


async def load_diff(
    reader: VersionReader, s: Session, stage: Stage, old: int, new: int
) -> Diff | None:
    model = MODELS[stage]
    a = await reader.artifact(s, stage.value, old, model)
    b = await reader.artifact(s, stage.value, new, model)
    if a is None or b is None:
        return None
    plans: list[VideoPlan | None] = [None, None]
    if isinstance(a, VideoVersion) and isinstance(b, VideoVersion):
        plans = [
            await reader.artifact(s, PLANS, a.plan, VideoPlan),
            await reader.artifact(s, PLANS, b.plan, VideoPlan),
        ]
    return diff_versions(a, b, *plans)


# --- the listeners ------------------------------------------------------------------------------


def register(app: AsyncApp, services: HandlerServices) -> None:
    after = AfterAck()
    reader: VersionReader | None = services.repo

    def answer(respond: AsyncRespond, text: str) -> None:
        after.run(
            "versions answer",
            respond(text=text, response_type="ephemeral", replace_original=False),
        )

    def show(client: AsyncWebClient, view_id: str, view: dict[str, Any]) -> None:
        after.run("versions views.update", client.views_update(view_id=view_id, view=view))

    async def handle_versions(
        ack: AsyncAck,
        body: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
        respond: AsyncRespond,
    ) -> None:
        """Open the Versions modal of the stage a review message shows."""
        await ack()
        opened = parse_open(body)
        if opened is None or reader is None:
            answer(respond, replies.STALE_BUTTON)
            return
        if workspace.is_foreign(context, opened.team, "versions"):
            answer(respond, replies.OTHER_WORKSPACE)
            return
        after.run("versions modal", open_modal(reader, client, respond, opened))

    async def open_modal(
        reader: VersionReader, client: AsyncWebClient, respond: AsyncRespond, opened: OpenClick
    ) -> None:
        try:
            s = await reader.get(opened.team, opened.session)
            found = await load_rows(reader, s, opened.stage) if s is not None else []
        except Exception:
            log.warning("could not read the versions of %s", opened.session, exc_info=True)
            await respond(text=replies.UNAVAILABLE, response_type="ephemeral")
            return
        if s is None or s.channel_id != opened.channel or not found:
            await respond(
                text=say.unknown_session(), response_type="ephemeral", replace_original=False
            )
            return
        view = versions_view(s, opened.stage, found)
        await client.views_open(trigger_id=opened.trigger_id, view=view)

    async def handle_restore(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        """Record a Restore durably (the worker decides it), then say so in the modal."""
        click = parse_view_click(body)
        if click is None:
            await ack()
            return
        value = RestoreButtonValue.parse(click.value)
        meta = click.meta
        stage = meta.stage if meta else None
        if (
            value is None
            or meta is None
            or value.stage is not meta.stage
            or not click.action_ts
            or reader is None
        ):
            await ack()
            show(client, click.view_id, notice_view(meta, stage, replies.STALE_BUTTON))
            return
        if workspace.is_foreign(context, click.team, "restore"):
            await ack()
            show(client, click.view_id, notice_view(None, stage, replies.OTHER_WORKSPACE))
            return
        try:
            s = await reader.get(click.team, meta.session)
        except Exception:
            log.warning("could not read session %s for a restore", meta.session, exc_info=True)
            await ack()
            show(client, click.view_id, notice_view(meta, stage, replies.UNAVAILABLE))
            return
        if s is None:
            await ack()
            show(client, click.view_id, notice_view(None, stage, say.unknown_session()))
            return
        recorded = await services.record(restore_trigger(click, value, s))
        await ack()
        text = (
            f"↩️ Restoring v{value.version} as a new version. The thread shows it in a moment — "
            "or, if something changed meanwhile, I'll tell you why not there (only you will "
            "see it)."
            if recorded
            else replies.UNAVAILABLE
        )
        show(client, click.view_id, notice_view(meta, stage, text))

    async def handle_compare(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        """Show the diff of the two picked versions in the modal."""
        await ack()
        click = parse_view_click(body)
        if click is None or reader is None:
            return
        if click.meta is None or workspace.is_foreign(context, click.team, "versions"):
            show(client, click.view_id, notice_view(None, None, replies.STALE_BUTTON))
            return
        after.run("versions compare", redraw(reader, client, click, click.meta, compare=True))

    async def handle_page(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        """Newer / Older / Back to the list: draw the list again (fresh from storage)."""
        await ack()
        click = parse_view_click(body)
        if click is None or reader is None:
            return
        if click.meta is None or workspace.is_foreign(context, click.team, "versions"):
            show(client, click.view_id, notice_view(None, None, replies.STALE_BUTTON))
            return
        raw = click.value
        page = int(raw) if isinstance(raw, str) and raw.isdigit() and len(raw) <= 4 else 0
        meta = click.meta.model_copy(update={"page": page})
        after.run("versions page", redraw(reader, client, click, meta, compare=False))

    async def redraw(
        reader: VersionReader,
        client: AsyncWebClient,
        click: ViewClick,
        meta: VersionsMetadata,
        *,
        compare: bool,
    ) -> None:
        s = await reader.get(click.team, meta.session)
        if s is None:
            view = notice_view(None, meta.stage, say.unknown_session())
        elif compare:
            picked = compare_choice(click.state, meta)
            diff = await load_diff(reader, s, meta.stage, *picked) if picked else None
            if diff is None:
                view = notice_view(meta, meta.stage, "Those two versions can't be compared.")
            else:
                view = compare_view(s, meta.stage, diff, page=meta.page)
        else:
            view = versions_view(
                s, meta.stage, await load_rows(reader, s, meta.stage), page=meta.page
            )
        await client.views_update(view_id=click.view_id, view=view)

    async def handle_select(ack: AsyncAck) -> None:
        """Picking a version in a Compare select changes nothing until Compare is clicked."""
        await ack()

    app.action(VersionsAction.OPEN.value)(handle_versions)
    app.action(VersionsAction.RESTORE.value)(handle_restore)
    app.action(VersionsAction.COMPARE.value)(handle_compare)
    for paging in (VersionsAction.NEWER, VersionsAction.OLDER, VersionsAction.BACK):
        app.action(paging.value)(handle_page)
    for select in (VersionsAction.COMPARE_FROM, VersionsAction.COMPARE_TO):
        app.action(select.value)(handle_select)
