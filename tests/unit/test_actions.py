"""Action ids and button values: stable wire names, and a value parser that refuses forgeries."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.slack.actions import MAX_BUTTON_VALUE_CHARS, ActionId, ButtonValue


def test_action_ids_are_the_registered_wire_names() -> None:
    # Messages already in Slack carry these strings; renaming one breaks old buttons.
    assert ActionId.APPROVE.value == "story_approve"
    assert ActionId.REGENERATE.value == "story_regenerate"
    assert ActionId.RETRY.value == "story_retry"


def test_encode_is_compact_versioned_json() -> None:
    raw = ButtonValue(session="s_1-A", version=3).encode()
    assert raw == '{"v":1,"session":"s_1-A","version":3}'
    assert json.loads(raw) == {"v": 1, "session": "s_1-A", "version": 3}


def test_parse_reads_back_what_encode_wrote() -> None:
    value = ButtonValue(session="abc", version=0)
    assert ButtonValue.parse(value.encode()) == value


@settings(database=None)
@given(
    st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    st.integers(min_value=0, max_value=10_000),
)
def test_round_trip_for_every_valid_value(session: str, version: int) -> None:
    value = ButtonValue(session=session, version=version)
    raw = value.encode()
    assert len(raw) <= MAX_BUTTON_VALUE_CHARS
    assert ButtonValue.parse(raw) == value


def test_values_are_frozen() -> None:
    value = ButtonValue(session="abc", version=1)
    with pytest.raises(ValidationError):
        value.version = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "session",
    ["", "a b", "<!channel>", "s\n", "s;", "ü", "x" * 65],
)
def test_construction_refuses_bad_sessions(session: str) -> None:
    with pytest.raises(ValidationError):
        ButtonValue(session=session, version=1)


FORGED = [
    None,
    "",
    "not json",
    "{",
    "[]",
    '"a string"',
    "null",
    "1",
    '{"session":"abc","version":1}',  # no format version
    '{"v":2,"session":"abc","version":1}',  # unknown format version
    '{"v":0,"session":"abc","version":1}',
    '{"v":"1","session":"abc","version":1}',
    '{"v":true,"session":"abc","version":1}',
    '{"v":1,"session":"abc","version":-1}',  # negative version
    '{"v":1,"session":"abc","version":10001}',
    '{"v":1,"session":"abc","version":"1"}',
    '{"v":1,"session":"abc","version":1.0}',
    '{"v":1,"session":"abc","version":true}',
    '{"v":1,"session":"abc"}',
    '{"v":1,"version":1}',
    '{"v":1,"session":"","version":1}',
    '{"v":1,"session":"a b","version":1}',
    '{"v":1,"session":"<!channel>","version":1}',
    '{"v":1,"session":"abc\\n","version":1}',
    '{"v":1,"session":["abc"],"version":1}',
    '{"v":1,"session":"' + "x" * 65 + '","version":1}',
    '{"v":1,"session":"abc","version":1,"admin":true}',  # extra field
    '{"v":1,"session":"abc","version":1} junk',  # trailing junk
    '{"v":1,"session":"abc","version":1}{}',
    '{"v":1,"session":"abc","version":1,"pad":"' + "x" * 3000 + '"}',  # oversized
    "[" * 5000 + "]" * 5000,
    "\x00",
]


@pytest.mark.parametrize("raw", FORGED)
def test_parse_refuses_forged_values_without_raising(raw: str | None) -> None:
    assert ButtonValue.parse(raw) is None


def test_parse_refuses_non_strings() -> None:
    assert ButtonValue.parse(b'{"v":1,"session":"abc","version":1}') is None  # type: ignore[arg-type]
    assert ButtonValue.parse(42) is None  # type: ignore[arg-type]


@settings(database=None)
@given(st.text(max_size=300))
def test_parse_never_raises_on_arbitrary_text(raw: str) -> None:
    ButtonValue.parse(raw)
