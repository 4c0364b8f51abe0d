"""The standalone server's logging: one line per record on stderr, cheap enough for an access
line per request (``serve``, the PasteDeploy/uWSGI entry point)."""

from __future__ import annotations

import logging
import time
from typing import IO

__all__ = ["configure", "LINE_FORMAT"]

LINE_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class _Formatter(logging.Formatter):
    """logging's own line, with ``asctime`` (``2026-12-03 15:34:01,123``) formatted once per second
    instead of once per record."""

    _stamp: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second, text = self._stamp
        if second != int(record.created):
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._stamp = (second, text)  # one assignment: threads see the pair or the old one
        return f"{text},{int(record.msecs):03d}"


def configure(stream: IO[str] | None = None) -> None:
    """INFO and above to ``stream`` (stderr) in ``LINE_FORMAT``.

    The records carry no caller, thread or process fields (the line shows none): the logging
    HOWTO's "Optimization" switches. With them and the cached time stamp a record costs about
    half as much, which is most of what an access line costs per request.
    """
    logging._srcfile = None  # no stack walk per record (findCaller)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(LINE_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
