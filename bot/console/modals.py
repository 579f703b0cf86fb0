"""A modal in the terminal: its inputs asked one by one, then submitted as Slack would.

When the app opens a modal with inputs (``/story`` alone opens the New story form) each input
becomes a question; the answers become the view's ``state`` and a ``view_submission``. The
app's answer is honoured as Slack honours it: field errors are asked again, ``update`` and
``push`` show the new view, an empty ack closes the modal. A modal without inputs (Versions)
is used by typing its buttons' labels; ``close`` closes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.console import forms
from bot.console import payloads as p
from bot.console.link import AppLink
from bot.console.render import Names, normalize
from bot.console.slackapi import TerminalSlack
from bot.console.workspace import View


@dataclass
class Form:
    """A modal being filled in: the answers so far and the inputs still to ask."""

    view: View
    answers: dict[str, p.JSON] = field(default_factory=dict)
    todo: list[str] = field(default_factory=list)

    def current(self) -> forms.Field | None:
        by_block = {f.block_id: f for f in forms.fields(self.view.body)}
        while self.todo and self.todo[0] not in by_block:
            self.todo.pop(0)
        return by_block[self.todo[0]] if self.todo else None


class Modals:
    def __init__(
        self,
        slack: TerminalSlack,
        *,
        link: AppLink,
        names: Names,
        say: Callable[..., None],
        ids: Callable[[], str],
        failed: Callable[[str, int], None],
    ) -> None:
        self.slack = slack
        self.ws = slack.ws
        self.link = link
        self.names = names
        self.say = say
        self.ids = ids
        self.failed = failed
        self.form: Form | None = None
        self.choices: dict[str, dict[str, dict[str, p.JSON]]] = {}  # view id / ts → menus

    def view_state(self, view: View, answers: dict[str, p.JSON]) -> p.JSON:
        return forms.state(view.body, answers, self.ws, self.choices.get(view.id))

    def shown(self, view: View) -> None:
        """A modal opened or changed: ask its inputs (keeping answers already given)."""
        inputs = forms.fields(view.body)
        if not inputs:
            if self.form is not None and self.form.view.id == view.id:
                self.form = None
            self.say(self._hint(view))
            return
        kept = self.form.answers if self.form is not None and self.form.view.id == view.id else {}
        blocks = [f.block_id for f in inputs]
        self.form = Form(view, {b: v for b, v in kept.items() if b in blocks})
        self.form.todo = [b for b in blocks if b not in self.form.answers]
        self.say("  Fill in the form: Enter keeps what is in [brackets], `cancel` closes it.")
        self._ask()

    def _hint(self, view: View) -> str:
        words = ["`close`"]
        if submit := normalize(str((view.body.get("submit") or {}).get("text", ""))):
            words.append(f"`{submit}`")
        return "  (a modal: type a button's label, or " + " / ".join(words) + ")"

    def _ask(self) -> None:
        assert self.form is not None
        current = self.form.current()
        if current is not None:
            self.say("  ? " + forms.question(current, self.names))

    async def word(self, text: str) -> bool:
        """``close``/``cancel`` or the submit label of a modal without inputs."""
        view = self.slack.views.top()
        if view is None:
            return False
        word = normalize(text)
        close = normalize(str((view.body.get("close") or {}).get("text", "")))
        submit = normalize(str((view.body.get("submit") or {}).get("text", "")))
        if word in ("close", "cancel", close):
            await self.close(view)
            return True
        if submit and word == submit:
            await self.submit(Form(view))
            return True
        return False

    async def close(self, view: View) -> None:
        self.slack.views.close()
        self.form = None
        self.say("  (closed)")
        if view.body.get("notify_on_close"):
            await self.link.interactive(p.view_closed(self.ws, view=view.as_json(self.ws)))

    async def line(self, text: str) -> bool:
        """Answer the form's current question; False if the line isn't for the form."""
        form = self.form
        assert form is not None
        if self.slack.views.top() is not form.view:
            self.form = None
            return False
        word = normalize(text)
        close = normalize(str((form.view.body.get("close") or {}).get("text", "")))
        if word in ("cancel", "close", close):
            await self.close(form.view)
            return True
        current = form.current()
        if current is None:
            return False
        try:
            options = await self._suggest(form, current, text)
            value = forms.answer(current, text, self.ws, options)
        except forms.Invalid as exc:
            self.say(f"  {exc}")
            self._ask()
            return True
        form.answers[current.block_id] = value
        form.todo.pop(0)
        if current.element.get("dispatch_action"):
            await self._dispatch(form, current, value)
        if self.form is form and form.current() is not None:
            self._ask()
        elif self.form is form:
            await self.submit(form)
        return True

    async def _suggest(self, form: Form, field: forms.Field, query: str) -> list[p.JSON] | None:
        """An external select's options, asked of the app as Slack does (block_suggestion)."""
        if field.kind != "external_select" or not query:
            return None
        payload = p.block_suggestion(
            self.ws,
            view=form.view.as_json(self.ws),
            block_id=field.block_id,
            action_id=field.action_id,
            value=query,
        )
        status, body = await self.link.interactive(payload)
        try:
            parsed = json.loads(body) if status == 200 and body else {}
        except json.JSONDecodeError:
            parsed = {}
        found = forms.Field(field.block_id, field.action_id, field.label, field.optional, parsed)
        if not found.options:
            raise forms.Invalid(f"Nothing matches `{query}` (Enter skips).")
        return found.options

    async def _dispatch(self, form: Form, field: forms.Field, value: p.JSON) -> None:
        """An input with ``dispatch_action`` tells the app at once (it may change the modal)."""
        trigger = self.ids()
        act = {k: v for k, v in value.items() if k != "type"}
        act.update(
            {
                "type": field.kind,
                "action_id": field.action_id,
                "block_id": field.block_id,
                "action_ts": self.slack.next_ts(),
            }
        )
        payload = p.view_click(
            self.ws,
            act=act,
            view=form.view.as_json(self.ws),
            trigger_id=trigger,
            state=self.view_state(form.view, form.answers),
        )
        await self.link.interactive(payload)

    async def submit(self, form: Form) -> None:
        trigger = self.ids()
        label = str((form.view.body.get("submit") or {}).get("text", "Submit"))
        state = self.view_state(form.view, form.answers)
        payload = p.view_submission(
            self.ws, view=form.view.as_json(self.ws), state=state, trigger_id=trigger
        )
        self.say(f"  → {label}")
        status, body = await self.link.interactive(payload)
        if status != 200:
            self.form = None
            self.failed("the form", status)
            return
        answer = json.loads(body) if body.strip().startswith("{") else {}
        action = answer.get("response_action")
        if action == "errors":
            errors = answer.get("errors") or {}
            by_block = {f.block_id: f for f in forms.fields(form.view.body)}
            for block_id, message in errors.items():
                label_of = by_block[block_id].label if block_id in by_block else block_id
                self.say(f"  ⚠ {label_of}: {message}")
            form.todo = [b for b in by_block if b in errors]
            self._ask()
        elif action in ("update", "push") and isinstance(answer.get("view"), dict):
            self.slack.views.show(answer["view"], replace=action == "update")
        else:
            self.form = None
            self.slack.views.close(all_views=action == "clear")
