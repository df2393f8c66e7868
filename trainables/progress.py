"""Progress bars that also read well in a log.

A trial's stderr is a file, not a terminal: Ray copies it to the trial's log and the driver's
console line by line, so tqdm's in-place updates (``\\r`` with no newline) would show nothing
until the bar closed. There each refresh is written as a line of its own, at most one per
:data:`LOG_INTERVAL_S`, so a long decode shows where it is without flooding the log.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

#: Seconds between two progress lines in a log (a terminal's bar refreshes as tqdm's does).
LOG_INTERVAL_S = 30.0


class LogLines:
    """A file for tqdm that turns each refresh into one line of ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:  # tqdm's clearing writes ("\r", padding, the closing "\n") hold no text
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable[Any], *, desc: str, total: int | None = None, stream: TextIO | None = None,
             interval_s: float | None = None) -> Any:
    """``tqdm(iterable)`` on ``stream`` (stderr): a bar on a terminal, lines in a log (at most
    one per ``interval_s``, default :data:`LOG_INTERVAL_S`)."""
    from tqdm.auto import tqdm

    interval_s = LOG_INTERVAL_S if interval_s is None else interval_s
    stream = stream if stream is not None else sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, desc=desc, total=total, file=stream, leave=False)
    return tqdm(iterable, desc=desc, total=total, file=LogLines(stream), ascii=True, miniters=1,
                mininterval=interval_s, maxinterval=max(interval_s, 1.0))
