"""Typed lines → what Slack would send the app, signed and POSTed to its ``/slack/events``.

``/story …`` is the slash command, a plain line a reply in the session's thread, a button's
label a click on it, and a modal's inputs are asked one by one and sent as its submission.
The app answers exactly as it answers Slack: an ack (printed when it carries words), then Web
API calls that ``Feed`` prints.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path

from bot.console import clicks, forms
from bot.console import payloads as p
from bot.console.feed import Feed, Surface
from bot.console.link import AppLink
from bot.console.modals import Modals
from bot.console.render import controls, mrkdwn, normalize
from bot.console.slackapi import TerminalSlack
from bot.console.terminal import LineReader, Screen

PROMPT = "you> "
HOME_WAIT_S = 3.0

INTRO = (
    "Storyloop console — you are @{user} in #{channel}; the app, its worker and Redis are "
    "running.\nStart with `/story 30s a launch video for …` · `help` lists what you can "
    "type · `quit` leaves."
)
HELP = """\
What you can type:
  /story 30s <what it is about>   start a story session (`/story` alone opens the form)
  <any other line>                a reply in the session's thread: feedback on the draft
  <a button's label>              click it, e.g. approve, regenerate, retry, redo 2
  <menu> <choice>                 choose in a menu shown as <Menu ▾: …>
  @storyloop 30s <prompt>         mention the app in the channel
  say <text>                      a reply, even if it looks like a button
  threads / thread <n>            list the sessions' threads / reply in another one
  home                            open the App Home tab
  help · quit (or Ctrl-D)
The story stage needs only the LLM (OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_MODEL). Images and
video need their providers (STORYLOOP_IMAGE_* / STORYLOOP_VIDEO_*); without them those stages
fail with the app's own message.
Files the app shares and the app's log are kept in {folder}."""


def _ack_text(body: str) -> str:
    """Words an ack carries (a slash command's ephemeral answer), if any."""
    if not body.strip():
        return ""
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return body
    return str(parsed.get("text") or "") if isinstance(parsed, dict) else ""


class Console:
    def __init__(self, slack: TerminalSlack, link: AppLink, screen: Screen, folder: Path) -> None:
        self.slack = slack
        self.ws = slack.ws
        self.link = link
        self.screen = screen
        self.folder = folder
        self.feed = Feed(slack, screen)
        self._events = 0
        self.modals = Modals(
            slack,
            link=link,
            names=self.feed.names,
            say=self.say,
            ids=self._trigger,
            failed=self._failed,
        )
        self.feed.on_modal = self.modals.shown

    def say(self, *lines: str) -> None:
        self.screen.show(lines)

    async def run(self, reader: LineReader) -> None:
        self.say(INTRO.format(user=self.ws.user_name, channel=self.ws.channel_name))
        while True:
            line = await reader.read(PROMPT)
            if line is None or not await self.handle(line):
                break
        self.feed.flush()

    # --- dispatch -------------------------------------------------------------------------------

    async def handle(self, line: str) -> bool:
        """Act on one typed line; False means quit."""
        text = line.strip()
        word = normalize(text)
        if word in ("quit", "exit"):
            return False
        if self.modals.form is not None and word != "help" and await self.modals.line(text):
            return True
        if not text:
            return True
        if word in ("help", "h") or text == "?":
            self._help()
        elif word == "home":
            await self._home()
        elif word == "threads" or (word.startswith("thread ") and word[7:].isdigit()):
            self._threads(word)
        elif text.lower().startswith("say "):
            await self._reply(text[4:].strip())
        elif text.startswith("/"):
            await self._command(text)
        elif word.startswith(self.ws.bot_name) and text.startswith("@"):
            await self._mention(text)
        else:
            await self._line(text)
        return True

    def _trigger(self) -> str:
        return self._ids()[0]

    def _ids(self) -> tuple[str, str]:
        """A trigger id and an event id, both fresh."""
        self._events += 1
        stamp = int(time.time())
        trigger = f"{self._events}.{stamp}.{secrets.token_hex(8)}"
        return trigger, f"Ev0C{secrets.token_hex(6).upper()}"

    def _surfaces(self) -> list[Surface]:
        return self.feed.surfaces()

    async def _line(self, text: str) -> None:
        surfaces = self._surfaces()
        # The open modal first: its buttons, then its close / submit words, then the rest.
        modal = surfaces[:1] if surfaces and surfaces[0].kind == "modal" else []
        found = clicks.find(text, [controls(s.blocks) for s in modal])
        if found is None and await self.modals.word(text):
            return
        if found is None:
            found = clicks.find(text, [controls(s.blocks) for s in surfaces])
        if isinstance(found, clicks.Hit):
            await self._click(surfaces[found.surface], found)
            return
        if isinstance(found, clicks.Ambiguous):
            self.say("  Which one? " + ", ".join(f"`{h}`" for h in found.handles))
            return
        if isinstance(found, clicks.MenuOnly):
            options = [
                mrkdwn(str(o.get("text", {}).get("text", ""))) for o in found.control.options
            ]
            self.say(f"  Type `{found.control.handle} <choice>`, one of: " + ", ".join(options))
            return
        typo = clicks.near_miss(text, [controls(s.blocks) for s in surfaces])
        if typo is not None:
            self.say(f"  Did you mean `{typo}`? (`say {text}` sends it as a reply instead)")
            return
        await self._reply(text)

    def _help(self) -> None:
        self.say(HELP.format(folder=self.folder))
        names = []
        for surface in self._surfaces():
            for control in controls(surface.blocks):
                if control.handle not in names:
                    names.append(control.handle)
        if names:
            self.say("Buttons on screen now: " + ", ".join(names[:20]))

    def _threads(self, word: str) -> None:
        if not self.feed.threads:
            self.say("  No threads yet: start a story with `/story 30s …`.")
            return
        if word.startswith("thread "):
            number = int(word[7:])
            if not 1 <= number <= len(self.feed.threads):
                self.say(f"  There are {len(self.feed.threads)} threads: `threads` lists them.")
                return
            self.feed.thread = self.feed.threads[number - 1]
        for i, root in enumerate(self.feed.threads, 1):
            msg = self.slack.messages.get(root)
            first = mrkdwn(msg.text if msg else "", self.feed.names).split("\n")[0][:70]
            mark = " ← replies go here" if root == self.feed.thread else ""
            self.say(f"  thread {i}: {first}{mark}")

    # --- slash command, replies, mentions -------------------------------------------------------

    async def _command(self, text: str) -> None:
        command, _, rest = text.partition(" ")
        if command.lower() != "/story":
            self.say(
                f"  `{command}` isn't a command here: only `/story` is. "
                "Try `/story 30s a launch video for …`, or `help`."
            )
            return
        trigger, _ = self._ids()
        fields = p.slash_command(
            self.ws, text=rest.strip(), trigger_id=trigger, response_url=self.slack.response_url()
        )
        status, body = await self.link.send(p.form_body(fields), p.FORM)
        if status != 200:
            self._failed("/story", status)
        elif words := _ack_text(body):
            self.say("", "  ↳ storyloop (only you can see this)", "    " + mrkdwn(words))

    async def _reply(self, text: str) -> None:
        thread = self.feed.thread
        if thread is None:
            self.say("  There's no story yet: start one with `/story 30s a launch video for …`.")
            return
        msg = self.slack.add_user_message(text, thread)
        _, event_id = self._ids()
        payload = p.message_event(
            self.ws,
            text=text,
            ts=msg.ts,
            event_id=event_id,
            event_time=int(time.time()),
            thread_ts=thread,
            parent_user_id=self.slack.thread_parent_user(thread),
        )
        status, _ = await self.link.event(payload)
        if status != 200:
            self._failed("your reply", status)

    async def _mention(self, text: str) -> None:
        body = text.split(None, 1)[1] if " " in text else ""
        said = f"<@{self.ws.bot_user_id}> {body}".strip()
        msg = self.slack.add_user_message(said, None)
        for mention in (False, True):
            _, event_id = self._ids()
            payload = p.message_event(
                self.ws,
                text=said,
                ts=msg.ts,
                event_id=event_id,
                event_time=int(time.time()),
                thread_ts=None,
                parent_user_id=None,
                mention=mention,
            )
            await self.link.event(payload)

    def _failed(self, what: str, status: int) -> None:
        reason = f"HTTP {status}" if status else "it isn't answering"
        self.say(
            f"  The app didn't take {what} ({reason}). Its log is in {self.folder}/console.log."
        )

    # --- clicks -------------------------------------------------------------------------------

    def _choose(self, key: str, hit: clicks.Hit) -> str:
        """Remember a menu choice: it is part of the surface's state from now on."""
        control, option = hit.control, hit.option
        assert option is not None
        block_id = str(control.block.get("block_id") or "")
        action_id = str(control.element.get("action_id") or "")
        value = {"type": control.element.get("type"), "selected_option": option}
        self.modals.choices.setdefault(key, {}).setdefault(block_id, {})[action_id] = value
        return f"{control.label}: {mrkdwn(str(option.get('text', {}).get('text', '')))}"

    async def _click(self, surface: Surface, hit: clicks.Hit) -> None:
        trigger, _ = self._ids()
        act = p.action(
            hit.control.block,
            hit.control.element,
            action_ts=self.slack.next_ts(),
            option=hit.option,
        )
        msg, view = surface.message, surface.view
        key = msg.ts if msg is not None else view.id if view is not None else ""
        shown = self._choose(key, hit) if hit.option is not None else hit.control.label
        if msg is not None:
            payload = p.message_click(
                self.ws,
                act=act,
                message=msg.as_json(self.ws),
                trigger_id=trigger,
                response_url=self.slack.response_url(msg.ts),
                is_ephemeral=msg.ephemeral,
                state=forms.state(
                    {"blocks": msg.blocks}, {}, self.ws, self.modals.choices.get(key)
                ),
            )
        else:
            assert view is not None
            form = self.modals.form
            answers = form.answers if form is not None and form.view is view else {}
            payload = p.view_click(
                self.ws,
                act=act,
                view=view.as_json(self.ws),
                trigger_id=trigger,
                state=self.modals.view_state(view, answers),
            )
        self.say(f"  → {shown}")
        status, _ = await self.link.interactive(payload)
        if status != 200:
            self._failed(f"the click on {hit.control.label}", status)

    async def _home(self) -> None:
        before = self.slack.views.home.hash if self.slack.views.home is not None else None
        self.feed.home_visible = True
        trigger, event_id = self._ids()
        del trigger
        payload = p.home_opened_event(
            self.ws, event_id=event_id, event_time=int(time.time()), ts=self.slack.next_ts()
        )
        await self.link.event(payload)
        deadline = time.monotonic() + HOME_WAIT_S
        while time.monotonic() < deadline:
            if self.slack.views.home is not None and self.slack.views.home.hash != before:
                return  # Feed printed it when it was published
            await asyncio.sleep(0.05)
        if self.slack.views.home is not None:
            self.feed.show_home()
        else:
            self.say("  The App Home is empty: this version of Storyloop doesn't publish one.")
