"""One string field of a JSON object, decoded while the object is still arriving.

Why: a thread answer is a structured LLM answer (``FeedbackAnswer``: reply, planned changes,
targets …) streamed as JSON text. The person waiting should see the ``reply`` appear as it is
written, long before the object is complete and can be parsed. :class:`FieldScanner` is fed the
text chunk by chunk, in whatever pieces the stream cuts it into (a chunk may end inside an
escape such as ``\\u00e9`` or between the two halves of a surrogate pair), and keeps the field's
value decoded so far.

It is incremental — each character is looked at once, whole runs of plain text are copied with
one slice — because it runs on every streamed token, which is most of a worker's CPU. It reads
only what it must: nesting depth, strings and their escapes, and which top-level key a value
belongs to; anything before the first ``{`` (prose, a code fence) is skipped. The complete
answer is still parsed and validated the normal way; this is only for showing progress, so on
input that isn't JSON it simply finds nothing.
"""

from __future__ import annotations

import re

__all__ = ["FieldScanner"]

_STRUCTURE = re.compile(r'[{}\[\]":,]')
_STRING_STOP = re.compile(r'["\\]')
_SIMPLE_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_HEX = frozenset("0123456789abcdefABCDEF")
_REPLACEMENT = "\ufffd"


class FieldScanner:
    """Decodes the string value of top-level key ``key`` from JSON fed in pieces.

    ``text`` is the value so far (only ever grows); ``done`` once its closing quote was seen.
    Only the first occurrence of the key at the top level counts, and only if its value is a
    string. A key of the same name inside a nested object or array is not it.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.done = False
        self._parts: list[str] = []
        self._depth = 0
        self._in_string = False
        self._capture = False  # the string being read is the value we want
        self._key_parts: list[str] | None = None  # the top-level key being read, if any
        self._want_key = False  # at depth 1, the next string is a key
        self._last_key: str | None = None
        self._value_of: str | None = None  # key whose value comes next (after its ":")
        self._escape: str | None = None  # an escape begun: "\\" then its characters so far
        self._high: str | None = None  # a high surrogate waiting for its low half

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def feed(self, chunk: str) -> bool:
        """Read ``chunk``; True if the value grew."""
        before = len(self._parts)
        i, n = 0, len(chunk)
        while i < n and not self.done:
            read = self._read_string if self._in_string else self._read_structure
            i = read(chunk, i)
        return len(self._parts) != before

    # --- outside strings --------------------------------------------------------------------
    def _read_structure(self, chunk: str, i: int) -> int:
        match = _STRUCTURE.search(chunk, i)
        if match is None:
            return len(chunk)
        char = match.group()
        if self._depth == 0 and char != "{":
            return match.end()  # prose or a fence before the object
        if char in "{[":
            self._depth += 1
            if self._depth == 1:
                self._want_key = True
        elif char in "}]":
            self._depth = max(0, self._depth - 1)
            if self._depth == 0:
                # An object without the key (a "{…}" in prose before the answer): look on.
                self._want_key, self._value_of, self._last_key = False, None, None
        elif char == '"':
            self._in_string = True
            if self._depth == 1 and self._want_key:
                self._key_parts = []
            elif self._depth == 1 and self._value_of == self.key:
                self._capture = True
        elif self._depth == 1 and char == ":":
            self._want_key = False
            self._value_of = self._last_key
        elif self._depth == 1 and char == ",":
            self._want_key = True
            self._value_of = None
        return match.end()

    # --- inside strings ---------------------------------------------------------------------
    def _read_string(self, chunk: str, i: int) -> int:
        if self._escape is not None:
            return self._read_escape(chunk, i)
        match = _STRING_STOP.search(chunk, i)
        end = len(chunk) if match is None else match.start()
        if end > i:
            self._emit(chunk[i:end])
        if match is None:
            return end
        if match.group() == "\\":
            self._escape = "\\"
            return end + 1
        self._close_string()
        return end + 1

    def _read_escape(self, chunk: str, i: int) -> int:
        assert self._escape is not None
        while i < len(chunk):
            self._escape += chunk[i]
            i += 1
            decoded = self._decode(self._escape)
            if decoded is not None:
                self._escape = None
                self._emit_escaped(decoded)
                return i
        return i

    @staticmethod
    def _decode(escape: str) -> str | None:
        """The character an escape stands for; None while it is still incomplete."""
        kind = escape[1]
        if kind != "u":
            return _SIMPLE_ESCAPES.get(kind, kind)  # unknown escape: keep the character
        if len(escape) < 6:
            return None if all(c in _HEX for c in escape[2:]) else _REPLACEMENT
        digits = escape[2:6]
        return chr(int(digits, 16)) if all(c in _HEX for c in digits) else _REPLACEMENT

    def _emit_escaped(self, char: str) -> None:
        """A decoded escape: surrogate pairs arrive as two escapes and become one character."""
        code = ord(char)
        if 0xD800 <= code <= 0xDBFF:
            if self._high is not None:
                self._append(_REPLACEMENT)  # two high halves in a row: the first is lone
            self._high = char
            return
        if 0xDC00 <= code <= 0xDFFF and self._high is not None:
            pair = 0x10000 + ((ord(self._high) - 0xD800) << 10) + (code - 0xDC00)
            self._high = None
            self._emit(chr(pair))
            return
        if 0xDC00 <= code <= 0xDFFF:
            char = _REPLACEMENT  # a low half on its own
        self._emit(char)

    def _emit(self, piece: str) -> None:
        if self._high is not None:
            self._high = None
            self._append(_REPLACEMENT)  # a high half not followed by its low half
        self._append(piece)

    def _append(self, piece: str) -> None:
        if self._capture:
            self._parts.append(piece)
        elif self._key_parts is not None:
            self._key_parts.append(piece)

    def _close_string(self) -> None:
        if self._high is not None:
            self._high = None
            self._append(_REPLACEMENT)
        self._in_string = False
        if self._capture:
            self._capture = False
            self.done = True
        elif self._key_parts is not None:
            self._last_key = "".join(self._key_parts)
            self._key_parts = None
