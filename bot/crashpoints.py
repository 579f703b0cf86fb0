"""Named crash points for the fault tests: the process kills itself (SIGKILL) at the named one.

Off unless ``STORYLOOP_CRASH_POINT`` names a point; a ``point@N`` form crashes on the N-th pass.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "after_intake",  # a trigger is recorded durably; Slack has not been acked yet
    "after_claim",  # a worker took a job and holds the lease
    "after_placeholder_post",  # a placeholder is posted in Slack, its ts not yet recorded
    "after_llm",  # the LLM answered, nothing committed yet
    "after_commit",  # the result is committed, Slack not yet updated
    "after_deliver",  # Slack shows the result, the job is not yet acknowledged
    "after_image",  # an image came back and is spooled; not yet uploaded
    "after_upload",  # an image is in the thread; its set's review message not yet posted
    "after_storyboard_llm",  # the storyboard's shot list came back; nothing committed yet
    "video_created",  # the provider accepted a clip; its job id isn't recorded yet
    "after_video_id",  # a clip's job id is recorded; polling not started
    "mid_poll",  # a clip is being polled
    "after_video_download",  # a clip's bytes are spooled; not yet uploaded
    "after_video_upload",  # the video is in the thread; its review message isn't
    "stream_started",  # chat.startStream answered; its ts is not yet recorded in the ledger
    "mid_stream",  # a streamed answer's ts is recorded and some text appended; not finished
)
STAGE_POINTS = POINTS[6:]  # reached only in the later stages (tests/chaos/test_stage_crashes.py)
# Reached while a thread answer streams (tests/chaos/test_stream_crashes.py).
STREAM_POINTS = ("stream_started", "mid_stream")
# Reached by `/story delete` in the worker, in this order (bot/jobs/deletion.py,
# tests/e2e/test_delete_kill9.py). Kept out of POINTS: no other job passes them.
DELETE_POINTS = (
    "delete_seized",  # the delete job took the session's lease; nothing done yet
    "delete_noticed",  # the notice is in the thread; indexes and data untouched
    "delete_unindexed",  # out of the thread index and App Home; the data not yet erased
    "delete_erased",  # data erased, tombstone left; card not edited, deleter not answered
)


class CrashPoints:
    """``partner``: the replica's other process (the listener, seen from a worker process) —
    a crash point stands for the replica crashing, so it takes both down, the partner first."""

    def __init__(self, spec: str | None, *, partner: int | None = None) -> None:
        name, _, nth = (spec or "").partition("@")
        self.name = name or None
        self.remaining = int(nth) if nth.isdigit() else 1
        self.partner = partner

    def reach(self, point: str) -> None:
        if point != self.name:
            return
        self.remaining -= 1
        if self.remaining <= 0:
            if self.partner is not None:
                os.kill(self.partner, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
