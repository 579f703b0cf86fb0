"""Settings: one clear error listing everything missing, token shapes checked, secrets hidden."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bot.config import Settings, SettingsError, load_settings

BOT = "xoxb-1111-2222-botsecretvalue"
APP = "xapp-1-A0-appsecretvalue"
KEY = "sk-openaisecretvalue123"
SIGNING = "signingsecretvalue"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    prefixes = ("SLACK_", "OPENAI_", "STORYLOOP_")
    for name in list(os.environ):
        if name.startswith(prefixes) or name in ("REDIS_URL", "PORT", "LOG_LEVEL"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def load(**overrides: Any) -> Settings:
    return load_settings(_env_file=None, **overrides)


def error(**overrides: Any) -> str:
    with pytest.raises(SettingsError) as info:
        load(**overrides)
    return str(info.value)


def test_socket_mode_settings_load() -> None:
    settings = load(SLACK_BOT_TOKEN=BOT, OPENAI_API_KEY=KEY, SLACK_APP_TOKEN=APP)
    assert settings.socket_mode
    assert settings.slack_bot_token.get_secret_value() == BOT
    assert settings.approval == "owner"


def test_all_missing_settings_are_listed_in_one_error_with_hints() -> None:
    message = error()
    assert "SLACK_BOT_TOKEN is missing" in message
    assert "OPENAI_API_KEY is missing" in message
    assert "OAuth & Permissions" in message
    assert "API key" in message
    assert message.count("get it from:") == 2


def test_http_mode_without_signing_secret_mentions_both_options() -> None:
    message = error(SLACK_BOT_TOKEN=BOT, OPENAI_API_KEY=KEY)
    assert "SLACK_SIGNING_SECRET is missing" in message
    assert "SLACK_APP_TOKEN" in message
    assert "Socket Mode" in message


def test_http_mode_with_signing_secret_loads() -> None:
    settings = load(SLACK_BOT_TOKEN=BOT, OPENAI_API_KEY=KEY, SLACK_SIGNING_SECRET=SIGNING)
    assert not settings.socket_mode


def test_blank_app_token_means_http_mode() -> None:
    settings = load(
        SLACK_BOT_TOKEN=BOT, OPENAI_API_KEY=KEY, SLACK_APP_TOKEN="", SLACK_SIGNING_SECRET=SIGNING
    )
    assert settings.slack_app_token is None
    assert not settings.socket_mode


def test_blank_app_token_without_signing_secret_is_the_http_mode_error() -> None:
    assert "SLACK_SIGNING_SECRET is missing" in error(
        SLACK_BOT_TOKEN=BOT, OPENAI_API_KEY=KEY, SLACK_APP_TOKEN=""
    )


@pytest.mark.parametrize(
    ("overrides", "name", "prefix"),
    [
        (
            {"SLACK_BOT_TOKEN": "xoxp-user-token", "SLACK_APP_TOKEN": APP},
            "SLACK_BOT_TOKEN",
            "xoxb-",
        ),
        ({"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": "xoxb-wrong"}, "SLACK_APP_TOKEN", "xapp-"),
    ],
)
def test_wrong_token_prefix_is_rejected(overrides: dict[str, str], name: str, prefix: str) -> None:
    message = error(OPENAI_API_KEY=KEY, **overrides)
    assert f"{name} is invalid" in message
    assert prefix in message


def test_wrong_values_never_echo_the_secret() -> None:
    message = error(OPENAI_API_KEY=KEY, SLACK_BOT_TOKEN="xoxp-leakme-123", SLACK_APP_TOKEN=APP)
    assert "leakme" not in message


def test_secrets_never_appear_in_str_or_repr() -> None:
    settings = load(
        SLACK_BOT_TOKEN=BOT, OPENAI_API_KEY=KEY, SLACK_APP_TOKEN=APP, SLACK_SIGNING_SECRET=SIGNING
    )
    for text in (str(settings), repr(settings), str(settings.model_dump())):
        for secret in (BOT, APP, KEY, SIGNING):
            assert secret not in text


def test_secrets_lists_every_configured_secret() -> None:
    settings = load(
        SLACK_BOT_TOKEN=BOT, OPENAI_API_KEY=KEY, SLACK_APP_TOKEN=APP, SLACK_SIGNING_SECRET=SIGNING
    )
    assert sorted(settings.secrets()) == sorted([BOT, APP, SIGNING, KEY])


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://slack-gov.com/api", "https://slack-gov.com/api/"),
        ("https://slack-gov.com/api/", "https://slack-gov.com/api/"),
    ],
)
def test_slack_api_url_gets_a_trailing_slash(given: str, expected: str) -> None:
    settings = load(
        SLACK_BOT_TOKEN=BOT, OPENAI_API_KEY=KEY, SLACK_APP_TOKEN=APP, SLACK_API_URL=given
    )
    assert settings.slack_api_url == expected


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("SLACK_APP_TOKEN", APP)
    monkeypatch.setenv("STORYLOOP_APPROVAL", "anyone")
    settings = load()
    assert settings.approval == "anyone"


def test_invalid_tunable_is_reported_by_its_variable_name() -> None:
    message = error(SLACK_BOT_TOKEN=BOT, OPENAI_API_KEY=KEY, SLACK_APP_TOKEN=APP, PORT="0")
    assert "PORT is invalid" in message


def test_blank_openai_key_is_reported_as_missing() -> None:
    message = error(SLACK_BOT_TOKEN=BOT, OPENAI_API_KEY="   ", SLACK_APP_TOKEN=APP)
    assert "OPENAI_API_KEY" in message
