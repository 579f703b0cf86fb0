"""Prompt tokens per regeneration as a thread grows, next to "send the whole history".

Two views of the same question:

- **model**: the app's own prompt builder (``bot.pipeline.prompts.story_messages``) fed a
  session after F feedback turns (F = 1..100), each answered like the local LLM answers, with
  the running list of requested changes folded exactly as the worker folds it;
- **measured**: one real session through the running app whose regenerations happen after
  1, 2, 5, 10, 20, 50 and 100 feedback turns; prompt tokens as the LLM server counted them.

The naive figure is what a bot that sends every turn verbatim would send: the same system
prompt, brief and current story, plus the whole conversation. Tokens are counted the way the
local LLM server counts them (1 token ≈ 4 characters of message content).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench.load import FEEDBACK
from bot.pipeline import prompts
from bot.pipeline.models import Scene, Session, Story, Turn, TurnRole

CHECKPOINTS = (1, 2, 5, 10, 20, 50, 100)


def count_tokens(messages: Sequence[prompts.ChatMessage]) -> int:
    return math.ceil(sum(len(m["content"]) for m in messages) / 4)


def naive_messages(
    session: Session, current: Story | None, history: Sequence[Turn]
) -> list[prompts.ChatMessage]:
    """Same instructions and story as Storyloop's prompt, plus every turn verbatim."""
    base = prompts.story_messages(session, current, [], [])
    conversation = "\n".join(
        f"{f'<@{t.user_id}>' if t.role is TurnRole.USER else 'Storyloop'}: {t.text}"
        for t in history
    )
    user = base[1]["content"]
    head, _, tail = user.rpartition("\n\n")
    content = f"{head}\n\nThe whole thread so far:\n{conversation}\n\n{tail}"
    return [base[0], {"role": "user", "content": content}]


def sample_story() -> Story:
    """A 30-second story about as long as the local LLM writes (4 scenes)."""
    scenes = tuple(
        Scene(
            number=i,
            duration_s=d,
            visuals=f"Shot {i} of 4: eco water bottle launch for busy commuters, framed "
            + ("wide at dawn" if i == 1 else "close, in warm light"),
            voiceover=f"Scene {i}: the story of eco water bottle launch for busy commuters "
            "moves forward.",
        )
        for i, d in enumerate((8, 8, 7, 7), start=1)
    )
    return Story(
        title="Storyloop: eco water bottle launch for busy commuters",
        logline="A 30-second story about eco water bottle launch for busy commuters.",
        narrative='A 30-second short built from the brief "eco water bottle launch for busy '
        'commuters". It opens on a quiet establishing image, builds through 4 scenes of rising '
        "tension, and closes on a single lingering shot that answers the opening.",
        scenes=scenes,
    )


def feedback_text(turn: int) -> str:
    return f"{FEEDBACK[(turn - 1) % len(FEEDBACK)]} (note {turn})"


def model_curve(max_turns: int = 100, user_id: str = "U0B000001") -> list[dict[str, Any]]:
    """Prompt tokens of a regeneration after F feedback turns, F = 1..max_turns."""
    session = Session(
        id="bench",
        team_id="T0TEAM",
        channel_id="C0BENCH",
        owner_id=user_id,
        prompt="bench-s000001 eco water bottle launch for busy commuters",
        duration_s=30,
        version=1,
        created_at=0.0,
        updated_at=0.0,
    )
    story = sample_story()
    history: list[Turn] = []
    users: list[Turn] = []
    changes: tuple[str, ...] = ()
    rows = []
    for f in range(1, max_turns + 1):
        text = feedback_text(f)
        user = Turn(role=TurnRole.USER, ts=f"{f}.0", user_id=user_id, text=text)
        line = f"<@{user_id}>: {text}"  # how the local LLM picks the change it plans
        answer = Turn(
            role=TurnRole.ASSISTANT,
            ts=user.ts,
            text=f"Got it — I'll work in: {line[:120]}",
            planned_changes=(line[:100],),
        )
        history += [user, answer]
        users.append(user)
        changes = prompts.fold_changes(changes, answer.planned_changes)
        s = session.model_copy(update={"requested_changes": changes})
        ours = prompts.story_messages(s, story, users, changes)
        rows.append(
            {
                "turns": f,
                "storyloop": count_tokens(ours),
                "naive": count_tokens(naive_messages(s, story, history)),
            }
        )
    return rows


def flatness(rows: Sequence[dict[str, Any]], key: str, lo: int = 20, hi: int = 100) -> float | None:
    """Largest relative deviation from the value at ``lo`` turns, over ``lo..hi`` turns."""
    values = {int(r["turns"]): float(r[key]) for r in rows if r.get(key) is not None}
    if lo not in values or not any(t >= hi for t in values):
        return None
    ref = values[lo]
    window = [v for t, v in values.items() if lo <= t <= hi]
    return round(max(abs(v - ref) / ref for v in window), 3)


def measured_script(checkpoints: Sequence[int]) -> list[tuple[str, str]]:
    """Replies up to each checkpoint, then a Regenerate, for the load generator."""
    ops: list[tuple[str, str]] = []
    done = 0
    for point in checkpoints:
        ops += [("reply", feedback_text(t)) for t in range(done + 1, point + 1)]
        ops.append(("regenerate", ""))
        done = point
    return ops


def measured_rows(
    checkpoints: Sequence[int],
    records: Sequence[dict[str, Any]],
    tag: int,
    session: Session | None,
    versions: dict[int, Story],
    history: Sequence[Turn],
) -> list[dict[str, Any]]:
    """Rows for the measured session: its story requests in order are v1, then one per
    checkpoint. The naive figure is computed from the session's real history and versions in
    Redis (regeneration k rewrites version k, with every turn up to its checkpoint)."""
    story_tokens = [
        int(r["prompt_tokens"])
        for r in sorted(records, key=lambda x: x["start"])
        if r.get("schema") == "story" and r.get("tag") == tag
    ]
    rows = []
    for k, point in enumerate(checkpoints, start=1):
        ours = story_tokens[k] if k < len(story_tokens) else None
        naive = None
        if session is not None:
            upto: list[Turn] = []
            users_seen = 0
            for turn in history:
                if turn.role is TurnRole.USER:
                    users_seen += 1
                    if users_seen > point:
                        break
                upto.append(turn)
            current = session.model_copy(update={"version": k})
            naive = count_tokens(naive_messages(current, versions.get(k), upto))
        rows.append({"turns": point, "storyloop": ours, "naive": naive})
    return rows
