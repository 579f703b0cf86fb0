"""mrkdwn helpers: escaping neutralises every control sequence, cutting never breaks an entity."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack.mrkdwn import escape, mention, split_text, truncate

ENTITY_AT = re.compile(r"&(amp|lt|gt);")

# Text rich in the characters the helpers care about.
tricky_text = st.lists(
    st.sampled_from([*"ab &<>;\n!@#|", "&amp;", "<!channel>", "\n\n", "é", "🎬"]), max_size=200
).map("".join)


def entities_intact(piece: str) -> bool:
    """Every "&" in escaped text must start a whole entity."""
    return all(ENTITY_AT.match(piece, i) for i, ch in enumerate(piece) if ch == "&")


# --- escape -----------------------------------------------------------------------------------


def test_escape_replaces_only_the_three_control_characters() -> None:
    assert escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert escape("\"quotes\" 'apostrophes' *bold* _it_ ~s~ `code`") == (
        "\"quotes\" 'apostrophes' *bold* _it_ ~s~ `code`"
    )


def test_escape_does_ampersand_first_so_typed_entities_stay_literal() -> None:
    assert escape("&amp; &lt;") == "&amp;amp; &amp;lt;"


def test_escape_neutralises_slack_control_sequences() -> None:
    out = escape("<!channel> <!here> <@U123> <#C1> <!subteam^S1> <https://x|y>")
    assert "<" not in out
    assert ">" not in out
    assert out.startswith("&lt;!channel&gt;")


@settings(database=None)
@given(tricky_text)
def test_escape_leaves_no_raw_angle_brackets_and_every_ampersand_is_an_entity(text: str) -> None:
    out = escape(text)
    assert "<" not in out
    assert ">" not in out
    assert entities_intact(out)
    unescaped = out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert unescaped == text


# --- mention ----------------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", ["U0ALICE", "W0ENTERPRISE1", "U123"])
def test_mention_builds_a_mention_for_user_ids(user_id: str) -> None:
    assert mention(user_id) == f"<@{user_id}>"


@pytest.mark.parametrize(
    "user_id",
    ["", "U", "u123", "C0TALES", "U123\n", "U1> <!channel", "<@U1>", "U12 3", "Ü123", "B0BOT"],
)
def test_mention_refuses_anything_that_is_not_a_user_id(user_id: str) -> None:
    out = mention(user_id)
    assert "<" not in out
    assert out == escape(user_id)


# --- truncate ---------------------------------------------------------------------------------


def test_truncate_keeps_short_text_unchanged() -> None:
    assert truncate("hello", 5) == "hello"
    assert truncate("", 1) == ""


def test_truncate_adds_an_ellipsis_when_it_cuts() -> None:
    out = truncate("hello world", 8)
    assert out == "hello w…"
    assert len(out) <= 8


def test_truncate_never_cuts_inside_an_entity() -> None:
    assert truncate("ab&amp;cd", 5) == "ab…"
    assert truncate("ab&lt;cd", 7) == "ab&lt;…"


def test_truncate_never_leaves_half_a_composed_mention() -> None:
    assert truncate("hi <@U0ALICE> there", 10) == "hi…"


def test_truncate_rejects_a_non_positive_limit() -> None:
    with pytest.raises(ValueError):
        truncate("x", 0)


@settings(database=None)
@given(tricky_text, st.integers(min_value=1, max_value=300))
def test_truncate_respects_the_limit_and_keeps_entities_whole(text: str, limit: int) -> None:
    out = truncate(escape(text), limit)
    assert len(out) <= limit
    assert entities_intact(out)


# --- split_text -------------------------------------------------------------------------------


def test_split_text_returns_short_text_as_one_piece_and_nothing_for_blank_text() -> None:
    assert split_text("one piece", 100) == ["one piece"]
    assert split_text("", 100) == []
    assert split_text(" \n\n ", 100) == []


def test_split_text_prefers_paragraphs_then_lines_then_words() -> None:
    para = "a" * 40
    assert split_text(f"{para}\n\n{para}", 60) == [para, para]
    assert split_text(f"{para}\n{para}", 60) == [para, para]
    assert split_text("aaaa bbbb cccc", 9) == ["aaaa bbbb", "cccc"]


def test_split_text_packs_small_paragraphs_together() -> None:
    text = "\n\n".join(["p"] * 10)
    assert split_text(text, 8) == ["p\n\np\n\np", "p\n\np\n\np", "p\n\np\n\np", "p"]


def test_split_text_hard_cuts_a_long_word_outside_entities() -> None:
    pieces = split_text("abc" + "&amp;" * 10, 7)
    assert all(len(p) <= 7 for p in pieces)
    assert all(entities_intact(p) for p in pieces)
    assert "".join(pieces) == "abc" + "&amp;" * 10


def test_split_text_rejects_a_limit_too_small_for_an_entity() -> None:
    with pytest.raises(ValueError):
        split_text("abc", 4)


@settings(database=None, max_examples=300)
@given(tricky_text, st.integers(min_value=5, max_value=120))
def test_split_text_pieces_fit_keep_entities_and_lose_no_text(text: str, limit: int) -> None:
    escaped = escape(text)
    pieces = split_text(escaped, limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert all(p == p.strip() for p in pieces)
    assert all(entities_intact(p) for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(escaped.split())


def test_split_text_handles_sixty_thousand_characters_quickly() -> None:
    text = ("word " * 2000 + "\n" + "x" * 5000 + "\n\n") * 5
    pieces = split_text(text, 3000)
    assert all(len(p) <= 3000 for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())
