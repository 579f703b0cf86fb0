"""Slack listeners, one module per surface. Each is thin: parse → validate → intake → ack."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.services import HandlerServices
from handlers import actions, commands, home, mentions, messages, shortcuts, versions, views


def register(app: AsyncApp, services: HandlerServices) -> None:
    commands.register(app, services)
    home.register(app, services)  # before actions: its catch-all answers unknown buttons
    versions.register(app, services)  # before actions too (the same catch-all)
    actions.register(app, services)
    views.register(app, services)
    messages.register(app, services)
    mentions.register(app, services)
    shortcuts.register(app, services)
