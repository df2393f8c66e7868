"""The one exception type for mistakes a user can fix.

Everything that validates user input (CLI flags, presets, search spaces, data files, model
paths, resource requests) raises :class:`UserError`. Entry points catch it, print its one-line
message and exit with code 2 before anything is launched or written.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """A mistake in user input, reported as one line naming the field and what is accepted."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Raised in a trial, it crosses to the driver pickled (Ray); rebuilt from both parts.
        return UserError, (self.field, self.message)


def first_line(error: BaseException, *, limit: int | None = 200) -> str:
    """How a message quotes an error it reports: its text's first non-blank line (at most
    ``limit`` characters; ``None``: all of it), or its type's name when it has no text."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when ``name`` is close to one of ``options``, else ``''``."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(options: Iterable[str]) -> str:
    """Render accepted values the same way in every message: ``'a', 'b' or 'c'``."""
    opts = [f"'{o}'" for o in options]
    if len(opts) <= 1:
        return "".join(opts)
    return ", ".join(opts[:-1]) + " or " + opts[-1]


#: Why JSON nested deeper than Python's reader recurses (it raises RecursionError) is refused.
JSON_TOO_DEEP = "not readable JSON (nested deeper than Python's JSON reader goes)"


def not_utf8(path: Path) -> str:
    """Where a file stops being UTF-8: ``<path> line 3: not UTF-8 text (byte 0xe9); save it as
    UTF-8``."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        return f"{path} line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save it as UTF-8"
    return f"{path}: not UTF-8 text; save it as UTF-8"
