"""What a deleted session looks like in Slack: the notice in its thread and its card."""

from __future__ import annotations

from bot.pipeline import deletion as say
from bot.slack.story_blocks import Rendered, rendered, section


def deleted_notice(by: str) -> Rendered:
    text = say.deleted_notice(by)
    return rendered(text, [section("deleted", text)])


def deleted_card(by: str) -> Rendered:
    """Replaces the whole card: prompt, tone, stages and costs are session data too."""
    text = say.deleted_card(by)
    return rendered(text, [section("card_deleted", text)])
