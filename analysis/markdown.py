"""User-given text (sweep, study and model names, paths, setting values) in Markdown output,
rendered as written.

:func:`text` backslash-escapes the ASCII punctuation that CommonMark (and GitHub's tables and
strikethrough) reads as markup inside a line: emphasis, code spans, links, raw HTML and
autolinks, entity references, headings' closing ``#``, table cell bounds; and what would begin
a block at a line's start (``1.``, ``-``, ``+``, ``---``), so that a note in a list item reads as
written too. In a GitHub table a ``\\|`` is a literal ``|`` (the cell splitter takes the
backslash off before the inline pass), so :func:`text` also serves table cells. :func:`code` is
a code span, where backslash escapes do not apply: its backtick fence is longer than any run
of backticks in the text; :func:`fenced` a code block, for text of several lines (an error and
its traceback).
"""

from __future__ import annotations

import re

#: Characters escaped by :func:`text` (each is ASCII punctuation, which CommonMark lets a
#: backslash escape).
SPECIAL = "\\`*_[]<>#|~&"
_SPECIAL = re.compile("[" + re.escape(SPECIAL) + "]")


#: What begins a block where a line starts (a list item's text): a list marker (``1.``,
#: ``2)``, ``-``, ``+`` before a space or the end), a thematic break (``---``). A number such
#: as ``1.5`` or ``-0.5`` begins none.
_BLOCK_START = re.compile(r"^(\d{1,9}(?=[.)](\s|$))|(?=[-+](\s|$))|(?=--))")


def text(s: object) -> str:
    """``s`` (``str(s)``) as Markdown text that renders as ``s``, in a line or at its start (a
    list item, a table cell, a heading); a line break becomes a space, and the spaces at its
    ends (which Markdown does not show) are left out."""
    s = _SPECIAL.sub(lambda m: "\\" + m.group(), " ".join(str(s).splitlines()).strip())
    return _BLOCK_START.sub(lambda m: m.group() + "\\", s, count=1)


def code(s: object) -> str:
    """``s`` (``str(s)``) as a Markdown code span that renders as ``s``."""
    s = " ".join(str(s).splitlines())
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", s)), default=0))
    pad = " " if s.startswith("`") or s.endswith("`") or (s.startswith(" ") and s.endswith(" ") and s.strip()) else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def fenced(s: object) -> str:
    """``s`` (``str(s)``, lines and all) as a fenced Markdown code block that renders as ``s``."""
    s = str(s)
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", s)), default=0))
    return f"{fence}\n{s}\n{fence}"
