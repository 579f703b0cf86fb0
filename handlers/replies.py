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
# Starting from anywhere (handlers/mentions.py, handlers/shortcuts.py, handlers/workspace.py).
MENTION_HINT = (
    "Mention me with what the story is about, for example "
    "`@storyloop 30s a launch video for our refillable bottle`. "
    "Or run `/story` on its own to fill in a form."
)
MENTION_IN_THREAD = (
    "I only follow the threads of my own stories. To start one, mention me in the channel "
    "itself (not in a thread) with what the story is about, for example "
    "`@storyloop 30s a launch video for our refillable bottle`."
)
OTHER_WORKSPACE = (
    "Storyloop isn't installed in this workspace, so it can't start or change a story here."
)
