"""The App Home tab: opening it, turning its pages, and its New story button.

Opening the Home and turning a page only *record* (one Redis script: the viewer, the page, and
"publish this Home now"); the worker's Home publisher (``bot/jobs/home.py``) renders and
publishes it within about a second. So these handlers stay a parse and one round trip, and a
person's Home is only ever published from one place, with its coalescing and its rate-limit
handling. New story opens the start modal, asking for the channel (the Home has none).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.services import HandlerServices
from bot.slack import blocks
from bot.slack.actions import HomeAction, HomePageValue

log = logging.getLogger(__name__)


def _ids(body: dict[str, Any]) -> tuple[str, str] | None:
    """``(team_id, user_id)`` of a Home click, or None when the payload lacks them."""
    team = (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id")
    user = (body.get("user") or {}).get("id")
    if isinstance(team, str) and team and isinstance(user, str) and user:
        return team, user
    return None


def parse_home_opened(body: dict[str, Any], event: dict[str, Any]) -> tuple[str, str] | None:
    """``(team_id, user_id)`` of someone opening the Home tab; None for the Messages tab."""
    team, user = body.get("team_id"), event.get("user")
    if event.get("tab") != "home":
        return None
    if isinstance(team, str) and team and isinstance(user, str) and user:
        return team, user
    return None


def parse_page(body: dict[str, Any]) -> tuple[str, str, int | None] | None:
    """``(team_id, user_id, page)`` of a paging click — page None when the button's value
    isn't one we posted (the Home is then shown again as it is) — or None without a user."""
    actions = body.get("actions") or []
    action = actions[0] if actions and isinstance(actions[0], dict) else {}
    value = HomePageValue.parse(action.get("value"))
    ids = _ids(body)
    if ids is None:
        return None
    return (*ids, value.page if value is not None else None)


def register(app: AsyncApp, services: HandlerServices) -> None:
    async def handle_home_opened(body: dict[str, Any], event: dict[str, Any]) -> None:
        """Remember the viewer and have their Home published now (Bolt acks on return)."""
        opened = parse_home_opened(body, event)
        if opened is None or services.home is None:
            return
        try:
            await services.home.opened(*opened)
        except Exception:
            # The tab still shows the Home last published; the next change publishes it again.
            log.warning("could not record that %s opened the App Home", opened[1], exc_info=True)

    async def handle_home_page(ack: AsyncAck, body: dict[str, Any]) -> None:
        """Show another page of the Home (an unreadable page: the Home again, refreshed)."""
        parsed = parse_page(body)
        if parsed is not None and services.home is not None:
            team, user, page = parsed
            try:
                await services.home.opened(team, user, page=page)
            except Exception:
                log.warning("could not record a Home page for %s", user, exc_info=True)
        await ack()

    async def handle_new_story(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """Open the start modal, with a channel picker."""
        await ack()
        trigger_id = body.get("trigger_id")
        if not isinstance(trigger_id, str) or not trigger_id:
            return
        try:
            await client.views_open(
                trigger_id=trigger_id,
                view=blocks.start_modal(
                    channel_id=None, default_policy=services.settings.approval_policy
                ),
            )
        except Exception:
            log.exception("views.open failed for the Home's New story")

    app.event("app_home_opened")(handle_home_opened)
    app.action(HomeAction.NEW_STORY.value)(handle_new_story)
    app.action(HomeAction.PREVIOUS.value)(handle_home_page)
    app.action(HomeAction.NEXT.value)(handle_home_page)
