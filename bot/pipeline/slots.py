"""Names of delivery slots: what each message the app posts in a thread is recorded under in
the session's delivery ledger (slot → the message's ts), so a retried job finds the message an
earlier attempt posted instead of posting it again.

They live in the domain because more than the job that posts writes them: the thread-reply
intake sets a reply's stream mark in the same round trip that records the reply
(``storage/lua/intake_feedback.lua``), so the job that answers it has one round trip less.
"""

from __future__ import annotations

# Ledger entry "{slot}:stream" = "1": a stream may have been started for the slot. A retried
# answer that finds it, but no ts, looks in the thread for a stream whose ts was never recorded.
STREAM_MARK = ":stream"


def reply(ts: str) -> str:
    """The slot of the answer to the thread reply posted at ``ts``."""
    return f"reply:{ts}"


def stream_mark(slot: str) -> str:
    return slot + STREAM_MARK
