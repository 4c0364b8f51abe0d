"""serve's logging set-up (xcap_wsgi.logsetup): logging's own line, time stamps included."""

from __future__ import annotations

import io
import logging

import pytest

from xcap_wsgi import logsetup


@pytest.fixture
def configured():
    """``logsetup.configure`` on a StringIO; logging's global state restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging._srcfile, logging.logThreads, logging.logProcesses,
             logging.logMultiprocessing)
    root.handlers.clear()
    stream = io.StringIO()
    try:
        logsetup.configure(stream)
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = saved[2:]


@pytest.fixture
def records(configured):
    """The records the root logger handles, beside serve's handler."""
    kept: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            kept.append(record)

    keeper = Keep()
    logging.getLogger().addHandler(keeper)
    yield kept
    logging.getLogger().removeHandler(keeper)


def test_lines_are_loggings_own_with_the_same_time_stamps(configured, records):
    reference = logging.Formatter(logsetup.LINE_FORMAT)
    log = logging.getLogger("xcap_wsgi.access")
    for n in range(3):
        log.info("GET %s status=%d", f"/xcap-root/doc{n}", 200)
    record = logging.LogRecord("xcap_wsgi", logging.WARNING, __file__, 1, "later", (), None)
    record.created += 3600.5  # another second, another cached stamp
    record.msecs = 7.0
    logging.getLogger().handle(record)
    logging.getLogger("xcap_wsgi").debug("not at INFO")
    lines = configured.getvalue().splitlines()
    assert lines == [reference.format(r) for r in records]
    assert lines[0].endswith(" xcap_wsgi.access INFO GET /xcap-root/doc0 status=200")
    assert lines[-1].endswith(",007 xcap_wsgi WARNING later")
    assert len(lines) == 4


def test_records_carry_no_caller_thread_or_process(records):
    logging.getLogger("xcap_wsgi").info("x")
    (record,) = records
    assert (record.funcName, record.threadName, record.processName) == ("(unknown function)", None, None)
