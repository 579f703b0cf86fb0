"""The console's Block Kit text renderer, the typed-word → button matcher and the modal forms."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from bot.console import clicks, forms
from bot.console.payloads import Workspace
from bot.console.render import Names, controls, mrkdwn, render_blocks, render_view
from bot.slack.start_blocks import start_modal

NAMES = Names(users={"U0YOU": "you", "U0BOT": "storyloop"}, channels={"C0CONSOLE": "console"})
WS = Workspace()


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def md(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def button(label: str, action_id: str, value: str = "{}") -> dict[str, Any]:
    return {"type": "button", "text": plain(label), "action_id": action_id, "value": value}


def review_blocks() -> list[dict[str, Any]]:
    """A reference-images review message, shaped as bot/slack/stage_blocks.py builds it."""
    return [
        {"type": "header", "text": plain("Reference images v1")},
        {"type": "context", "elements": [md("4 images · $0.13 for this version")]},
        {
            "type": "section",
            "block_id": "v1_img0",
            "text": md("*1 · Hero* (character)\n_Character sheet of the hero_"),
            "accessory": button("Redo", "stage_redo", '{"item":1}'),
        },
        {
            "type": "section",
            "block_id": "v1_img1",
            "text": md("*2 · Main location* (location)"),
            "accessory": button("Retry", "stage_redo", '{"item":2}'),
        },
        {
            "type": "section",
            "block_id": "v1_img2",
            "text": md("*3 · Key prop* (prop)"),
            "accessory": button("Redo", "stage_redo", '{"item":3}'),
        },
        {"type": "divider"},
        {
            "type": "actions",
            "block_id": "review",
            "elements": [
                button("Approve", "story_approve"),
                button("Regenerate all", "story_regenerate"),
            ],
        },
    ]


# --- mrkdwn ---------------------------------------------------------------------------------


def test_mrkdwn_resolves_mentions_channels_links_and_entities() -> None:
    text = "<@U0YOU> in <#C0CONSOLE>: see <https://x.test/a|the draft> &amp; <https://y.test>"
    assert (
        mrkdwn(text, NAMES) == "@you in #console: see the draft (https://x.test/a) & https://y.test"
    )
    assert mrkdwn("<@U0OTHER> and <@U0BOB|bob>", NAMES) == "@U0OTHER and @bob"
    assert mrkdwn("<!here> <!subteam^S0ED|@editors>") == "@here @editors"


def test_escaped_user_text_stays_literal_and_never_becomes_a_mention() -> None:
    # The app escapes user/LLM text; decoding must show it as typed, not resolve it.
    assert mrkdwn("&lt;!channel&gt; &lt;@U0YOU&gt; a &amp;lt; b", NAMES) == (
        "<!channel> <@U0YOU> a &lt; b"
    )


def test_dates_show_in_local_time_and_fall_back_when_unreadable() -> None:
    stamp = 1767225600
    expected = datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")
    assert mrkdwn(f"<!date^{stamp}^{{date_short_pretty}} {{time}}|Jan 1>") == expected
    assert mrkdwn(f"<!date^{stamp}^{{date_short}}|Jan 1>") == expected[:10]
    assert mrkdwn("<!date^soon^{date}|some day>") == "some day"


# --- blocks ---------------------------------------------------------------------------------


def test_a_review_message_reads_in_order_with_its_buttons() -> None:
    lines = render_blocks(review_blocks(), NAMES)
    assert lines[0] == "# Reference images v1"
    assert lines[1] == "  4 images · $0.13 for this version"
    assert lines[2:5] == ["*1 · Hero* (character)", "_Character sheet of the hero_", "  [Redo 1]"]
    assert "  [Retry]" in lines  # a label that appears once keeps its plain name
    assert "  [Redo 3]" in lines
    assert "─" * 60 in lines
    assert lines[-1] == "[Approve] [Regenerate all]"


def test_fields_images_menus_and_unknown_blocks_are_shown_not_dropped() -> None:
    blocks = [
        {"type": "section", "text": md("Costs"), "fields": [md("*Images*\n$0.13"), md("*Video*")]},
        {
            "type": "image",
            "image_url": "https://img.test/a.png",
            "alt_text": "a",
            "title": plain("Hero"),
        },
        {
            "type": "actions",
            "block_id": "cmp",
            "elements": [
                {
                    "type": "static_select",
                    "action_id": "older",
                    "placeholder": plain("Older"),
                    "options": [
                        {"text": plain("v2"), "value": "2"},
                        {"text": plain("v1"), "value": "1"},
                    ],
                },
                {**button("Open", "open"), "url": "https://x.test"},
            ],
        },
        {"type": "markdown", "text": "**bold** line\nsecond"},
        {
            "type": "rich_text",
            "elements": [
                {
                    "type": "rich_text_section",
                    "elements": [
                        {"type": "text", "text": "hi "},
                        {"type": "user", "user_id": "U0YOU"},
                    ],
                }
            ],
        },
        {"type": "table", "rows": []},
    ]
    lines = render_blocks(blocks, NAMES)
    assert lines[:4] == ["Costs", "  *Images*", "  $0.13", "  *Video*"]
    assert "[image] Hero: https://img.test/a.png" in lines
    assert "<Older ▾: v2 | v1> [Open ↗ https://x.test]" in lines
    assert "**bold** line" in lines and "second" in lines
    assert "hi @U0YOU" in lines
    assert lines[-1] == "[table block]"


def test_the_start_modal_renders_as_a_titled_box_with_inputs_and_footer() -> None:
    lines = render_view(start_modal(channel_id="C0CONSOLE"), NAMES)
    assert lines[0].startswith("┌─ New story ")
    assert lines[-1].startswith("└")
    body = "\n".join(lines)
    assert "│ What is the story about?: <An eco water bottle launch, told by the bottle>" in body
    assert "│ Video length: 30 s" in body
    assert "Tone (optional)" in body
    assert "│ [Start] [Cancel]" in body


# --- typed words → buttons ----------------------------------------------------------------------


def test_duplicate_labels_are_numbered_by_their_row_and_matched_that_way() -> None:
    found = controls(review_blocks())
    assert [c.handle for c in found] == ["redo 1", "retry", "redo 3", "approve", "regenerate all"]
    hit = clicks.find("Redo 3", [found])
    assert isinstance(hit, clicks.Hit) and hit.control.element["value"] == '{"item":3}'
    assert clicks.find("redo", [found]) == clicks.Ambiguous(("redo 1", "redo 3"))


def test_duplicate_labels_without_a_row_number_are_numbered_by_position() -> None:
    blocks = [{"type": "actions", "elements": [button("Pick", "a"), button("Pick", "b")]}]
    assert [c.handle for c in controls(blocks)] == ["pick 1", "pick 2"]


def test_labels_match_exactly_by_beginning_by_action_id_and_with_bare_version_numbers() -> None:
    blocks = [
        {
            "type": "actions",
            "elements": [
                button("Generate video (≈ $1.20)", "video_confirm"),
                button("Cancel", "video_cancel"),
            ],
        },
        {
            "type": "section",
            "text": md("*v1* · first"),
            "accessory": button("Restore v1", "restore"),
        },
    ]
    found = [controls(blocks)]
    for typed, label in [
        ("generate video", "Generate video (≈ $1.20)"),
        ("confirm", "Generate video (≈ $1.20)"),
        ("CANCEL", "Cancel"),
        ("restore 1", "Restore v1"),
        ("restore v1", "Restore v1"),
    ]:
        hit = clicks.find(typed, found)
        assert isinstance(hit, clicks.Hit), typed
        assert hit.control.label == label


def test_long_lines_are_replies_never_clicks() -> None:
    found = [controls(review_blocks())]
    assert clicks.find("approve this please but make the hero a cat first", found) is None
    assert clicks.find("make it funnier", found) is None


def test_the_modal_is_searched_before_older_messages() -> None:
    message = [{"type": "actions", "elements": [button("Approve", "story_approve")]}]
    modal = [{"type": "actions", "elements": [button("Approve", "modal_approve")]}]
    hit = clicks.find("approve", [controls(modal), controls(message)])
    assert isinstance(hit, clicks.Hit) and hit.surface == 0
    assert hit.control.element["action_id"] == "modal_approve"


def test_menus_take_a_choice_by_label_and_explain_themselves_without_one() -> None:
    blocks = [
        {
            "type": "actions",
            "block_id": "cmp",
            "elements": [
                {
                    "type": "static_select",
                    "action_id": "older",
                    "placeholder": plain("Older"),
                    "options": [
                        {"text": plain("v2 (current)"), "value": "2"},
                        {"text": plain("v1"), "value": "1"},
                    ],
                }
            ],
        }
    ]
    found = [controls(blocks)]
    hit = clicks.find("older 1", found)  # "1" is v1 here, not the first option
    assert isinstance(hit, clicks.Hit) and hit.option is not None and hit.option["value"] == "1"
    hit = clicks.find("older v2", found)
    assert isinstance(hit, clicks.Hit) and hit.option is not None and hit.option["value"] == "2"
    assert isinstance(clicks.find("older", found), clicks.MenuOnly)
    assert isinstance(clicks.find("older v7", found), clicks.MenuOnly)


def test_typos_of_a_button_get_a_hint() -> None:
    found = [controls(review_blocks())]
    assert clicks.near_miss("aprove", found) == "approve"
    assert clicks.near_miss("make the hero a cat", found) is None


# --- forms ----------------------------------------------------------------------------------


def _fields() -> dict[str, forms.Field]:
    return {f.block_id: f for f in forms.fields(start_modal(channel_id="C0CONSOLE"))}


def test_form_questions_list_choices_and_what_enter_keeps() -> None:
    fields = _fields()
    assert forms.question(fields["duration_block"]).startswith("Video length — 1) 15 s, 2) 30 s")
    assert forms.question(fields["duration_block"]).endswith("[Enter keeps: 30 s]")
    assert forms.question(fields["tone_block"]) == "Tone (optional) [Enter skips]"


def test_form_answers_become_the_state_slack_would_submit() -> None:
    fields = _fields()
    duration = fields["duration_block"]
    assert forms.answer(duration, "3", WS)["selected_option"]["value"] == "45"  # position
    assert forms.answer(duration, "90", WS)["selected_option"]["value"] == "90"  # value
    assert forms.answer(duration, "", WS)["selected_option"]["value"] == "30"  # kept
    with pytest.raises(forms.Invalid, match="Pick one of"):
        forms.answer(duration, "9", WS)  # not "90 s": a number is never a label's beginning
    with pytest.raises(forms.Invalid, match="required"):
        forms.answer(fields["prompt_block"], "", WS)
    assert forms.answer(fields["prompt_block"], "a cat heist", WS) == {
        "type": "plain_text_input",
        "value": "a cat heist",
    }
    assert forms.answer(fields["tone_block"], "", WS) == {"type": "plain_text_input", "value": None}


def test_people_and_numbers_are_checked_before_they_are_sent() -> None:
    people = forms.Field("b", "a", "Approvers", True, {"type": "multi_users_select"})
    assert forms.answer(people, "you, U0bob", WS)["selected_users"] == ["U0YOU", "U0BOB"]
    with pytest.raises(forms.Invalid, match="isn't a person"):
        forms.answer(people, "bob smith", WS)
    count = forms.Field("q", "n", "Approvals", True, {"type": "number_input", "min_value": "2"})
    with pytest.raises(forms.Invalid, match="At least 2"):
        forms.answer(count, "1", WS)
    with pytest.raises(forms.Invalid, match="A number"):
        forms.answer(count, "two", WS)


def test_state_has_every_input_and_the_menus_chosen_or_shown() -> None:
    view = start_modal(channel_id="C0CONSOLE")
    view["blocks"].append(
        {
            "type": "actions",
            "block_id": "cmp",
            "elements": [
                {
                    "type": "static_select",
                    "action_id": "older",
                    "options": [{"text": plain("v1"), "value": "1"}],
                    "initial_option": {"text": plain("v1"), "value": "1"},
                },
                {"type": "static_select", "action_id": "newer", "options": []},
            ],
        }
    )
    answers = {"prompt_block": {"type": "plain_text_input", "value": "a cat heist"}}
    state = forms.state(view, answers, WS)
    assert state["prompt_block"]["prompt_input"]["value"] == "a cat heist"
    assert state["duration_block"]["duration_select"]["selected_option"]["value"] == "30"
    assert state["cmp"] == {
        "older": {"type": "static_select", "selected_option": {"text": plain("v1"), "value": "1"}}
    }
    chosen = {"cmp": {"newer": {"type": "static_select", "selected_option": {"value": "2"}}}}
    assert forms.state(view, answers, WS, chosen)["cmp"]["newer"]["selected_option"] == {
        "value": "2"
    }
