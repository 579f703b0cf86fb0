"""Every Redis key name and TTL Storyloop uses, in one place.

Per-workspace data lives under ``sl:t:{team}:…`` so one workspace's keys can never name
another's session. Queue keys are global: a job carries its team.
"""

from __future__ import annotations

JOBS_STREAM = "sl:q:jobs"
JOBS_GROUP = "workers"
DEDUPE_TTL_S = 24 * 3600  # Slack retries within minutes; a day is generous and bounded
LLM_CACHE_TTL_S = 24 * 3600


def _t(team_id: str) -> str:
    return f"sl:t:{team_id}"


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
    """Prefix the feedback intake script completes with a session id (``…:s:{sid}:hist``)."""
    return f"{_t(team_id)}:s:"


def dedupe(team_id: str, identity: str) -> str:
    return f"{_t(team_id)}:seen:{identity}"


def llm_result(job_id: str, step: str) -> str:
    return f"sl:llm:{job_id}:{step}"


def done(job_id: str) -> str:
    """Set in the same commit that finishes a job: what is left to deliver if we crash after."""
    return f"sl:done:{job_id}"


def eager(team_id: str, job_id: str) -> str:
    """How the listener's eager lane left a job: running (or died), shown, handed."""
    return f"{_t(team_id)}:eager:{job_id}"


EAGER_TTL_S = 3600  # a job waits for a worker for seconds, not hours


# --- App Home (bot/jobs/home.py): per-team indexes of sessions, and whose Home to re-publish ---
HOME_TEAMS = "sl:home:teams"  # set: teams with someone who opened the Home (the publisher's list)
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
