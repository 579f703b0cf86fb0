"""Proves the Slack emulator speaks the real wire protocols.

Every test drives the emulator with the unmodified ``slack_sdk.AsyncWebClient`` or a real
``slack_bolt.AsyncApp`` (Socket Mode via ``AsyncSocketModeHandler``, HTTP via
``app.web_app()``), so the rest of the suite can trust it as a stand-in for Slack.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.emulators.slack import SlackEmulator, post_signed, sign

STORY_BLOCKS: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "Chapter 1 - choose a path"}},
    {
        "type": "actions",
        "block_id": "choice_c1",
        "elements": [
            {
                "type": "button",
                "action_id": "story_choice",
                "text": {"type": "plain_text", "text": "Open the door"},
                "value": "c1:door",
            },
            {
                "type": "button",
                "action_id": "story_replace",
                "text": {"type": "plain_text", "text": "Rewrite"},
                "value": "c1:rewrite",
            },
        ],
    },
]

MODAL: dict[str, Any] = {
    "type": "modal",
    "callback_id": "story_modal",
    "title": {"type": "plain_text", "text": "New story"},
    "submit": {"type": "plain_text", "text": "Start"},
    "blocks": [
        {
            "type": "input",
            "block_id": "premise",
            "label": {"type": "plain_text", "text": "Premise"},
            "element": {"type": "plain_text_input", "action_id": "premise_input"},
        }
    ],
}


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bolt reads SLACK_* env vars (and may switch on OAuth); keep tests hermetic."""
    for name in (
        "SLACK_CLIENT_ID",
        "SLACK_CLIENT_SECRET",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator(
        team_id="T0TEAM",
        bot_user_id="U0BOT",
        bot_id="B0BOT",
        app_id="A0STORY",
        bot_token="xoxb-test",
        app_token="xapp-test",
        signing_secret="test-secret",
    )
    await emulator.start()
    yield emulator
    await emulator.stop()
    assert emulator.background_errors == []


@pytest.fixture
def client(emu: SlackEmulator) -> AsyncWebClient:
    """A bare SDK client; no retry handlers so each test states the retry policy it wants."""
    return AsyncWebClient(token="xoxb-test", base_url=emu.api_url, retry_handlers=[])


class Seen:
    """What the tiny Bolt app observed, for assertions."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.views: list[dict[str, Any]] = []


def build_app(emu: SlackEmulator) -> tuple[AsyncApp, Seen]:
    """A miniature story bot: /story posts a chapter, buttons answer in the thread."""
    app = AsyncApp(
        client=AsyncWebClient(token="xoxb-test", base_url=emu.api_url),
        signing_secret="test-secret",
    )
    seen = Seen()

    @app.command("/story")
    async def story(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        seen.commands.append(command)
        if command["text"] == "modal":
            await ack()
            await client.views_open(trigger_id=command["trigger_id"], view=MODAL)
            return
        await ack("Starting your story...")
        await client.chat_postMessage(
            channel=command["channel_id"], text=f"Story: {command['text']}", blocks=STORY_BLOCKS
        )

    @app.action("story_choice")
    async def choice(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        seen.actions.append(body)
        await client.chat_postMessage(
            channel=body["channel"]["id"],
            thread_ts=body["container"]["message_ts"],
            text=f"You chose {body['actions'][0]['value']}",
        )

    @app.action("story_replace")
    async def replace(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        seen.actions.append(body)
        await respond(replace_original=True, text="The chapter was rewritten")

    @app.event("message")
    async def message(event: dict[str, Any], say: Any) -> None:
        seen.messages.append(event)
        if "subtype" not in event and event.get("thread_ts"):
            await say(text=f"heard: {event['text']}", thread_ts=event["thread_ts"])

    @app.view("story_modal")
    async def modal(ack: Any, view: dict[str, Any]) -> None:
        seen.views.append(view)
        await ack()

    return app, seen


@pytest.fixture
async def socket_app(emu: SlackEmulator) -> AsyncIterator[Seen]:
    app, seen = build_app(emu)
    handler = AsyncSocketModeHandler(app, app_token="xapp-test", ping_interval=0.5)
    await asyncio.wait_for(handler.connect_async(), 5)  # type: ignore[no-untyped-call]
    await emu.wait_connected()
    yield seen
    await handler.close_async()  # type: ignore[no-untyped-call]


@pytest.fixture
async def http_app(emu: SlackEmulator) -> AsyncIterator[Seen]:
    app, seen = build_app(emu)
    runner = web.AppRunner(app.web_app(path="/slack/events"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    emu.events_url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    yield seen
    await runner.cleanup()


# ---------------------------------------------------------------------------------------------
# Web API with the real AsyncWebClient
# ---------------------------------------------------------------------------------------------


async def test_auth_test_identity_matches_events(client: AsyncWebClient) -> None:
    resp = await client.auth_test()
    assert resp["user_id"] == "U0BOT"
    assert resp["bot_id"] == "B0BOT"
    assert resp["team_id"] == "T0TEAM"
    assert resp["app_id"] == "A0STORY"
    assert resp["is_enterprise_install"] is False


async def test_thread_post_update_and_replies(emu: SlackEmulator, client: AsyncWebClient) -> None:
    root = await client.chat_postMessage(channel="C0PUBLIC", text="Chapter 1")
    human_ts = await emu.user_posts("C0PUBLIC", "go left", thread_ts=root["ts"], deliver=False)
    reply = await client.chat_postMessage(
        channel="C0PUBLIC",
        thread_ts=human_ts,  # a reply's ts: Slack files it under the root
        text="Chapter 2",
        metadata={"event_type": "story_turn", "event_payload": {"turn": 2}},
    )
    assert reply["message"]["thread_ts"] == root["ts"]
    assert [m.text for m in emu.thread("C0PUBLIC", root["ts"])] == [
        "Chapter 1",
        "go left",
        "Chapter 2",
    ]
    assert float(root["ts"]) < float(human_ts) < float(reply["ts"])

    updated = await client.chat_update(channel="C0PUBLIC", ts=reply["ts"], text="Chapter 2 (v2)")
    assert updated["text"] == "Chapter 2 (v2)"
    stored = emu.message("C0PUBLIC", reply["ts"])
    assert stored is not None
    assert stored.text == "Chapter 2 (v2)"
    assert [v.text for v in stored.history] == ["Chapter 2"]

    plain = await client.conversations_replies(channel="C0PUBLIC", ts=root["ts"])
    assert [m["ts"] for m in plain["messages"]] == [root["ts"], human_ts, reply["ts"]]
    assert plain["messages"][0]["reply_count"] == 2
    assert "metadata" not in plain["messages"][2]
    full = await client.conversations_replies(
        channel="C0PUBLIC", ts=root["ts"], include_all_metadata=True
    )
    assert full["messages"][2]["metadata"]["event_payload"] == {"turn": 2}

    with pytest.raises(SlackApiError) as human_edit:
        await client.chat_update(channel="C0PUBLIC", ts=human_ts, text="hijack")
    assert human_edit.value.response["error"] == "cant_update_message"
    with pytest.raises(SlackApiError) as too_long:
        await client.chat_update(channel="C0PUBLIC", ts=reply["ts"], text="x" * 4001)
    assert too_long.value.response["error"] == "msg_too_long"
    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel="C0PUBLIC", ts="1.000001", text="nope")
    assert missing.value.response["error"] == "message_not_found"

    await client.chat_delete(channel="C0PUBLIC", ts=reply["ts"])
    assert [m.ts for m in emu.thread("C0PUBLIC", root["ts"])] == [root["ts"], human_ts]
    # Every call was recorded with merged params, including Bolt-style extra keys.
    assert emu.calls_to("chat.delete")[0].params["ts"] == reply["ts"]


async def test_channel_membership_rules(emu: SlackEmulator, client: AsyncWebClient) -> None:
    async def error_of(coro: Any) -> str:
        with pytest.raises(SlackApiError) as exc:
            await coro
        return str(exc.value.response["error"])

    post = client.chat_postMessage
    assert await error_of(post(channel="C0NOTJOINED", text="x")) == "not_in_channel"
    assert await error_of(post(channel="C0PRIVNO", text="x")) == "channel_not_found"
    assert await error_of(post(channel="D0ALICE", text="x")) == "channel_not_found"
    assert await error_of(post(channel="C0NOWHERE", text="x")) == "channel_not_found"
    assert await error_of(client.conversations_join(channel="C0PRIVATE")) == (
        "method_not_supported_for_channel_type"
    )
    joined = await client.conversations_join(channel="C0NOTJOINED")
    assert joined["channel"]["is_member"] is True
    assert (await post(channel="C0NOTJOINED", text="now I can"))["ok"]
    assert (await post(channel="C0PRIVATE", text="members only"))["ok"]

    assert await error_of(client.api_call("chat.frobnicate")) == "unknown_method"
    bad = AsyncWebClient(token="xoxb-wrong", base_url=emu.api_url, retry_handlers=[])
    assert await error_of(bad.auth_test()) == "invalid_auth"
    # The app token only opens Socket Mode connections.
    app_level = AsyncWebClient(token="xapp-test", base_url=emu.api_url, retry_handlers=[])
    assert await error_of(app_level.chat_postMessage(channel="C0PUBLIC", text="x")) == (
        "invalid_auth"
    )
    opened = await client.apps_connections_open(app_token="xapp-test")
    assert opened["url"].startswith(f"ws://127.0.0.1:{emu.port}/link/?ticket=")
    assert emu.connections_opened == 1

    eph = await client.chat_postEphemeral(channel="C0PUBLIC", user="U0BOB", text="psst")
    assert emu.ephemerals_for("U0BOB")[0].message_ts == eph["message_ts"]
    user = await client.users_info(user="U0ALICE")
    assert user["user"]["name"] == "alice"


def _section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def _button(text: str = "Go", value: str = "v", action_id: str = "a") -> dict[str, Any]:
    plain = {"type": "plain_text", "text": text}
    return {"type": "button", "action_id": action_id, "text": plain, "value": value}


@pytest.mark.parametrize(
    ("blocks", "error", "rule"),
    [
        ([_section("x")] * 51, "invalid_blocks", "no more than 50 items"),
        ([_section("x" * 3001)], "invalid_blocks", "/blocks/0/text/text"),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "invalid_blocks",
            "/blocks/0/fields",
        ),
        (
            [{"type": "header", "text": {"type": "mrkdwn", "text": "H"}}],
            "invalid_blocks",
            "plain_text",
        ),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "H" * 151}}],
            "invalid_blocks",
            "less than 151",
        ),
        (
            [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
            "invalid_blocks",
            "no more than 10",
        ),
        (
            [{"type": "actions", "elements": [_button(action_id=f"a{i}") for i in range(26)]}],
            "invalid_blocks",
            "no more than 25",
        ),
        ([{"type": "actions", "elements": [_button(text="B" * 76)]}], "invalid_blocks", "76"),
        ([{"type": "actions", "elements": [_button(value="v" * 2001)]}], "invalid_blocks", "2001"),
        (
            [{"type": "actions", "elements": [_button(action_id="a" * 256)]}],
            "invalid_blocks",
            "action_id",
        ),
        (
            [_section("a", block_id="same"), _section("b", block_id="same")],
            "invalid_blocks",
            "duplicate block_id",
        ),
        ([_section("x" * 2900)] * 5, "msg_blocks_too_long", "12000"),
    ],
)
async def test_block_kit_limits(
    emu: SlackEmulator, client: AsyncWebClient, blocks: list[Any], error: str, rule: str
) -> None:
    with pytest.raises(SlackApiError) as exc:
        await client.chat_postMessage(channel="C0PUBLIC", text="fallback", blocks=blocks)
    assert exc.value.response["error"] == error
    assert rule in exc.value.response["response_metadata"]["messages"][0]
    assert emu.messages == []


async def test_long_text_is_truncated_and_broadcasts_detected(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    resp = await client.chat_postMessage(channel="C0PUBLIC", text="y" * 40_050)
    assert resp["warning"] == "message_truncated"
    assert len(emu.messages[0].text) == 40_000

    await client.chat_postMessage(channel="C0PUBLIC", text="safe &lt;!channel&gt;")
    ping = await client.chat_postMessage(
        channel="C0PUBLIC", text="fallback", blocks=[_section("hey <!here|here>")]
    )
    await client.chat_postEphemeral(channel="C0PUBLIC", user="U0ALICE", text="<!subteam^S0ED>")
    flagged = emu.unescaped_broadcasts()
    assert [getattr(f, "ts", None) for f in flagged] == [ping["ts"], None]
    assert flagged[1].text == "<!subteam^S0ED>"


async def test_ratelimited_retry_after_is_honoured(emu: SlackEmulator) -> None:
    bare = AsyncWebClient(token="xoxb-test", base_url=emu.api_url, retry_handlers=[])
    emu.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as exc:
        await bare.chat_postMessage(channel="C0PUBLIC", text="too fast")
    assert exc.value.response.status_code == 429
    assert exc.value.response["error"] == "ratelimited"
    assert exc.value.response.headers["Retry-After"] == "7"

    patient = AsyncWebClient(
        token="xoxb-test",
        base_url=emu.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    emu.fail_next("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    resp = await patient.chat_postMessage(channel="C0PUBLIC", text="eventually")
    assert resp["ok"]
    attempts = emu.calls_to("chat.postMessage")[-2:]
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 1.0
    assert time.monotonic() - started >= 1.0
    assert [m.text for m in emu.messages] == ["eventually"]


async def test_server_errors_and_ok_false_faults(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    emu.fail_next("chat.postMessage", status=500, error="internal_error")
    with pytest.raises(SlackApiError) as exc:
        await client.chat_postMessage(channel="C0PUBLIC", text="x")
    assert exc.value.response.status_code == 500
    emu.fail_next("chat.update", status=200, error="edit_window_closed")
    root = await client.chat_postMessage(channel="C0PUBLIC", text="x")
    with pytest.raises(SlackApiError) as closed:
        await client.chat_update(channel="C0PUBLIC", ts=root["ts"], text="y")
    assert closed.value.response["error"] == "edit_window_closed"
    assert emu.message("C0PUBLIC", root["ts"]).text == "x"  # type: ignore[union-attr]

    emu.delay("auth.test", 0.2)
    started = time.monotonic()
    await client.auth_test()
    assert time.monotonic() - started >= 0.2


async def test_reset_after_accept_stores_the_post(emu: SlackEmulator) -> None:
    bare = AsyncWebClient(token="xoxb-test", base_url=emu.api_url, retry_handlers=[])
    emu.reset_after_accept("chat.postMessage")
    with pytest.raises(aiohttp.ClientConnectionError):
        await bare.chat_postMessage(channel="C0PUBLIC", text="did it post?")
    assert [m.text for m in emu.messages] == ["did it post?"]

    # The SDK's default connection-error retry turns the same fault into a duplicate post.
    default = AsyncWebClient(token="xoxb-test", base_url=emu.api_url)
    emu.reset_after_accept("chat.postMessage")
    resp = await default.chat_postMessage(channel="C0PUBLIC", text="posted twice")
    assert resp["ok"]
    assert [m.text for m in emu.messages].count("posted twice") == 2


async def test_peak_posts_per_second_and_wait_for_message(
    emu: SlackEmulator, client: AsyncWebClient
) -> None:
    for i in range(3):
        await client.chat_postMessage(channel="C0PUBLIC", text=f"burst {i}")
    await client.chat_postMessage(channel="C0PRIVATE", text="elsewhere")
    assert emu.peak_posts_per_second("C0PUBLIC") == 3
    assert emu.peak_posts_per_second("C0PRIVATE") == 1
    with pytest.raises(AssertionError, match=r"wait_for timed out.*never"):
        await emu.wait_for(lambda: len(emu.messages) > 10, 0.1, message="never")


# ---------------------------------------------------------------------------------------------
# Socket Mode with a real Bolt app
# ---------------------------------------------------------------------------------------------


async def test_socket_mode_command_click_and_thread(emu: SlackEmulator, socket_app: Seen) -> None:
    ack = await emu.slash_command("a heist in space")
    assert ack.ok
    assert ack.transport == "socket"
    assert ack == {"text": "Starting your story..."}
    assert ack.seconds < 1.0
    assert emu.ephemerals_for("U0ALICE")[0].text == "Starting your story..."
    command = socket_app.commands[0]
    assert command["response_url"].startswith(f"{emu.base_url}/response/")
    assert command["trigger_id"]

    chapter = (await emu.wait_for(lambda: emu.bot_messages("C0PUBLIC")))[0]
    click = await emu.click(chapter.ts, "story_choice")
    assert click.ok
    body = socket_app.actions[0]
    assert body["container"]["message_ts"] == chapter.ts
    assert body["actions"][0]["value"] == "c1:door"
    assert body["message"]["blocks"] == STORY_BLOCKS
    await emu.wait_for(lambda: len(emu.thread("C0PUBLIC", chapter.ts)) == 2)

    await emu.user_posts("C0PUBLIC", "I pick the door", thread_ts=chapter.ts)
    await emu.wait_for(lambda: len(emu.thread("C0PUBLIC", chapter.ts)) == 4)
    texts = [m.text for m in emu.thread("C0PUBLIC", chapter.ts)]
    assert texts[1:] == ["You chose c1:door", "I pick the door", "heard: I pick the door"]
    # Bolt ignored the bot's own echoed posts but still acked them.
    assert [e["user"] for e in socket_app.messages] == ["U0ALICE"]
    echoed = [d for d in emu.deliveries if d.payload.get("event", {}).get("bot_id") == "B0BOT"]
    await emu.wait_for(lambda: all(d.result.ok for d in echoed) and len(echoed) >= 1)
    assert all(ok for _, _, ok in emu.ack_latencies)

    with pytest.raises(AssertionError, match="available: \\['story_choice', 'story_replace'\\]"):
        await emu.click(chapter.ts, "no_such_button")


async def test_socket_mode_respond_replaces_original(emu: SlackEmulator, socket_app: Seen) -> None:
    await emu.slash_command("rewrite me")
    chapter = (await emu.wait_for(lambda: emu.bot_messages("C0PUBLIC")))[0]
    await emu.click(chapter, "story_replace", user="U0BOB")
    await emu.wait_for(lambda: chapter.text == "The chapter was rewritten")
    assert chapter.blocks is None
    assert chapter.history[0].text == "Story: rewrite me"
    assert emu.responses[0].body["replace_original"] is True
    with pytest.raises(AssertionError, match="no 'story_choice'"):
        await emu.click(chapter, "story_choice")  # the button is gone with the old blocks


async def test_socket_mode_modal_open_and_submit(emu: SlackEmulator, socket_app: Seen) -> None:
    await emu.slash_command("modal")
    opened = (await emu.wait_for(lambda: emu.views_opened))[0]
    assert opened.user == "U0ALICE"
    assert opened.view["callback_id"] == "story_modal"
    ack = await emu.submit_view(opened.id, {"premise": {"premise_input": "a heist"}})
    assert ack.ok
    values = socket_app.views[0]["state"]["values"]
    assert values["premise"]["premise_input"]["value"] == "a heist"
    assert opened.closed


async def test_socket_mode_edits_and_deletes(emu: SlackEmulator, socket_app: Seen) -> None:
    ts = await emu.user_posts("C0PUBLIC", "top level")
    edit = await emu.user_edits("C0PUBLIC", ts, "top level, edited")
    delete = await emu.user_deletes("C0PUBLIC", ts)
    assert edit is not None and edit.ok
    assert delete is not None and delete.ok
    await emu.wait_for(lambda: len(socket_app.messages) == 3)
    kinds = [e.get("subtype") for e in socket_app.messages]
    assert kinds == [None, "message_changed", "message_deleted"]
    assert socket_app.messages[1]["message"]["text"] == "top level, edited"
    assert socket_app.messages[2]["deleted_ts"] == ts
    # Not a member: Slack sends no message events from that channel.
    await emu.user_posts("C0NOTJOINED", "hello?")
    assert len(socket_app.messages) == 3


async def test_socket_mode_disconnect_frame_reconnects(
    emu: SlackEmulator, socket_app: Seen
) -> None:
    assert emu.connections_opened == 1
    assert await emu.push_disconnect("refresh_requested") == 1
    await emu.wait_for(lambda: emu.connections_opened == 2)
    await emu.wait_connected()
    ack = await emu.slash_command("after refresh")
    assert ack.ok
    assert emu.websocket_connects == 2
    await emu.wait_for(lambda: emu.open_sockets == 1)

    await emu.drop_socket()  # abrupt TCP abort: the SDK notices on its next ping
    await emu.wait_for(lambda: emu.connections_opened == 3, 5)
    await emu.wait_connected()
    assert (await emu.slash_command("after drop")).ok
    assert [c["text"] for c in socket_app.commands] == ["after refresh", "after drop"]


async def test_socket_mode_round_robin_across_connections(emu: SlackEmulator) -> None:
    app, seen = build_app(emu)
    handlers = [AsyncSocketModeHandler(app, app_token="xapp-test") for _ in range(2)]
    for handler in handlers:
        await asyncio.wait_for(handler.connect_async(), 5)  # type: ignore[no-untyped-call]
    try:
        await emu.wait_connected(count=2)
        emu.echo_bot_events = False
        acks = [await emu.slash_command(f"story {i}") for i in range(4)]
        assert all(a.ok for a in acks)
        assert len({a.socket_id for a in acks}) == 2
        assert len(seen.commands) == 4
    finally:
        for handler in handlers:
            await handler.close_async()  # type: ignore[no-untyped-call]


async def test_unacked_events_are_redelivered(emu: SlackEmulator, socket_app: Seen) -> None:
    emu.redeliver_unacked = True
    emu.ack_timeout = 0.3
    emu.retry_delays = (0.05, 0.05, 0.05)
    # Nothing handles reaction_added, so Bolt answers 404 and sends no ack frame.
    event = {
        "type": "reaction_added",
        "user": "U0ALICE",
        "reaction": "tada",
        "item": {"type": "message", "channel": "C0PUBLIC", "ts": "1767225600.000100"},
        "event_ts": "1767225600.000900",
    }
    first = await emu.emit_event(event)
    assert not first.ok
    assert first.error == "timeout"
    await emu.wait_for(lambda: any(d.retry_attempt == 3 for d in emu.deliveries), 5)
    attempts = [d for d in emu.deliveries if d.kind == "events_api"]
    assert [(d.retry_attempt, d.retry_reason) for d in attempts] == [
        (0, ""),
        (1, "timeout"),
        (2, "timeout"),
        (3, "timeout"),
    ]
    assert len({d.payload["event_id"] for d in attempts}) == 1
    assert len({d.result.envelope_id for d in attempts}) == 4


# ---------------------------------------------------------------------------------------------
# HTTP mode with a real Bolt app
# ---------------------------------------------------------------------------------------------


async def test_http_mode_signed_deliveries(emu: SlackEmulator, http_app: Seen) -> None:
    ack = await emu.slash_command("by http")
    assert ack.transport == "http"
    assert ack.status == 200
    assert ack["text"] == "Starting your story..."
    chapter = (await emu.wait_for(lambda: emu.bot_messages("C0PUBLIC")))[0]
    assert (await emu.click(chapter.ts, "story_choice")).status == 200
    await emu.user_posts("C0PUBLIC", "by the window", thread_ts=chapter.ts)
    await emu.wait_for(lambda: len(emu.thread("C0PUBLIC", chapter.ts)) == 4)
    assert http_app.messages[0]["text"] == "by the window"
    assert all(ok for _, _, ok in emu.ack_latencies)
    challenge = await emu.url_verification("abc123")
    assert challenge == {"challenge": "abc123"}


async def test_http_mode_rejects_bad_signatures(emu: SlackEmulator, http_app: Seen) -> None:
    assert emu.events_url is not None
    body = json.dumps({"type": "url_verification", "challenge": "c"}).encode()
    good = await post_signed(emu.events_url, body, "application/json", secret="test-secret")
    assert good[0] == 200
    forged = await post_signed(emu.events_url, body, "application/json", secret="wrong")
    assert forged[0] == 401
    stale = await post_signed(
        emu.events_url,
        body,
        "application/json",
        secret="test-secret",
        timestamp=int(time.time()) - 600,
    )
    assert stale[0] == 401
    tampered = await post_signed(
        emu.events_url, body, "application/json", secret="test-secret", signature="v0=00"
    )
    assert tampered[0] == 401


async def test_http_retries_carry_retry_headers(emu: SlackEmulator) -> None:
    """A bare receiver (no Bolt) shows exactly what the HTTP sender puts on the wire."""
    received: list[tuple[dict[str, str], bytes]] = []

    async def receiver(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=500 if len(received) == 1 else 200)

    app = web.Application()
    app.router.add_post("/events", receiver)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        emu.events_url = f"http://127.0.0.1:{runner.addresses[0][1]}/events"
        emu.redeliver_unacked = True
        emu.retry_delays = (0.05, 0.05, 0.05)
        first = await emu.emit_event({"type": "app_home_opened", "user": "U0ALICE"})
        assert first.status == 500
        assert not first.ok
        await emu.wait_for(lambda: len(received) == 2)
    finally:
        await runner.cleanup()
    verifier = SignatureVerifier("test-secret")
    for headers, body in received:
        assert verifier.is_valid(
            body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
        )
        assert headers["X-Slack-Signature"] == sign(
            "test-secret", headers["X-Slack-Request-Timestamp"], body
        )
    assert "X-Slack-Retry-Num" not in received[0][0]
    assert received[1][0]["X-Slack-Retry-Num"] == "1"
    assert received[1][0]["X-Slack-Retry-Reason"] == "http_error"
    assert json.loads(received[0][1])["event_id"] == json.loads(received[1][1])["event_id"]
