"""The Slack app manifests: valid against Slack's published JSON Schema, and exactly the app we run.

Slack's schema (draft-07) catches misspelled keys, wrong types and out-of-range lengths offline.
The assertions below pin what the schema cannot know: the scopes, events and settings the code
relies on, and that manifest.yml (Socket Mode) and manifest.http.yml (HTTP mode) stay in step.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from bot.oauth import BOT_SCOPES, REDIRECT_PATH

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = "manifest.schema.1.0.0.json"
# Prefer the team's shared copy (checked out beside the repo); fall back to the vendored one.
SHARED_SCHEMA_DIR = REPO.parent / "shared" / "slack-manifest-schema"
VENDORED_SCHEMA_DIR = REPO / "tests" / "fixtures" / "slack-manifest-schema"

SOCKET_MANIFEST = REPO / "manifest.yml"
HTTP_MANIFEST = REPO / "manifest.http.yml"

EXPECTED_BOT_SCOPES = {
    "commands",
    "chat:write",
    "channels:history",
    "groups:history",
    "channels:join",
    "files:write",  # the external upload flow: getUploadURLExternal + completeUploadExternal
    "files:read",  # files.info + url_private: a reference image or clip read back (video)
    "app_mentions:read",  # "@storyloop 30s <prompt>" starts a session (app_mention)
    "usergroups:read",  # approvers may be a user group: usergroups.list / usergroups.users.list
    "users:read",  # /story delete: users.info is_admin / is_owner (the creator or an admin)
}
EXPECTED_BOT_EVENTS = {"message.channels", "message.groups", "app_mention", "app_home_opened"}
# HTTP mode only (OAuth distribution): Slack sends these only to apps subscribed to them.
OAUTH_BOT_EVENTS = {"app_uninstalled", "tokens_revoked"}
EXPECTED_SHORTCUTS = [
    {"type": "global", "callback_id": "new_story"},
    {"type": "message", "callback_id": "turn_into_story"},
]
EVENTS_PATH = "/slack/events"


def _schema_path() -> Path:
    for directory in (SHARED_SCHEMA_DIR, VENDORED_SCHEMA_DIR):
        candidate = directory / SCHEMA_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{SCHEMA_FILE} in neither {SHARED_SCHEMA_DIR} nor {VENDORED_SCHEMA_DIR}"
    )


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = json.loads(_schema_path().read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def socket_manifest() -> dict[str, Any]:
    return _load(SOCKET_MANIFEST)


@pytest.fixture(scope="module")
def http_manifest() -> dict[str, Any]:
    return _load(HTTP_MANIFEST)


def _errors(validator: Draft7Validator, manifest: dict[str, Any]) -> list[str]:
    return sorted(
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(manifest)
    )


# --- schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SOCKET_MANIFEST, HTTP_MANIFEST], ids=lambda p: p.name)
def test_manifest_is_valid_against_slack_schema(validator: Draft7Validator, path: Path) -> None:
    assert _errors(validator, _load(path)) == []


def test_vendored_schema_matches_shared_copy() -> None:
    vendored = VENDORED_SCHEMA_DIR / SCHEMA_FILE
    assert vendored.is_file()
    assert (VENDORED_SCHEMA_DIR / "LICENSE").is_file()
    shared = SHARED_SCHEMA_DIR / SCHEMA_FILE
    if not shared.is_file():
        pytest.skip("no shared/ checkout beside the repo; the vendored copy is in use")
    assert json.loads(vendored.read_text(encoding="utf-8")) == json.loads(
        shared.read_text(encoding="utf-8")
    ), "tests/fixtures/slack-manifest-schema is out of date; copy the shared schema again"


def test_schema_falls_back_to_vendored_copy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shared = SHARED_SCHEMA_DIR / SCHEMA_FILE
    if shared.is_file():
        assert _schema_path() == shared, "the shared copy is preferred when present"
    monkeypatch.setattr(sys.modules[__name__], "SHARED_SCHEMA_DIR", tmp_path / "no-shared")
    assert _schema_path() == VENDORED_SCHEMA_DIR / SCHEMA_FILE


def _with_unknown_top_level_key(m: dict[str, Any]) -> None:
    m["settingz"] = {}


def _with_misspelled_setting(m: dict[str, Any]) -> None:
    m["settings"]["socket_mode"] = m["settings"].pop("socket_mode_enabled")


def _with_long_description(m: dict[str, Any]) -> None:
    m["display_information"]["description"] = "x" * 141


def _with_short_long_description(m: dict[str, Any]) -> None:
    m["display_information"]["long_description"] = "Too short."


def _with_bad_command(m: dict[str, Any]) -> None:
    m["features"]["slash_commands"][0]["command"] = "story"


def _with_non_boolean_interactivity(m: dict[str, Any]) -> None:
    m["settings"]["interactivity"]["is_enabled"] = "yes"


def _without_bot_display_name(m: dict[str, Any]) -> None:
    del m["features"]["bot_user"]["display_name"]


def _with_relative_request_url(m: dict[str, Any]) -> None:
    m["settings"]["event_subscriptions"]["request_url"] = "/slack/events"


@pytest.mark.parametrize(
    "break_it",
    [
        _with_unknown_top_level_key,
        _with_misspelled_setting,
        _with_long_description,
        _with_short_long_description,
        _with_bad_command,
        _with_non_boolean_interactivity,
        _without_bot_display_name,
        _with_relative_request_url,
    ],
    ids=lambda f: f.__name__.lstrip("_"),
)
def test_validator_rejects_broken_manifest(
    validator: Draft7Validator,
    socket_manifest: dict[str, Any],
    break_it: Callable[[dict[str, Any]], None],
) -> None:
    broken = copy.deepcopy(socket_manifest)
    break_it(broken)
    assert _errors(validator, broken), f"{break_it.__name__} was accepted"


# --- what the app needs ------------------------------------------------------------------------


@pytest.fixture(params=["socket", "http"])
def manifest(
    request: pytest.FixtureRequest,
    socket_manifest: dict[str, Any],
    http_manifest: dict[str, Any],
) -> dict[str, Any]:
    return socket_manifest if request.param == "socket" else http_manifest


def test_identity(manifest: dict[str, Any]) -> None:
    info = manifest["display_information"]
    assert info["name"] == "Storyloop"
    assert manifest["features"]["bot_user"]["display_name"] == "storyloop"
    # The schema carries this pattern under a non-standard "regex" keyword that jsonschema ignores.
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", info["background_color"])
    assert len(info["description"]) <= 140
    assert 175 <= len(info["long_description"]) <= 4000


def test_exact_bot_scopes(manifest: dict[str, Any]) -> None:
    scopes = manifest["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}, "no user or optional scopes"
    assert len(scopes["bot"]) == len(set(scopes["bot"]))
    assert set(scopes["bot"]) == EXPECTED_BOT_SCOPES


def test_exact_bot_events(manifest: dict[str, Any]) -> None:
    events = manifest["settings"]["event_subscriptions"]
    oauth = OAUTH_BOT_EVENTS if "redirect_urls" in manifest["oauth_config"] else set()
    assert set(events["bot_events"]) == EXPECTED_BOT_EVENTS | oauth
    assert "user_events" not in events


def test_story_command(manifest: dict[str, Any]) -> None:
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == ["/story"]
    story = commands[0]
    assert story["usage_hint"] == "[duration] <prompt>"
    assert story.get("should_escape", False) is False


def test_interactivity_and_settings(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True  # the no-text /story modal and buttons
    assert settings["token_rotation_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    assert manifest["oauth_config"].get("token_management_enabled", False) is False


def test_home_tab_only(manifest: dict[str, Any]) -> None:
    home = manifest["features"].get("app_home", {})
    assert home.get("home_tab_enabled") is True, "App Home: my sessions, the team's, New story"
    assert home.get("messages_tab_enabled", False) is False, "Storyloop doesn't work in DMs"


def test_exactly_the_two_shortcuts(manifest: dict[str, Any]) -> None:
    shortcuts = manifest["features"]["shortcuts"]
    assert [{"type": s["type"], "callback_id": s["callback_id"]} for s in shortcuts] == (
        EXPECTED_SHORTCUTS
    )
    assert all(len(s["name"]) <= 24 for s in shortcuts)


def test_shortcut_ids_match_the_handlers(manifest: dict[str, Any]) -> None:
    source = (REPO / "handlers" / "shortcuts.py").read_text(encoding="utf-8")
    for item in manifest["features"]["shortcuts"]:
        assert f'"{item["callback_id"]}"' in source, item


def _request_urls(manifest: dict[str, Any]) -> list[str | None]:
    return [
        manifest["features"]["slash_commands"][0].get("url"),
        manifest["settings"]["event_subscriptions"].get("request_url"),
        manifest["settings"]["interactivity"].get("request_url"),
        manifest["settings"]["interactivity"].get("message_menu_options_url"),
    ]


def test_socket_manifest_uses_socket_mode(socket_manifest: dict[str, Any]) -> None:
    assert socket_manifest["settings"]["socket_mode_enabled"] is True
    assert _request_urls(socket_manifest) == [None, None, None, None]


def test_http_manifest_uses_one_public_events_url(http_manifest: dict[str, Any]) -> None:
    assert http_manifest["settings"]["socket_mode_enabled"] is False
    urls = _request_urls(http_manifest)
    assert None not in urls, "slash command url, event and interactivity request_url are all needed"
    assert len(set(urls)) == 1, urls
    url = urls[0]
    assert url is not None
    assert url.startswith("https://")
    assert url.endswith(EVENTS_PATH)
    assert url == "https://storyloop.example.com/slack/events"


def test_variants_differ_only_in_transport(
    socket_manifest: dict[str, Any], http_manifest: dict[str, Any]
) -> None:
    stripped = copy.deepcopy(http_manifest)
    stripped["settings"]["socket_mode_enabled"] = True
    del stripped["features"]["slash_commands"][0]["url"]
    del stripped["settings"]["event_subscriptions"]["request_url"]
    del stripped["settings"]["interactivity"]["request_url"]
    del stripped["settings"]["interactivity"]["message_menu_options_url"]
    del stripped["oauth_config"]["redirect_urls"]
    events = stripped["settings"]["event_subscriptions"]
    events["bot_events"] = [e for e in events["bot_events"] if e not in OAUTH_BOT_EVENTS]
    assert stripped == socket_manifest


def test_http_manifest_redirects_to_the_oauth_path(http_manifest: dict[str, Any]) -> None:
    """OAuth distribution: the one redirect URL is Bolt's redirect path on the events host,
    and the scopes Bolt asks for at /slack/install are the manifest's."""
    urls = http_manifest["oauth_config"]["redirect_urls"]
    assert urls == ["https://storyloop.example.com" + REDIRECT_PATH]
    assert list(BOT_SCOPES) == http_manifest["oauth_config"]["scopes"]["bot"]
