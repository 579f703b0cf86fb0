"""`/story` text → request: durations, bounds, prompt limits, cleaning, and plain-words errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pipeline.request import (
    DEFAULT_DURATION_S,
    MAX_DURATION_S,
    MAX_PROMPT_CHARS,
    MIN_DURATION_S,
    RequestError,
    StoryRequest,
    clean_text,
    parse_command_text,
    parse_duration,
    validate,
)

PYTHON_ERROR_MARKERS = ("Traceback", "Error:", "Exception", "invalid literal", "NoneType", "line ")


def parsed(text: str) -> StoryRequest:
    result = parse_command_text(text)
    assert isinstance(result, StoryRequest), result
    return result


def refused(text: str) -> str:
    result = parse_command_text(text)
    assert isinstance(result, RequestError), result
    return result.message


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15),
        ("30s", 30),
        ("1m", 60),
        ("90s", 90),
        ("1m30s", 90),
        ("30 s", 30),
        ("45 sec", 45),
        ("90sec", 90),
        ("2 minutes", 120),
        ("30S", 30),
    ],
)
def test_duration_prefix_is_read_and_removed_from_the_prompt(text: str, seconds: int) -> None:
    request = parsed(f"{text} eco water bottle launch")
    assert request.duration_s == seconds
    assert request.prompt == "eco water bottle launch"


@pytest.mark.parametrize("token", ["30", "3", "1.5m", "2h", "s", "m", "", "abc", "10x"])
def test_parse_duration_refuses_what_is_not_a_whole_duration(token: str) -> None:
    assert parse_duration(token) is None


@pytest.mark.parametrize("seconds", [MIN_DURATION_S, MAX_DURATION_S])
def test_duration_bounds_are_inclusive(seconds: int) -> None:
    assert parsed(f"{seconds}s a launch video").duration_s == seconds


def test_three_minutes_is_exactly_the_upper_bound() -> None:
    assert parsed("3m a launch video").duration_s == 180


@pytest.mark.parametrize(("text", "seconds"), [("4s", 4), ("181s", 181), ("4m", 240), ("0s", 0)])
def test_out_of_range_duration_is_refused_with_the_bounds(text: str, seconds: int) -> None:
    message = refused(f"{text} a launch video")
    assert "between 5 s and 180 s" in message
    assert f"you asked for {seconds} s" in message


@pytest.mark.parametrize("text", ["3 friends hike", "10x faster onboarding", "2024 recap"])
def test_a_leading_number_without_a_unit_is_prompt_text(text: str) -> None:
    request = parsed(text)
    assert request.prompt == text
    assert request.duration_s == DEFAULT_DURATION_S


@pytest.mark.parametrize("token", ["1.5m", "2h", "1,5m", "500ms", "2hours"])
def test_a_duration_it_cannot_read_is_refused_not_taken_as_prompt(token: str) -> None:
    message = refused(f"{token} foo")
    assert "couldn't read the duration" in message
    assert token in message


@pytest.mark.parametrize("text", ["30s", "30 s", "1m", "  2m  "])
def test_duration_alone_asks_for_a_prompt(text: str) -> None:
    assert "Add a prompt" in refused(text)


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\x00\u200b"])
def test_no_text_means_open_the_modal(text: str) -> None:
    assert parse_command_text(text) is None


def test_minutes_and_seconds_separated_by_a_space_add_up() -> None:
    request = parsed("1m 30s eco bottle")
    assert (request.duration_s, request.prompt) == (90, "eco bottle")


def test_duration_followed_by_a_newline_is_still_the_duration() -> None:
    request = parsed("60s\nfoo bar")
    assert (request.duration_s, request.prompt) == (60, "foo bar")


# --- prompt ----------------------------------------------------------------------------------


def test_prompt_of_exactly_the_limit_is_accepted() -> None:
    assert len(parsed("x" * MAX_PROMPT_CHARS).prompt) == MAX_PROMPT_CHARS


def test_prompt_over_the_limit_is_refused_naming_the_limit() -> None:
    message = refused("30s " + "x" * (MAX_PROMPT_CHARS + 1))
    assert "2,000" in message
    assert "2,001" in message


def test_limit_is_counted_after_cleaning() -> None:
    assert isinstance(parse_command_text("x" * MAX_PROMPT_CHARS + "\x00" * 50), StoryRequest)


@pytest.mark.parametrize("text", ["🎉🎉🎉", "!!! ???", "30s 🚀 ✨", "— … —", "👨\u200d👩\u200d👧"])
def test_symbols_or_emoji_only_is_refused(text: str) -> None:
    assert "not only symbols or emoji" in refused(text)


def test_control_and_format_characters_are_stripped() -> None:
    assert parsed("eco\x00 bottle\x1b[31m launch\u200b\u200e\ufeff").prompt == (
        "eco bottle[31m launch"
    )


def test_newlines_and_tabs_are_kept() -> None:
    assert parsed("line one\nline two\tend").prompt == "line one\nline two\tend"


def test_clean_text_trims_and_keeps_ordinary_text() -> None:
    assert clean_text("  \u200bhello wörld ✨\n ") == "hello wörld ✨"


def test_validate_cleans_the_tone_and_drops_a_blank_one() -> None:
    assert validate("a launch", 30, tone=" \u200b ") == StoryRequest("a launch", 30, None)
    assert validate("a launch", 30, tone="warm\x00") == StoryRequest("a launch", 30, "warm")


def test_validate_refuses_an_overlong_tone() -> None:
    result = validate("a launch", 30, tone="x" * 101)
    assert isinstance(result, RequestError)
    assert "100" in result.message


@pytest.mark.parametrize(
    "text",
    [
        "4s x",
        "181s x",
        "1.5m x",
        "30s",
        "🎉",
        "30s " + "y" * 3000,
        "9999s x",
        "999m x",
        "\u0663\u0660s x",
    ],
)
def test_messages_are_plain_words_without_python_errors(text: str) -> None:
    result = parse_command_text(text)
    if isinstance(result, RequestError):
        assert not any(marker in result.message for marker in PYTHON_ERROR_MARKERS)


@settings(database=None, max_examples=300)
@given(st.text(max_size=60))
def test_parse_is_total_and_never_raises(text: str) -> None:
    result = parse_command_text(text)
    assert result is None or isinstance(result, StoryRequest | RequestError)
    if isinstance(result, StoryRequest):
        assert MIN_DURATION_S <= result.duration_s <= MAX_DURATION_S
        assert 0 < len(result.prompt) <= MAX_PROMPT_CHARS
        assert result.prompt == clean_text(result.prompt)
    if isinstance(result, RequestError):
        assert not any(marker in result.message for marker in PYTHON_ERROR_MARKERS)
