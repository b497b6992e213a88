"""SIGINT / SIGTERM for the node process: a clean exit 0 at any moment, never a traceback.

Standard library only, so that the executable installs it before its first heavy import.

- :func:`install` (first thing the executable does): a signal exits 0 at once. Before the
  node spins there is nothing to clean up (imports, rclpy.init, declaring parameters).
- :func:`graceful` (when the executor is about to spin): the first signal raises
  KeyboardInterrupt in the main thread, which unwinds ``spin()`` into the node's clean-up;
  any later signal exits 0 at once.

rclpy.init installs its own handlers (they shut the context down, which wakes the
executor) and then calls these, so both run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

_state = {"graceful": False}


def _exit_now(code: int = 0) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _handler(signum: int, frame: object) -> None:
    if _state["graceful"]:
        _state["graceful"] = False  # a second signal during the clean-up exits at once
        raise KeyboardInterrupt
    _exit_now()


def install() -> None:
    """From now on SIGINT and SIGTERM exit 0 at once (see the module docstring)."""
    _state["graceful"] = False
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)


def graceful() -> None:
    """From now on the first SIGINT / SIGTERM raises KeyboardInterrupt (main thread)."""
    _state["graceful"] = True


def exit_now(code: int = 0) -> None:
    """Exit without the interpreter's teardown (threads still inside torch or the
    middleware can abort it: "terminate called without an active exception")."""
    _exit_now(code)
