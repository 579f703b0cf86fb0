"""A Redis Cluster primary killed in the middle of a session, and its replica promoted.

The cluster is 3 primaries with one replica each (real redis-server processes). The app runs
as in production (``build_runtime``, Socket Mode, its worker) with the cluster URL. A thread
reply is being answered — the worker holds the session's lease and streams the LLM's answer
into Slack — when the primary that owns the session's hash slot is SIGKILLed. Its replica is
promoted; redis-py's cluster client must find it. The answer still ends in its one message,
the approval that follows is taken once, and the checker (tests/chaos/checker.py) finds every
trigger with exactly one outcome, versions 1..n, nothing pending.

Before the kill the test holds the primary's writes (``CLIENT PAUSE … WRITE``: the app's
writes wait, unacknowledged) and waits until its replica has the whole replication stream
(INFO replication offsets). Replication is asynchronous: without that, a write acknowledged in
the last moment before a primary dies can be lost with it (docs/RELIABILITY.md, "Redis Cluster
and Sentinel"). What this test proves is the app's side: no lost or doubled work *given* every
acknowledged write survived, across a failover its client did not see coming (the held writes
fail with the node and are retried on the promoted replica).
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import RedisCluster

from bot.pipeline.models import TurnRole as Role
from bot.slack.mrkdwn import escape
from storage import keys
from storage.connection import connect
from tests.chaos.checker import Trace, check, wait_quiescent
from tests.chaos.support import session_slot, start_story
from tests.chaos.test_stream_crashes import LINES, REPLY, answers_after
from tests.cluster.test_topologies import running_app
from tests.e2e.harness import action_ids, block_text
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.support.redis_topologies import RedisClusterProcs


@pytest.mark.timeout(150)
async def test_a_primary_killed_mid_answer_fails_over_and_nothing_is_lost_or_doubled(
    emu: SlackEmulator, llm: FakeLLM, cluster_with_replicas: RedisClusterProcs
) -> None:
    cluster = cluster_with_replicas
    trace = Trace(emu)
    probe = connect(cluster.url)
    try:
        async with running_app(emu, llm, cluster.url) as app:
            assert isinstance(app.runtime.redis, RedisCluster)  # type: ignore[union-attr]
            trigger, card, story = await start_story(trace)
            sid = trigger.session or ""
            session_key = keys.session(emu.team_id, sid)

            llm.feedback_reply = REPLY
            llm.set_latency(0.0, 60)  # the answer streams for several seconds
            reply = await trace.reply(card, "make it funnier", user="U0BOB")
            # A streaming message carries no metadata yet: it is the bot's one message after
            # the reply, still streaming — the worker holds the session's lease mid-answer.
            answer = (await emu.wait_for(lambda: answers_after(emu, card.ts, reply.ts or ""), 15))[
                0
            ]
            assert emu.streams.is_streaming("C0PUBLIC", answer.ts)

            old = cluster.primary_for(session_key)
            await asyncio.to_thread(cluster.pause_writes_and_sync, old)
            cluster.kill(old)
            assert emu.streams.is_streaming("C0PUBLIC", answer.ts)  # killed mid-answer
            new = await asyncio.to_thread(cluster.wait_failover, old, session_key)
            assert new.port != old.port and cluster.roles()[new.port] == "master"
            llm.set_latency(0.0, None)

            await emu.wait_for(
                lambda: not emu.streams.is_streaming("C0PUBLIC", answer.ts), timeout=40
            )
            # One answer: the message begun before the kill, finished after the failover.
            assert answers_after(emu, card.ts, reply.ts or "") == [answer]
            await emu.wait_for(lambda: action_ids(emu.message("C0PUBLIC", story.ts)), 20)
            approve = await trace.click(story, "story_approve", user="U0ALICE")
            assert approve.ack_ok, approve.describe()
            await emu.wait_for(lambda: session_slot(emu, sid, "approved"), timeout=30)

            quiet = await wait_quiescent(emu, probe, timeout=60, settle=2.0)
            report = await check(emu, probe, trace)
            assert quiet, report.render()
            report.assert_ok()

            # The answer is the one message the worker began before the kill, finished.
            assert session_slot(emu, sid, f"reply:{reply.ts}") == [answer]
            shown = block_text(emu.message("C0PUBLIC", answer.ts))
            assert all(escape(line) in shown for line in LINES), shown
            assert "still writing" not in shown and "<@U0BOB>" in shown
            assert len(session_slot(emu, sid, "approved")) == 1
            session = await app.session(emu.team_id, sid)
            assert session is not None and session.approved_version == 1
            repo = app.runtime.worker.repo  # type: ignore[union-attr]
            turns = [(t.role, t.user_id) for t in await repo.history(session)]
            assert turns == [(Role.USER, "U0BOB"), (Role.ASSISTANT, None)], turns
            assert await repo.version(session, 1) is not None
            assert await repo.version(session, 2) is None
    finally:
        await probe.aclose()
