"""Short answers handlers give at ack time. Plain words; no exception text ever."""

from __future__ import annotations

UNAVAILABLE = (
    "Storyloop couldn't confirm it recorded that: its storage isn't answering right now. "
    "If nothing appears within a minute, please try again."
)
NO_DMS = (
    "Storyloop works in channels, where your team can join the thread. Run `/story` in a public "
    "channel, or in a private channel after inviting me with `/invite @storyloop`."
)
STALE_BUTTON = "That button doesn't work any more — use the buttons on the latest story message."
