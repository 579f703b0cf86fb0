"""OAuth distribution for the Slack emulator: ``oauth.v2.access`` and the uninstall events.

Why a module of its own: installing into a second workspace is a flow with state of its own
(codes handed out by "Allow", one bot token per installed workspace, tokens revoked on
uninstall) that the rest of the emulator doesn't need. ``SlackEmulator`` routes
``oauth.v2.access`` here before its token check (the method authenticates with the app's
client id and secret, not a token), accepts the tokens issued here, and answers ``auth.test``
for them with their workspace.

The flow, as Bolt drives it:

1. the installer opens ``/slack/install`` on the app and is sent to Slack's authorize page with
   a ``state`` (the test reads it from the app's answer);
2. a human clicks Allow: ``authorize(team_id)`` gives the ``code`` Slack would put on the
   redirect;
3. the app's ``/slack/oauth_redirect?code=&state=`` calls ``oauth.v2.access``: the code is
   good once, for ten minutes, and only with the right client id and secret (HTTP Basic or
   form fields, as ``slack_sdk`` may send either); the answer carries a new ``xoxb-`` token.

Simplification: every installed workspace shares the emulator's one channel set and its bot
user (``U0BOT``); calls are told apart by the token each used (``ApiCall.token``).
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.emulators import slack_payloads as payloads
from tests.emulators.slack_state import JSON

if TYPE_CHECKING:
    from tests.emulators.slack import SlackEmulator
    from tests.emulators.slack_state import AckResult

OAUTH_ACCESS = "oauth.v2.access"
CODE_TTL_S = 600.0


@dataclass
class Installed:
    team_id: str
    team_name: str
    token: str
    installer: str
    active: bool = True


class SlackOAuth:
    def __init__(self, emu: SlackEmulator) -> None:
        self.emu = emu
        self.client_id = "1111.2222"
        self.client_secret = "emu-client-secret"
        #: token → installation (revoked ones stay, inactive, for assertions)
        self.installs: dict[str, Installed] = {}
        self._codes: dict[str, tuple[str, str, str, float]] = {}
        self._events = 0

    # -- a human clicking Allow ---------------------------------------------------------------

    def authorize(self, team_id: str, *, team_name: str = "", user: str = "U0ALICE") -> str:
        """The ``code`` Slack gives the redirect after ``user`` allows the app in ``team_id``."""
        code = f"{team_id}.{secrets.token_hex(8)}"
        self._codes[code] = (team_id, team_name or f"{team_id} Inc", user, time.monotonic())
        return code

    def token_of(self, team_id: str) -> str | None:
        """The active bot token of ``team_id`` issued here, if any."""
        found = [i.token for i in self.installs.values() if i.team_id == team_id and i.active]
        return found[-1] if found else None

    # -- Web API ------------------------------------------------------------------------------

    def access(self, params: JSON, authorization: str) -> JSON:
        client_id, client_secret = params.get("client_id"), params.get("client_secret")
        if authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[len("Basic ") :]).decode()
            client_id, _, client_secret = decoded.partition(":")
        if client_id != self.client_id or client_secret != self.client_secret:
            wrong = "invalid_client_id" if client_id != self.client_id else "bad_client_secret"
            return {"ok": False, "error": wrong}
        code = str(params.get("code") or "")
        taken = self._codes.pop(code, None)
        if taken is None or time.monotonic() - taken[3] > CODE_TTL_S:
            return {"ok": False, "error": "invalid_code"}
        team_id, team_name, user, _ = taken
        token = f"xoxb-{team_id}-{secrets.token_hex(6)}"
        for old in self.installs.values():  # a reinstall replaces the workspace's token
            if old.team_id == team_id:
                old.active = False
        self.installs[token] = Installed(team_id, team_name, token, user)
        return {
            "ok": True,
            "access_token": token,
            "token_type": "bot",
            "scope": "commands,chat:write",
            "bot_user_id": self.emu.bot_user_id,
            "app_id": self.emu.app_id,
            "team": {"id": team_id, "name": team_name},
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": {"id": user},
        }

    def accepts(self, token: str | None) -> bool:
        found = self.installs.get(token or "")
        return found is not None and found.active

    def auth_test(self, token: str) -> JSON:
        found = self.installs[token]
        return {
            "ok": True,
            "url": f"https://{found.team_id.lower()}.slack.com/",
            "team": found.team_name,
            "user": self.emu.bot_name,
            "team_id": found.team_id,
            "user_id": self.emu.bot_user_id,
            "bot_id": self.emu.bot_id,
            "app_id": self.emu.app_id,
            "is_enterprise_install": False,
        }

    # -- uninstalling -------------------------------------------------------------------------

    async def uninstall(self, team_id: str) -> AckResult:
        """An admin removes the app: its tokens stop working and ``app_uninstalled`` is sent."""
        self._revoke(team_id)
        return await self._send(team_id, {"type": "app_uninstalled"})

    async def revoke_tokens(
        self, team_id: str, *, bot: bool = True, users: tuple[str, ...] = ()
    ) -> AckResult:
        """Tokens of ``team_id`` are revoked: ``tokens_revoked`` names them by user id, the bot
        user under ``bot`` and people's user tokens under ``oauth`` (Slack's event shape). Only
        a revoked bot token stops working here: the emulator issues no user tokens."""
        if bot:
            self._revoke(team_id)
        tokens: JSON = {}
        if users:
            tokens["oauth"] = list(users)
        if bot:
            tokens["bot"] = [self.emu.bot_user_id]
        return await self._send(team_id, {"type": "tokens_revoked", "tokens": tokens})

    def _revoke(self, team_id: str) -> None:
        for found in self.installs.values():
            if found.team_id == team_id:
                found.active = False

    async def _send(self, team_id: str, event: JSON) -> AckResult:
        self._events += 1
        event = {**event, "event_ts": f"{time.time():.6f}"}
        payload = payloads.event_callback(
            event,
            team_id=team_id,
            app_id=self.emu.app_id,
            bot_user_id=self.emu.bot_user_id,
            event_id=f"Ev0OAUTH{self._events:05d}",
            event_time=int(time.time()),
        )
        return await self.emu.deliver_event(payload)
