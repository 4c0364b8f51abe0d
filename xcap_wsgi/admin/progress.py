"""Progress of a long operator command: a bar on a terminal, plain lines otherwise, or nothing.

* On a terminal, with ``tqdm`` installed (``pip install 'xcap-wsgi[progress]'``): a progress bar
  with count, total, rate and ETA.
* Otherwise (a pipe, a log file, cron, no tqdm): one plain line every ``every`` documents, or
  every ``interval`` seconds when ``every`` is not given, e.g.
  ``export: 20000/100000 documents (20.0%), 1543/s, ETA 0:00:51``; and a final line.
* ``quiet``: nothing at all.
"""

from __future__ import annotations

import io
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """A counter of documents on a stream (stderr by default); see the module docstring."""

    def __init__(self, label: str, *, total: int | None = None, every: int | None = None,
                 interval: float = 5.0, stream: TextIO | None = None, quiet: bool = False,
                 bar: bool | None = None):
        self.label, self.total, self.count = label, total, 0
        self.every = max(1, every) if every else None
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.started = self._last = time.monotonic()
        self._bar_wanted = bar
        self._bar: tqdm | None = None

    def start(self, total: int | None) -> None:
        """Known total (a COUNT before the work): restart the clock, open the bar on a terminal."""
        self.total, self.count = total, 0
        self.started = self._last = time.monotonic()
        if self.quiet:
            return
        wanted = self._bar_wanted if self._bar_wanted is not None else _is_terminal(self.stream)
        if wanted:
            try:
                from tqdm import tqdm
            except ImportError:  # optional dependency: plain lines instead
                return
            self._bar = tqdm(total=total, desc=self.label, unit="doc", file=self.stream, dynamic_ncols=True)

    def step(self, n: int = 1) -> None:
        before = self.count
        self.count += n
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self.every is not None:
            due = self.count // self.every > before // self.every
        else:
            due = now - self._last >= self.interval
        if due:
            self._last = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float | None = None) -> str:
        """``label: count[/total] documents[ (pct%)], rate/s[, ETA h:mm:ss]``."""
        elapsed = max((now if now is not None else time.monotonic()) - self.started, 1e-9)
        rate = self.count / elapsed
        text = f"{self.label}: {self.count}"
        if self.total:
            text += f"/{self.total} documents ({100 * self.count / self.total:.1f}%)"
        else:
            text += " documents"
        text += f", {rate:.0f}/s"
        if self.total and rate > 0 and self.count <= self.total:
            text += f", ETA {_clock((self.total - self.count) / rate)}"
        return text

    def done(self, what: str = "") -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        rate = self.count / elapsed if elapsed > 0 else 0.0
        print(f"{self.label}: {self.count} documents{' ' + what if what else ''} in {elapsed:.1f}s "
              f"({rate:.0f}/s)", file=self.stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def silent(label: str) -> Progress:
    """A progress that prints nothing (the default of the Python functions)."""
    return Progress(label, quiet=True, stream=io.StringIO())
