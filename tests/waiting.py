"""Start-up guard for tests that launch a real process (server, proxy): poll until it answers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def wait_until(ready: Callable[[], bool], what: str, process: subprocess.Popen | None = None,
               timeout: float = 30.0) -> None:
    """Poll ``ready()`` until true; fail when ``process`` exits first or ``timeout`` passes.

    A guard against hanging forever on a process that never came up, not a measurement of time.
    """
    give_up = time.monotonic() + timeout
    while not ready():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > give_up:
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        time.sleep(0.05)


def answers_ready(base: str) -> bool:
    """Whether the server at ``base`` (``http://host:port``) answers ``/readyz`` with 200 yet."""
    import httpx  # only the tests that start servers need it

    try:
        return httpx.get(base + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
