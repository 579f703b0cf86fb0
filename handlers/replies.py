"""Short answers handlers give at ack time. Plain words; no exception text ever."""

from __future__ import annotations

UNAVAILABLE = (
    "Storyloop can't record that right now (its storage isn't reachable). "
    "Nothing was started — please try again in a minute."
)
NO_DMS = (
    "Storyloop works in channels, where your team can join the thread. Run `/story` in a public "
    "channel, or in a private channel after inviting me with `/invite @storyloop`."
)
STALE_BUTTON = "That button doesn't work any more — use the buttons on the latest story message."
