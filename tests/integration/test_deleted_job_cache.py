"""A job of a deleted session drops the LLM answers cached for it (real redis-server): every
step of that job, and nothing of another job — not even one whose id the first one's would
match as a glob pattern."""

from __future__ import annotations

from redis.asyncio import Redis

from storage import keys
from storage.repository import Repository

JOB = "start:T1:sess[1]*"  # glob characters are taken literally
OTHER = "start:T1:sess11x"  # matches JOB's text as a glob pattern, and must be kept
THIRD = "msg:T1:C1:100.2"


async def test_forget_llm_results_drops_every_step_of_one_job(redis: Redis) -> None:
    repo = Repository(redis, session_ttl_s=86400)
    for job, step in [(JOB, "story:v1"), (JOB, "images:v2:plan"), (OTHER, "story:v1")]:
        await repo.cache_llm(job, step, f"the story of {job}")
    await repo.cache_llm(THIRD, "reply:100.2", "an answer")

    await repo.forget_llm_results(JOB)

    assert await repo.cached_llm(JOB, "story:v1") is None
    assert await repo.cached_llm(JOB, "images:v2:plan") is None
    assert await repo.cached_llm(OTHER, "story:v1") == f"the story of {OTHER}"
    assert await repo.cached_llm(THIRD, "reply:100.2") == "an answer"
    assert await redis.ttl(keys.llm_results(OTHER)) > 0
    await repo.forget_llm_results(JOB)  # nothing left: a no-op
