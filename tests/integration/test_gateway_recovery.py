"""A replayed job looks in Slack for the message it may have posted before it crashed. The
real gateway and slack_sdk client against the Slack emulator: a lookup that Slack rate-limits
is waited out, and one that can't get through stops the post instead of doubling it (the fault
loop's seed 42 found a progress message posted twice after a 429 on conversations.replies)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline.models import Session
from bot.slack.gateway import SlackDeliveryError, SlackGateway
from bot.slack.story_blocks import Rendered, mrkdwn_text, rendered
from tests.emulators.slack import SlackEmulator
from tests.integration.test_gateway_budget import session
from tests.unit.test_stream_answers import DictLedger


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    emulator.echo_bot_events = False
    await emulator.start()
    yield emulator
    await emulator.stop()


def plain(text: str) -> Rendered:
    return rendered(text, [mrkdwn_text(text)])


async def posted_then_forgotten(emu: SlackEmulator) -> tuple[SlackGateway, Session, str, str]:
    """A message posted for a slot whose ts never reached the ledger (the crash window)."""
    client = AsyncWebClient(token=emu.bot_token, base_url=emu.api_url, retry_handlers=[])
    s = session(emu)
    first = SlackGateway(client, DictLedger())
    thread = await first.post_once(s, "card", plain("card"), thread_ts=None)
    posted = await first.post_once(s, "progress:1", plain("working"), thread_ts=thread)
    return SlackGateway(client, DictLedger()), s, thread, posted  # a new ledger: forgotten


async def test_a_rate_limited_lookup_is_waited_out_and_finds_the_message(
    emu: SlackEmulator,
) -> None:
    replay, s, thread, posted = await posted_then_forgotten(emu)
    posts = len(emu.calls_to("chat.postMessage"))
    emu.fail_next("conversations.replies", status=429, retry_after=0.1)
    ts = await replay.post_once(s, "progress:1", plain("working"), thread_ts=thread, recover=True)
    assert ts == posted
    assert len(emu.calls_to("chat.postMessage")) == posts  # not posted a second time


async def test_a_lookup_that_cannot_get_through_stops_the_post(emu: SlackEmulator) -> None:
    replay, s, thread, _ = await posted_then_forgotten(emu)
    posts = len(emu.calls_to("chat.postMessage"))
    emu.fail_next("conversations.replies", status=503)
    with pytest.raises(SlackDeliveryError):
        await replay.post_once(s, "progress:1", plain("working"), thread_ts=thread, recover=True)
    assert len(emu.calls_to("chat.postMessage")) == posts  # the job tries again later
