"""The reply of a streamed feedback answer, decoded while its JSON is still arriving."""

from __future__ import annotations

import itertools
import json

import pytest

from bot.pipeline.partial_json import FieldScanner

REPLY = 'Line one\nTab\there, "quoted", back\\slash, slash/ — café 😀 & <!channel> done'


def answer(reply: object = REPLY, *, ascii_only: bool = True, first: bool = True) -> str:
    other = {"planned_changes": ["a", "b"], "targets": [1], "wants_regenerate": False}
    data = {"reply": reply, **other} if first else {**other, "reply": reply}
    return json.dumps(data, ensure_ascii=ascii_only)


def scan(chunks: list[str]) -> tuple[FieldScanner, list[str]]:
    scanner = FieldScanner("reply")
    seen = []
    for chunk in chunks:
        if scanner.feed(chunk):
            seen.append(scanner.text)
    return scanner, seen


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("ascii_only", [True, False])
@pytest.mark.parametrize("first", [True, False])
def test_the_whole_text_decodes_like_json_loads(ascii_only: bool, first: bool) -> None:
    text = answer(ascii_only=ascii_only, first=first)
    scanner, _ = scan([text])
    assert scanner.text == json.loads(text)["reply"] == REPLY
    assert scanner.done


@pytest.mark.parametrize("ascii_only", [True, False])
def test_every_split_point_gives_the_same_value(ascii_only: bool) -> None:
    """A chunk may end anywhere: inside an escape, inside \\uXXXX, between surrogate halves."""
    text = answer(ascii_only=ascii_only)
    for cut in range(len(text) + 1):
        scanner, _ = scan([text[:cut], text[cut:]])
        assert scanner.text == REPLY, cut


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_the_value_only_grows_and_each_step_is_a_prefix(size: int) -> None:
    text = answer()
    _scanner, seen = scan(pieces(text, size))
    assert seen[-1] == REPLY
    for earlier, later in itertools.pairwise(seen):
        assert later.startswith(earlier) and len(later) > len(earlier)
    # No step shows half an escape: every value seen is a prefix of the decoded reply.
    assert all(REPLY.startswith(step) for step in seen)


def test_a_surrogate_pair_split_across_chunks_becomes_one_character() -> None:
    text = '{"reply": "a\\ud83d\\ude00b"}'
    cut = text.index("\\ude00")
    scanner, seen = scan([text[:cut], text[cut:]])
    assert scanner.text == "a😀b"
    assert seen == ["a", "a😀b"]  # the high half alone is never shown


def test_lone_surrogates_are_replaced_not_passed_on() -> None:
    scanner, _ = scan(['{"reply": "x\\ud83dy\\ude00z"}'])
    assert scanner.text == "x\ufffdy\ufffdz"


def test_a_nested_reply_key_or_a_reply_in_a_value_is_not_the_reply() -> None:
    text = json.dumps(
        {
            "planned_changes": [{"reply": "nested"}, "the word reply"],
            "note": "reply",
            "reply": "the real one",
        }
    )
    scanner, _ = scan(pieces(text, 3))
    assert scanner.text == "the real one"


def test_prose_and_code_fences_around_the_object_are_skipped() -> None:
    text = 'Sure! {not json} here it is:\n```json\n{"reply": "fenced \\"ok\\""}\n```'
    scanner, _ = scan(pieces(text, 5))
    assert scanner.text == 'fenced "ok"'


def test_no_reply_or_a_non_string_reply_finds_nothing() -> None:
    assert scan(['{"planned_changes": [], "targets": [2]}'])[0].text == ""
    assert scan(['{"reply": null, "x": "y"}'])[0].text == ""
    assert scan(["Sorry, I can't help with that."])[0].text == ""


def test_unicode_as_is_and_as_escapes_agree() -> None:
    raw, _ = scan(pieces(answer(ascii_only=False), 4))
    escaped, _ = scan(pieces(answer(ascii_only=True), 4))
    assert raw.text == escaped.text == REPLY


def test_text_after_the_reply_is_not_read_into_it() -> None:
    scanner = FieldScanner("reply")
    scanner.feed('{"reply": "done"')
    assert scanner.done and scanner.text == "done"
    assert not scanner.feed(', "planned_changes": ["x"]}')
    assert scanner.text == "done"
