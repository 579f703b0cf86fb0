"""The key layout a Redis Cluster needs (storage/keys.py)."""

from __future__ import annotations

from redis.crc import key_slot

from bot.pipeline.triggers import Approve, Feedback, StartSession
from storage import keys


def test_shard_tags_fall_in_even_twelfths_of_the_slot_range() -> None:
    width = 16384 // keys.SHARDS
    for index, tag in enumerate(keys.SHARD_TAGS):
        assert key_slot(tag.encode()) // width == index, tag


def test_a_workspaces_keys_and_its_jobs_share_one_slot() -> None:
    team, sid = "T0ACME", "s1"
    start = StartSession(
        team_id=team, channel_id="C1", user_id="U1", session_id=sid, prompt="p", duration_s=30
    )
    reply = Feedback(
        team_id=team,
        channel_id="C1",
        user_id="U1",
        session_id=sid,
        thread_ts="1.1",
        ts="2.2",
        text="t",
    )
    click = Approve(
        team_id=team,
        channel_id="C1",
        user_id="U1",
        session_id=sid,
        version=1,
        message_ts="1.1",
        action_ts="3.3",
    )
    named = [
        keys.session(team, sid),
        keys.history(team, sid),
        keys.lock(team, sid),
        keys.thread(team, "C1", "1.1"),
        keys.home_recent(team),
        keys.spend(team, "20260101"),
        keys.dedupe(team, "x"),
        keys.jobs_stream(team),
        keys.session(team, "{evil}"),
        *(keys.done(t.job_id) for t in (start, reply, click)),
        *(keys.llm_results(t.job_id) for t in (start, reply, click)),
    ]
    assert len({key_slot(k.encode()) for k in named}) == 1, named


def test_workspaces_spread_over_every_shard() -> None:
    assert {keys.shard(f"T{i:04d}") for i in range(200)} == set(range(keys.SHARDS))
