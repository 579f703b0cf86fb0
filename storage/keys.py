"""Every Redis key name and TTL Storyloop uses, in one place.

Per-workspace data lives under ``sl:t:{team}:{shard}:…`` so one workspace's keys can never name
another's session.

Redis Cluster: a Lua script or MULTI may only touch keys of one hash slot, so every key is
named with a hash tag (the first ``{…}`` part, the only part Redis hashes; it comes before any
session id or thread ts, so an id with braces in it can't move a key). The tag is the workspace's
*shard*, not the workspace or the session, because the scripts that matter mix levels: intake
writes a session's lease and the team's dedupe key and enqueues the job; ``commit.lua`` writes
the session, the team's thread index and App Home indexes, the job's done marker and may enqueue
replies. The job queue is one stream per shard (``jobs_stream``) in that same slot, so intake and
commit stay single atomic scripts on a cluster. A workspace maps to one of ``SHARDS`` shards by a
stable hash of its id; the shards' tags are picked to land evenly across the slot range, so a
cluster created with ``redis-cli --cluster create`` (even slot ranges) spreads them evenly over
its primaries (12: 4 each on 3 primaries, 3 on 4, 2 on 6). One workspace's load stays on one
primary — what one workspace does is bounded by Slack's own rate limits — and the number of
primaries that can share the load is bounded by ``SHARDS``. A single Redis or a Sentinel-managed
one sees the same key names.

Keys without a tag are only ever used one at a time (``HOME_TEAMS``).
"""

from __future__ import annotations

import zlib

# One tag per shard: CRC16(tag) % 16384 of shard i falls in the i-th twelfth of the slot range
# (checked by tests/unit/test_keys.py). Fixed forever: changing it would move every key.
SHARD_TAGS = (
    "w0.0",
    "w1.22",
    "w2.2",
    "w3.10",
    "w4.0",
    "w5.3",
    "w6.43",
    "w7.17",
    "w8.0",
    "w9.50",
    "w10.0",
    "w11.11",
)
SHARDS = len(SHARD_TAGS)
JOBS_GROUP = "workers"
DEDUPE_TTL_S = 24 * 3600  # Slack retries within minutes; a day is generous and bounded
LLM_CACHE_TTL_S = 24 * 3600


def shard(team_id: str) -> int:
    """The workspace's shard: a stable hash of its id (CRC32, the same in every process)."""
    return zlib.crc32(team_id.encode()) % SHARDS


def _tag(team_id: str) -> str:
    return "{" + SHARD_TAGS[shard(team_id)] + "}"


def _t(team_id: str) -> str:
    return f"sl:t:{team_id}:{_tag(team_id)}"


def jobs_stream(team_id: str) -> str:
    """The stream a workspace's jobs are queued on: its shard's, in the slot of its keys."""
    return shard_stream(shard(team_id))


def shard_stream(index: int) -> str:
    return f"sl:q:{{{SHARD_TAGS[index]}}}:jobs"


JOB_STREAMS = tuple(shard_stream(i) for i in range(SHARDS))


def job_entry(entry_id: str) -> tuple[str, str]:
    """A queued job's place (``{shard}/{stream entry id}``, storage/queue.py): its stream and
    the entry id in it."""
    index, _, raw = entry_id.partition("/")
    return shard_stream(int(index)), raw


def job_team(job_id: str) -> str:
    """The workspace a job id names: every trigger's id is ``kind:team:…``
    (bot/pipeline/triggers.py), so a job's own keys can share its workspace's slot."""
    return job_id.split(":", 2)[1] if job_id.count(":") >= 1 else job_id


def session(team_id: str, session_id: str) -> str:
    return f"{_t(team_id)}:s:{session_id}"


def history(team_id: str, session_id: str) -> str:
    return f"{session(team_id, session_id)}:hist"


def versions(team_id: str, session_id: str) -> str:
    return f"{session(team_id, session_id)}:ver"


def messages(team_id: str, session_id: str) -> str:
    """Hash: delivery slot → ts of the Slack message posted for it (placeholder ledger)."""
    return f"{session(team_id, session_id)}:msgs"


def items(team_id: str, session_id: str) -> str:
    """Hash: paid item of the generation under way (``{stage}:v{n}:{index}``) → its state."""
    return f"{session(team_id, session_id)}:items"


def cancel(team_id: str, session_id: str) -> str:
    """Set by the intake of a Cancel click: the render under way sees it between polls."""
    return f"{session(team_id, session_id)}:cancel"


def tombstone(team_id: str, session_id: str) -> str:
    """What is left of a deleted session (``/story delete``): who deleted it, when, and where
    its card is — no content. Clicks on its old buttons read it to answer that the session is
    gone, and a re-delivered job of the session reads it instead of starting over."""
    return f"{session(team_id, session_id)}:deleted"


TOMBSTONE_TTL_S = 30 * 24 * 3600  # a deleted session's buttons answer "deleted" this long


def session_match(team_id: str) -> str:
    """SCAN pattern of a workspace's keys under its sessions (the session hashes and their
    siblings); ``is_session_key`` picks the hashes out (``storyloop export``)."""
    return session(team_id, "*")


def is_session_key(team_id: str, key: str) -> bool:
    prefix = session(team_id, "")
    return key.startswith(prefix) and ":" not in key[len(prefix) :]


def session_keys(team_id: str, session_id: str) -> list[str]:
    """Every key that holds a session's own data: they live and die together (the session's
    TTL refreshes them all on each commit; ``/story delete`` removes them all). The lease
    (lock), its fence counter, the hour-long Cancel signal and the tombstone are handled
    apart."""
    return [
        session(team_id, session_id),
        history(team_id, session_id),
        versions(team_id, session_id),
        messages(team_id, session_id),
        items(team_id, session_id),
    ]


def version_field(stage: str, number: int) -> str:
    """A version's field in the versions hash: the story's are bare numbers (they came first)."""
    return str(number) if stage == "story" else f"{stage}:{number}"


def spend(team_id: str, day: str) -> str:
    """Hash: a workspace's paid spending on one UTC day (``YYYYMMDD``): item id → cost, and
    ``_total``."""
    return f"{_t(team_id)}:spend:{day}"


SPEND_TTL_S = 3 * 24 * 3600


def lock(team_id: str, session_id: str) -> str:
    return f"{session(team_id, session_id)}:lock"


def fence(team_id: str, session_id: str) -> str:
    return f"{session(team_id, session_id)}:fence"


def thread(team_id: str, channel_id: str, thread_ts: str) -> str:
    return f"{_t(team_id)}:thread:{channel_id}:{thread_ts}"


def early_replies(team_id: str, channel_id: str, thread_ts: str) -> str:
    """Replies to one of our messages whose thread isn't indexed yet (see intake_feedback.lua)."""
    return f"{_t(team_id)}:early:{channel_id}:{thread_ts}"


EARLY_REPLIES_TTL_S = 3600


def thread_prefix(team_id: str) -> str:
    """Prefix the feedback intake script completes with a session id (``…:s:{sid}:hist``,
    ``…:s:{sid}:msgs``)."""
    return f"{_t(team_id)}:s:"


def dedupe(team_id: str, identity: str) -> str:
    return f"{_t(team_id)}:seen:{identity}"


def llm_results(job_id: str) -> str:
    """Hash: step → the LLM's answer for it, kept until the step's result is committed. One
    hash per job (not a key per step), so the job's lease claim reads them all in its round
    trip (claim.lua) without knowing the steps."""
    return f"{_t(job_team(job_id))}:llm:{job_id}"


def done(job_id: str) -> str:
    """Set in the same commit that finishes a job: what is left to deliver if we crash after."""
    return f"{_t(job_team(job_id))}:done:{job_id}"


def eager(team_id: str, job_id: str) -> str:
    """How the listener's eager lane left a job: running (or died), shown, handed."""
    return f"{_t(team_id)}:eager:{job_id}"


EAGER_TTL_S = 3600  # a job waits for a worker for seconds, not hours


# --- App Home (bot/jobs/home.py): per-team indexes of sessions, and whose Home to re-publish ---
# set: teams with someone who opened the Home (the publisher's list); written on its own, never
# in a script with a team's keys (it has no team's tag)
HOME_TEAMS = "sl:home:teams"
HOME_RECENT_MAX = 100  # sessions kept in a team's "recent" index
HOME_MINE_MAX = 50  # sessions kept in one person's index (each is read to sort it into groups)
HOME_LINK_SLOT = "home:link"  # the session's thread permalink, kept in its delivery ledger


def home_recent(team_id: str) -> str:
    """Sorted set: session id → ``updated_at``; the team's most recently changed sessions."""
    return f"{_t(team_id)}:home:recent"


def home_mine(team_id: str, user_id: str) -> str:
    """Sorted set: session id → ``updated_at``; sessions one person started, may approve or
    approved."""
    return f"{_t(team_id)}:home:u:{user_id}"


def home_dirty(team_id: str) -> str:
    """Sorted set: user → when (ms, Redis clock) their Home first changed since last published."""
    return f"{_t(team_id)}:home:dirty"


def home_viewers(team_id: str) -> str:
    """Sorted set: user → when (ms) they last opened the Home; only they are published to."""
    return f"{_t(team_id)}:home:viewers"


def home_pages(team_id: str) -> str:
    """Hash: user → the page of their Home they are on (set by its paging buttons)."""
    return f"{_t(team_id)}:home:pages"


def home_hashes(team_id: str) -> str:
    """Hash: user → the ``hash`` Slack gave their last published Home (views.publish's guard
    against an older render landing after a newer one)."""
    return f"{_t(team_id)}:home:hash"


def home_pause(team_id: str) -> str:
    """Set (with the Retry-After as its expiry) when views.publish was rate limited."""
    return f"{_t(team_id)}:home:pause"


def installation(team_id: str) -> str:
    """String: the workspace's (or, for an org-wide install, the org's) Bolt installation as
    JSON — its bot token among it. One per workspace: Storyloop asks for no user tokens."""
    return f"{_t(team_id)}:install"


def oauth_state(state: str) -> str:
    """String: an OAuth ``state`` issued by ``/slack/install``, consumed once by the redirect."""
    return f"sl:oauth:state:{state}"


OAUTH_STATE_TTL_S = 600  # the user has ten minutes to click Allow


# --- Slack's rate limits as one shared budget (storage/budget.py, lua/budget.lua) ---
def budget_channel(team_id: str, channel_id: str) -> str:
    """Hash {tokens, at}: the token bucket of one channel's chat.postMessage and chat.update
    (Slack: about one message per second per channel). In the workspace's slot, so one script
    takes it together with ``budget_updates``."""
    return f"{_t(team_id)}:rl:ch:{channel_id}"


def budget_updates(team_id: str) -> str:
    """Hash {tokens, at}: the token bucket of the workspace's chat.update calls (Tier 3)."""
    return f"{_t(team_id)}:rl:upd"
