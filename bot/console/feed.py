"""What the app does in the terminal's Slack, printed as it happens.

``Feed`` is the ``Listener`` of ``TerminalSlack``: each new or edited message, modal, file and
streamed answer is printed as readable text. It also remembers what is on screen — which
messages, modals and Home tab carry buttons, most recent first, and which thread a plain line
replies to — so the console can turn a typed word into the click it names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.console.payloads import JSON
from bot.console.render import Names, mrkdwn, render_message, render_view
from bot.console.slackapi import TerminalSlack
from bot.console.terminal import Screen
from bot.console.workspace import Message, View

EDIT_SETTLE_S = 0.25  # edits closer together than this print once (the last one)
STREAM_WIDTH = 96


@dataclass(frozen=True)
class Surface:
    """Something on screen that may carry buttons: a message, the open modal or the Home tab."""

    kind: str  # "modal" | "home" | "message"
    blocks: list[JSON]
    message: Message | None = None
    view: View | None = None


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


class Feed:
    def __init__(self, slack: TerminalSlack, screen: Screen) -> None:
        self.slack = slack
        self.screen = screen
        ws = slack.ws
        self.names = Names(
            users={ws.user_id: ws.user_name, ws.bot_user_id: ws.bot_name},
            channels={ws.channel_id: ws.channel_name},
        )
        self.threads: list[str] = []
        self.thread: str | None = None
        self.home_visible = False
        self.on_modal: Callable[[View], None] | None = None
        self._recent: list[str] = []  # message ts / "home", most recent first
        self._printed: dict[str, list[str]] = {}
        self._edits: dict[str, asyncio.TimerHandle] = {}
        self._streams: dict[str, str] = {}  # ts → streamed text not printed yet
        self._streamed: dict[str, str] = {}  # ts → all text streamed (until its final form)

    # --- what is on screen --------------------------------------------------------------------

    def _seen(self, key: str) -> None:
        if key in self._recent:
            self._recent.remove(key)
        self._recent.insert(0, key)

    def surfaces(self) -> list[Surface]:
        """Everything with buttons, the open modal first, then most recently shown first."""
        found: list[Surface] = []
        modal = self.slack.views.top()
        if modal is not None:
            found.append(Surface("modal", list(modal.body.get("blocks") or []), view=modal))
        for key in self._recent:
            if key == "home":
                home = self.slack.views.home
                if home is not None and self.home_visible:
                    found.append(Surface("home", list(home.body.get("blocks") or []), view=home))
                continue
            msg = self.slack.messages.get(key)
            if msg is not None and not msg.deleted and msg.blocks:
                found.append(Surface("message", msg.blocks, message=msg))
        return found

    def thread_number(self, root: str) -> int:
        return self.threads.index(root) + 1 if root in self.threads else 0

    # --- printing -----------------------------------------------------------------------------

    def _header(self, msg: Message, note: str = "") -> str:
        where = ""
        if len(self.threads) > 1:
            where = f"  ·  thread {self.thread_number(msg.root)}"
        who = self.slack.ws.bot_name
        if msg.thread_ts is None:
            return f"● {who}{note}{where}"
        return f"  ↳ {who}{note}{where}"

    def _indent(self, msg: Message) -> str:
        return "  " if msg.thread_ts is None else "    "

    def _print_message(self, msg: Message, note: str) -> None:
        lines = render_message(msg.text, msg.blocks, self.names)
        if self._printed.get(msg.ts) == lines:
            return
        self._printed[msg.ts] = lines
        pad = self._indent(msg)
        self.screen.show(["", self._header(msg, note), *[pad + line for line in lines]])
        if msg.blocks:
            self._seen(msg.ts)

    def _follow(self, msg: Message) -> None:
        """A plain line replies in the thread the app last posted in."""
        if msg.ephemeral:
            return
        if msg.root not in self.threads:
            self.threads.append(msg.root)
        self.thread = msg.root

    # --- Listener -------------------------------------------------------------------------------

    def posted(self, msg: Message) -> None:
        self._follow(msg)
        self._print_message(msg, " (only you can see this)" if msg.ephemeral else "")

    def edited(self, msg: Message) -> None:
        pending = self._edits.pop(msg.ts, None)
        if pending is not None:
            pending.cancel()
        loop = asyncio.get_running_loop()
        self._edits[msg.ts] = loop.call_later(EDIT_SETTLE_S, self._print_edit, msg)

    def _print_edit(self, msg: Message) -> None:
        self._edits.pop(msg.ts, None)
        if msg.deleted:
            return
        streamed = self._streamed.pop(msg.ts, None)
        if streamed is None:
            self._print_message(msg, " (updated)")
            return
        # A streamed answer given its final form: print only what the stream didn't show.
        lines = render_message(msg.text, msg.blocks, self.names)
        self._printed[msg.ts] = lines
        if msg.blocks:
            self._seen(msg.ts)
        said = " ".join(streamed.split())
        extra = [line for line in lines if " ".join(line.split()) not in said]
        if extra:
            pad = self._indent(msg)
            self.screen.show([pad + line for line in extra])

    def flush(self) -> None:
        """Print edits still settling (before the console exits)."""
        for ts, handle in list(self._edits.items()):
            handle.cancel()
            self._print_edit(self.slack.messages[ts])

    def deleted(self, msg: Message) -> None:
        if msg.ts in self._printed:
            self.screen.show([self._header(msg, " removed a message")])

    def streamed(self, msg: Message, text: str, *, done: bool) -> None:
        if msg.ts not in self._streams:
            self._follow(msg)
            self._streams[msg.ts] = ""
            self.screen.show(["", self._header(msg, " (writing…)")])
        buffer = self._streams[msg.ts] + mrkdwn(text, self.names)
        lines: list[str] = []
        while "\n" in buffer or len(buffer) > STREAM_WIDTH:
            cut = buffer.find("\n")
            if cut < 0 or cut > STREAM_WIDTH:
                cut = buffer.rfind(" ", 0, STREAM_WIDTH)
                cut = cut if cut > 0 else STREAM_WIDTH
            lines.append(buffer[:cut])
            buffer = buffer[cut:].removeprefix("\n").removeprefix(" ")
        if done:
            lines += [buffer] if buffer else []
            buffer = ""
        self._streamed[msg.ts] = self._streamed.get(msg.ts, "") + mrkdwn(text, self.names)
        self._streams[msg.ts] = buffer
        pad = self._indent(msg)
        if lines:
            self.screen.show([pad + line for line in lines])
        if done and msg.blocks:
            self._print_edit(msg)

    def shared(self, name: str, size: int, path: Path, msg: Message) -> None:
        self._follow(msg)
        lines = [f"[file] {name} ({_size(size)}) saved to {path}"]
        if msg.text:
            lines.insert(0, mrkdwn(msg.text, self.names))
        pad = self._indent(msg)
        self.screen.show(["", self._header(msg), *[pad + line for line in lines]])

    def view_shown(self, view: View) -> None:
        if view.id not in self.slack.views.stack:
            return
        self.screen.show(["", *render_view(view.body, self.names)])
        if self.on_modal is not None:
            self.on_modal(view)

    def home_published(self, view: View) -> None:
        if self.home_visible:
            self.show_home()

    def show_home(self) -> None:
        home = self.slack.views.home
        if home is None:
            return
        self.home_visible = True
        self._seen("home")
        self.screen.show(["", *render_view(home.body, self.names)])
