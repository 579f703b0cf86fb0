"""The terminal itself: printing while someone types, and reading lines without blocking.

Lines are read on a thread of their own (``input()`` blocks), one at a time and with the prompt
the console asks for, so a form can ask its next question. The app prints at any moment (a
story arrives while you type): on a real terminal the half-typed line is cleared, the output
printed and the prompt with what you had typed drawn again, as chat clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

try:
    import readline
except ImportError:  # pragma: no cover - Windows without pyreadline
    readline = None  # type: ignore[assignment]

CLEAR_LINE = "\r\x1b[K"


class Screen:
    """Where output goes; redraws the prompt around it on a terminal."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.prompt = ""
        self.reading = False
        self._lock = threading.Lock()
        with contextlib.suppress(AttributeError, ValueError):
            # Never let an odd terminal encoding turn a story into a UnicodeEncodeError.
            self.out.reconfigure(errors="replace")  # type: ignore[union-attr]

    def finish(self) -> None:
        """No prompt any more (the console is stopping): clear it, print plainly from now on."""
        with self._lock:
            if self.reading and self.tty:
                self.out.write(CLEAR_LINE)
                self.out.flush()
            self.tty = False

    def show(self, lines: Iterable[str]) -> None:
        with self._lock:
            redraw = self.reading and self.tty
            if redraw:
                self.out.write(CLEAR_LINE)
            for line in lines:
                self.out.write(line + "\n")
            if redraw:
                typed = readline.get_line_buffer() if readline is not None else ""
                self.out.write(self.prompt + typed)
            self.out.flush()


class LineReader:
    """Reads one line per ``read(prompt)``; ``None`` at end of input (Ctrl-D)."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self._asks: queue.Queue[str | None] = queue.Queue()
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="console-input", daemon=True)
        self._saved: Any = None

    @property
    def busy(self) -> bool:
        """Waiting in ``input()`` for a line."""
        return self._thread.is_alive() and self.screen.reading

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._saved = _terminal_state()
        self._thread.start()

    def stop(self) -> None:
        """Stop reading; the terminal gets back the settings it had (after a Ctrl-C too)."""
        self._asks.put(None)
        _restore_terminal(self._saved)

    async def read(self, prompt: str) -> str | None:
        self.screen.prompt = prompt
        self._asks.put(prompt)
        return await self._lines.get()

    def _main(self) -> None:
        while True:
            prompt = self._asks.get()
            if prompt is None:
                return
            self.screen.reading = True
            try:
                line: str | None = input(prompt)
            except (EOFError, OSError, ValueError):
                line = None
            finally:
                self.screen.reading = False
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop closed while we were waiting
                self._loop.call_soon_threadsafe(self._lines.put_nowait, line)
            if line is None:
                return


def _terminal_state() -> Any:
    try:
        import termios  # noqa: PLC0415 - POSIX only

        return termios.tcgetattr(sys.stdin.fileno())
    except (ImportError, OSError, ValueError, AttributeError):
        return None


def _restore_terminal(saved: Any) -> None:
    if saved is None:
        return
    with contextlib.suppress(ImportError, OSError, ValueError, AttributeError):
        import termios  # noqa: PLC0415 - POSIX only

        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
