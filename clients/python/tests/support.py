"""Helpers shared by the tests: waiting with a deadline and capturing logs."""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from typing import Callable, List, Union

# The tests import the package from src/ when it is not installed.
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)


def eventually(cond: Callable[[], bool], timeout: float = 10.0, what: Union[str, Callable[[], str]] = "condition") -> None:
    """Polls cond until it holds; fails with what (or what() when it is a
    function: the state at the deadline) when timeout passes first. Tests
    wait this way, never with a bare sleep."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what() if callable(what) else what))
        time.sleep(0.005)


class LogCapture:
    """Collects the records of a logger (every level) as text."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self.handler.setLevel(logging.DEBUG)

    def __enter__(self) -> "LogCapture":
        self.logger.addHandler(self.handler)
        self.old_level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.old_level)

    @property
    def text(self) -> str:
        self.handler.flush()
        return self.stream.getvalue()

    def lines(self) -> List[str]:
        return self.text.splitlines()
