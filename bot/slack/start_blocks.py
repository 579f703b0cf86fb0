"""The "new story" modal: prompt, length, tone, where the story lives and who approves it.

One builder for every way in — ``/story`` with no text, the App Home's New story button, the
global shortcut, the "Turn into a story" message shortcut — so they all ask the same questions.
``channel_id=None`` (opened outside a channel) adds a channel picker. The approval inputs start
at the workspace default, so a creator who changes nothing gets what the workspace decided.
"""

from __future__ import annotations

from typing import Any

from bot.pipeline.models import MAX_QUORUM, ApprovalPolicy, Rule
from bot.slack.actions import (
    APPROVERS_ACTION,
    APPROVERS_BLOCK,
    CHANNEL_ACTION,
    CHANNEL_BLOCK,
    DEFAULT_DURATION_S,
    DURATION_ACTION,
    DURATION_BLOCK,
    DURATION_CHOICES_S,
    GROUP_ACTION,
    GROUP_BLOCK,
    PROMPT_ACTION,
    PROMPT_BLOCK,
    PROMPT_MAX_CHARS,
    QUORUM_ACTION,
    QUORUM_BLOCK,
    RULE_ACTION,
    RULE_BLOCK,
    START_MODAL_CALLBACK,
    TONE_ACTION,
    TONE_BLOCK,
    TONE_MAX_CHARS,
)
from bot.slack.story_blocks import Block, plain_text

RULE_LABELS: dict[Rule, str] = {
    Rule.OWNER: "Only me",
    Rule.ANYONE: "Anyone in the channel",
    Rule.NAMED: "The people or group below",
    Rule.QUORUM: "A number of teammates (below)",
}


def _option(text: str, value: str) -> Block:
    return {"text": plain_text(text), "value": value}


def _input(
    block_id: str, label: str, element: Block, *, optional: bool = False, hint: str = ""
) -> Block:
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "label": plain_text(label),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = plain_text(hint)
    return block


def approval_inputs(default: ApprovalPolicy) -> list[Block]:
    """Who approves: the rule, then the people, the group and the count it may need."""
    rules = [_option(label, rule.value) for rule, label in RULE_LABELS.items()]
    initial = next(o for o in rules if o["value"] == default.rule.value)
    people: Block = {
        "type": "multi_users_select",
        "action_id": APPROVERS_ACTION,
        "max_selected_items": 20,
        "placeholder": plain_text("Pick approvers"),
    }
    if default.users:
        people["initial_users"] = list(default.users)
    group: Block = {
        "type": "external_select",
        "action_id": GROUP_ACTION,
        "min_query_length": 0,
        "placeholder": plain_text("Pick a user group"),
    }
    quorum: Block = {
        "type": "number_input",
        "action_id": QUORUM_ACTION,
        "is_decimal_allowed": False,
        "min_value": "2",
        "max_value": str(MAX_QUORUM),
        "initial_value": str(max(2, default.needed)),
    }
    return [
        _input(
            RULE_BLOCK,
            "Who approves each step",
            {
                "type": "static_select",
                "action_id": RULE_ACTION,
                "options": rules,
                "initial_option": initial,
            },
            hint="Approving moves the story on, and confirms what the video will cost.",
        ),
        _input(APPROVERS_BLOCK, "Approvers", people, optional=True),
        _input(GROUP_BLOCK, "Or a user group", group, optional=True),
        _input(
            QUORUM_BLOCK,
            "Approvals needed",
            quorum,
            optional=True,
            hint="Only for “A number of teammates”: different people, one approval each.",
        ),
    ]


def start_modal(
    *,
    channel_id: str | None,
    prompt: str = "",
    default_policy: ApprovalPolicy | None = None,
) -> dict[str, Any]:
    """The "new story" modal; ``private_metadata`` carries the channel the story will live in
    (empty when the modal asks for it: ``channel_id=None``)."""
    prompt_input: Block = {
        "type": "plain_text_input",
        "action_id": PROMPT_ACTION,
        "multiline": True,
        "max_length": PROMPT_MAX_CHARS,
        "placeholder": plain_text("An eco water bottle launch, told by the bottle"),
    }
    if prompt.strip():
        # Input values are not parsed as mrkdwn: escaping would show users "&amp;".
        prompt_input["initial_value"] = prompt.strip()[:PROMPT_MAX_CHARS]
    options = [_option(f"{seconds} s", str(seconds)) for seconds in DURATION_CHOICES_S]
    initial = options[DURATION_CHOICES_S.index(DEFAULT_DURATION_S)]
    blocks: list[Block] = []
    if channel_id is None:
        blocks.append(
            _input(
                CHANNEL_BLOCK,
                "Channel",
                {
                    "type": "conversations_select",
                    "action_id": CHANNEL_ACTION,
                    "default_to_current_conversation": True,
                    # The submission then carries a response_url for the picked channel, so a
                    # channel the app can't post in is answered there, privately.
                    "response_url_enabled": True,
                    "filter": {"include": ["public", "private"], "exclude_bot_users": True},
                    "placeholder": plain_text("Where your team will review it"),
                },
                hint="The session card and its thread go there. Invite me to private channels.",
            )
        )
    blocks += [
        _input(PROMPT_BLOCK, "What is the story about?", prompt_input),
        _input(
            DURATION_BLOCK,
            "Video length",
            {
                "type": "static_select",
                "action_id": DURATION_ACTION,
                "options": options,
                "initial_option": initial,
            },
        ),
        _input(
            TONE_BLOCK,
            "Tone",
            {
                "type": "plain_text_input",
                "action_id": TONE_ACTION,
                "max_length": TONE_MAX_CHARS,
                "placeholder": plain_text("e.g. playful, cinematic, heartfelt"),
            },
            optional=True,
        ),
        *approval_inputs(default_policy or ApprovalPolicy()),
    ]
    return {
        "type": "modal",
        "callback_id": START_MODAL_CALLBACK,
        "private_metadata": channel_id or "",
        "title": plain_text("New story"),
        "submit": plain_text("Start"),
        "close": plain_text("Cancel"),
        "blocks": blocks,
    }
