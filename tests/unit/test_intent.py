"""Keyword intent: only short, plain "rewrite it" replies count; everything else goes to the LLM."""

from __future__ import annotations

import pytest

from bot.pipeline.intent import wants_regenerate


@pytest.mark.parametrize(
    "text",
    [
        "regenerate",
        "Regenerate!",
        "regenerate the story",
        "Rewrite it",
        "try again",
        "please regenerate",
        "<@U0BOT> regenerate",
        "<@U0BOT|storyloop> regenerate please",
        "redo it",
        "make a new version",
        "write a new version",
        "try again with these changes",
        "ok, rewrite the script now",
        "can you regenerate it please",
        "  REGENERATE  ",
    ],
)
def test_plain_requests_to_rewrite_count(text: str) -> None:
    assert wants_regenerate(text) is True


@pytest.mark.parametrize(
    "text",
    [
        "I think the regenerate button is nice",
        "make it funnier",
        "don't regenerate yet",
        "don't regenerate",
        "do not rewrite it",
        "no, don't try again",
        "never regenerate",
        "try again later",
        "regenerate the ending with a dog instead of a cat",
        "rewrite it so the hero is a bottle",
        "",
        "<@U0BOT>",
    ],
)
def test_everything_else_is_not_a_keyword_request(text: str) -> None:
    assert wants_regenerate(text) is False


def test_long_sentences_containing_regenerate_do_not_count() -> None:
    text = "regenerate " + "with a much longer opening shot and a calmer voice " * 3
    assert len(text) > 80
    assert wants_regenerate(text) is False


def test_mention_does_not_count_towards_the_length() -> None:
    mentions = " ".join(f"<@U{i:08d}>" for i in range(8))
    assert len(mentions) > 80
    assert wants_regenerate(f"{mentions} regenerate") is True
