"""OAuth distribution: Bolt's stores on Redis — installations (each workspace's bot token) and
OAuth states — and the settings of Bolt's install flow.

They implement slack_sdk's async interfaces so Bolt's own OAuth flow (``/slack/install``,
``/slack/oauth_redirect``) and its ``authorize`` use them unchanged. Each is one key per
workspace or per state, so no script is needed: a state is consumed by one ``GETDEL`` (two
replicas can't both accept it), an installation is written whole by one ``SET``.
"""

from __future__ import annotations

import json
import logging
import secrets
from logging import Logger
from typing import Any

from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.async_installation_store import (
    AsyncInstallationStore,
)
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient

from storage import keys
from storage.connection import Client

log = logging.getLogger(__name__)


def _owner(
    enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None
) -> str:
    """Whose installation a key holds: the org for an org-wide install, else the workspace."""
    owner = enterprise_id if is_enterprise_install else team_id
    return owner or enterprise_id or "-"


class RedisInstallationStore(AsyncInstallationStore):
    """The latest installation of each workspace, as JSON under ``keys.installation``."""

    def __init__(self, redis: Client) -> None:
        self.redis = redis

    @property
    def logger(self) -> Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        owner = _owner(
            installation.enterprise_id, installation.team_id, installation.is_enterprise_install
        )
        data = installation.to_dict_for_copying()
        data["installed_at"] = installation.installed_at  # a float; the copy holds a datetime
        await self.redis.set(keys.installation(owner), json.dumps(data))

    async def async_save_bot(self, bot: Bot) -> None:
        """Bolt saves the installation too (which holds the bot); nothing more to keep."""

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        raw = await self.redis.get(
            keys.installation(_owner(enterprise_id, team_id, is_enterprise_install))
        )
        if raw is None:
            return None
        return Installation(**json.loads(raw))

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        found = await self.async_find_installation(
            enterprise_id=enterprise_id,
            team_id=team_id,
            is_enterprise_install=is_enterprise_install,
        )
        if found is None or found.bot_token is None:
            return None
        return found.to_bot()

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is not None:
            return  # no user tokens are kept: a user's revoke leaves the bot's installation
        await self.redis.delete(keys.installation(_owner(enterprise_id, team_id, False)))
        if enterprise_id and not team_id:
            await self.redis.delete(keys.installation(enterprise_id))


class RedisStateStore(AsyncOAuthStateStore):
    """OAuth states, each valid for ``ttl_s`` and accepted once."""

    def __init__(self, redis: Client, ttl_s: int = keys.OAUTH_STATE_TTL_S) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    @property
    def logger(self) -> Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(24)
        await self.redis.set(keys.oauth_state(state), "1", ex=self.ttl_s)
        return state

    async def async_consume(self, state: str) -> bool:
        if not state or len(state) > 200:
            return False
        return await self.redis.getdel(keys.oauth_state(state)) is not None


INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
# The bot scopes asked for at install: manifest.http.yml's (tests/unit/test_manifest.py).
BOT_SCOPES = (
    "commands",
    "chat:write",
    "channels:history",
    "groups:history",
    "channels:join",
    "files:write",
    "files:read",
    "app_mentions:read",
    "usergroups:read",
    "users:read",
)
NOT_INSTALLED = (
    "Storyloop isn't installed in this workspace (or it was removed). "
    "Ask a workspace admin to add it again."
)


def oauth_settings(
    client_id: str,
    client_secret: str,
    installations: RedisInstallationStore,
    states: RedisStateStore,
) -> AsyncOAuthSettings:
    """Bolt's OAuth flow on our stores: ``/slack/install`` and ``/slack/oauth_redirect``."""
    return AsyncOAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(BOT_SCOPES),
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        installation_store=installations,
        installation_store_bot_only=True,
        state_store=states,
        state_expiration_seconds=states.ttl_s,
    )


def installation_authorize(
    settings: AsyncOAuthSettings, client: AsyncWebClient
) -> AsyncInstallationStoreAuthorize:
    """Bolt's authorize for OAuth apps (the one ``AsyncOAuthSettings`` would build), with its
    ``auth.test`` cache on.

    Why our own instance: Bolt's default leaves the cache off, so every request would wait for
    an ``auth.test`` before its ack, and the only way to turn it on afterwards is Bolt's private
    ``app._async_authorize``. ``AsyncApp(authorize=…)`` accepts an ``AsyncAuthorize`` instance
    beside ``oauth_settings`` (a plain function is refused there). The cache is keyed by token
    and consulted only after the installation store has answered, so an uninstalled or revoked
    workspace is refused at once: its installation is gone, whatever was cached for its token.
    """
    return AsyncInstallationStoreAuthorize(
        logger=logging.getLogger("slack_bolt"),  # the app's, as build_app gives Bolt
        installation_store=settings.installation_store,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        bot_only=True,
        cache_enabled=True,
        client=client,
    )
