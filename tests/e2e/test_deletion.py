"""Retention end to end: every key a session writes expires; `/story delete` by the creator
or an admin removes the session's data and says so in its thread, anyone else is refused, and
the deleted session's buttons answer that it is gone; `python -m bot export` writes a real
session as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from storage import keys
from tests.e2e.harness import AppUnderTest, block_text, by_slot, session_of
from tests.e2e.test_story_flow import start_story
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.support.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]


async def _keys_of(redis: Redis, sid: str) -> list[str]:
    return sorted([str(k) async for k in redis.scan_iter(match="sl:*") if sid in str(k)])


async def _dump(redis: Redis, key: str) -> str:
    kind = await redis.type(key)
    if kind == "string":
        return str(await redis.get(key))
    if kind == "hash":
        return json.dumps(await redis.hgetall(key))
    if kind == "list":
        return json.dumps(await redis.lrange(key, 0, -1))
    if kind == "zset":
        return json.dumps(await redis.zrange(key, 0, -1))
    if kind == "set":
        return json.dumps(sorted(await redis.smembers(key)))
    return json.dumps(await redis.xrange(key))


async def _assert_nothing_left(redis: Redis, team: str, sid: str, words: list[str]) -> None:
    """No key of the session's data remains: under its own name only the tombstone (who and
    when) and the fence counter; elsewhere only job bookkeeping naming it (dedupe and done
    markers, an hour or a day long); and no key anywhere holds its words."""
    for _ in range(100):  # the job that answered last gives its lease back right after
        if not await redis.exists(keys.lock(team, sid)):
            break
        await asyncio.sleep(0.05)
    mine = [k for k in await _keys_of(redis, sid) if k.startswith(keys.session(team, sid))]
    assert mine == sorted([keys.fence(team, sid), keys.tombstone(team, sid)]), mine
    async for key in redis.scan_iter(match="sl:*"):
        value = await _dump(redis, str(key))
        for word in words:
            assert word not in value, (key, word)
        if sid in str(key) and str(key) not in mine:
            assert 0 < await redis.ttl(key) <= keys.DEDUPE_TTL_S, key


def _link(channel: str, ts: str) -> str:
    return f"https://acme.slack.com/archives/{channel}/p{ts.replace('.', '')}"


def _said(emu: SlackEmulator, user: str, words: str) -> list[str]:
    return [e.text for e in emu.ephemerals_for(user) if words in e.text]


async def _assert_deleted(emu: SlackEmulator, redis: Redis, team: str, sid: str, by: str) -> None:
    notice = (await emu.wait_for(lambda: by_slot(emu, "deleted"), timeout=5))[0]
    assert f"<@{by}> deleted this session's data" in block_text(notice)
    await emu.wait_for(lambda: _said(emu, by, "data is deleted"), timeout=5)
    await _assert_nothing_left(redis, team, sid, ["eco water bottle"])
    home = await redis.zrange(keys.home_recent(team), 0, -1)
    assert sid not in home


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_the_creator_deletes_a_session(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, redis: Redis
) -> None:
    card, _story = await start_story(emu)
    sid = session_of(card)
    assert sid is not None
    everything = [str(k) async for k in redis.scan_iter(match="sl:*")]
    assert any(sid in k for k in everything)
    for key in everything:  # the job queue is the only key that doesn't expire
        # -1: no expiry (-2: gone since the SCAN, like a lease just given back)
        assert key in keys.JOB_STREAMS or await redis.ttl(key) != -1, key
    ack = await emu.slash_command(f"delete {_link(card.channel, card.ts)}")
    assert ack.ok and ack.seconds < 1.0
    await _assert_deleted(emu, redis, emu.team_id, sid, "U0ALICE")
    notice = by_slot(emu, "deleted")[0]
    assert notice.thread_ts == card.ts
    shown = emu.message(card.channel, card.ts)
    assert shown is not None and "deleted by <@U0ALICE>" in block_text(shown)
    assert "eco water bottle" not in block_text(shown)  # the card keeps none of its words


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_only_the_creator_or_an_admin_may_delete(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, redis: Redis
) -> None:
    card, story = await start_story(emu)
    sid = session_of(card)
    assert sid is not None
    ack = await emu.slash_command(f"delete {sid}", user="U0BOB")
    assert ack.ok
    await emu.wait_for(lambda: _said(emu, "U0BOB", "Only the person who started"), timeout=5)
    assert await app.session(emu.team_id, sid) is not None
    assert by_slot(emu, "deleted") == []

    emu.workspace.user("U0CAROL").is_admin = True
    await emu.slash_command(
        f"delete {_link(card.channel, story.ts)}?thread_ts={card.ts}", user="U0CAROL"
    )
    await _assert_deleted(emu, redis, emu.team_id, sid, "U0CAROL")

    # The story message keeps its buttons in Slack; a click says the session is gone.
    await emu.click(story.ts, "story_approve", channel=card.channel)
    await emu.wait_for(lambda: _said(emu, "U0ALICE", "was deleted by <@U0CAROL>"), timeout=5)
    await _assert_nothing_left(redis, emu.team_id, sid, ["eco water bottle"])


async def test_export_writes_a_real_session_as_json(
    emu: SlackEmulator,
    llm: FakeLLM,
    app: AppUnderTest,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    card, _story = await start_story(emu)
    sid = session_of(card)
    out = tmp_path / "export.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "export",
        "--team",
        emu.team_id,
        "--session",
        str(sid),
        "--redis-url",
        redis_server.url,
        "--out",
        str(out),
        cwd=REPO,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["format"] == "storyloop-export/1" and doc["team_id"] == emu.team_id
    (exported,) = doc["sessions"]
    assert exported["session"]["id"] == sid
    assert exported["session"]["prompt"] == "eco water bottle launch"
    assert [v["number"] for v in exported["versions"]["story"]] == [1]
    assert exported["versions"]["story"][0]["story"]["scenes"]
    assert exported["costs"]["usage"]["completion_tokens"] > 0
    text = out.read_text(encoding="utf-8")
    assert emu.bot_token not in text and "xoxb-" not in text
