"""Slack listeners, one module per surface. Each is thin: parse → validate → intake → ack."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.services import HandlerServices
from handlers import actions, commands, messages, views


def register(app: AsyncApp, services: HandlerServices) -> None:
    commands.register(app, services)
    actions.register(app, services)
    views.register(app, services)
    messages.register(app, services)
