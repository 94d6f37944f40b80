"""A sandbox's own door to the gateway: a socket of its own, in front of daphne's, that holds a bounded number of
connections.

Daphne's gateway socket is one listener for every sandbox on the host, and daphne serves the whole platform: a
sandbox that opened connections to it until its own file limit (tens of thousands) took the web process's file
descriptors with it, and every org's UI, API and gateway with them. So no sandbox is given daphne's socket. Each
gets a socat listening on a socket of its own, which accepts at most ``JETTY_SANDBOX_GATEWAY_CONNECTIONS`` at once
and leaves the rest waiting in its backlog, where they cost daphne nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .base import SandboxUnavailable

PR_SET_PDEATHSIG = 1


def _die_with_the_worker() -> None:
    """The door closes if the worker that opened it dies (SIGKILL included): it must not outlive its sandbox."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@contextmanager
def gateway_door(upstream: str | None, name: str, connections: int) -> Iterator[str | None]:
    """The socket path a sandbox named ``name`` reaches the gateway through (None when ``upstream`` is None: a
    sandbox on the host's network calls the gateway's URL). Closed and removed on leaving."""
    if upstream is None:
        yield None
        return
    doors = Path(upstream).parent / "doors"
    doors.mkdir(mode=0o755, exist_ok=True)
    path = doors / f"{name}.sock"
    listen = f"UNIX-LISTEN:{path},fork,unlink-early,mode=666,max-children={connections},backlog=16"
    process = subprocess.Popen(
        ["socat", "-lf", "/dev/null", listen, f"UNIX-CONNECT:{upstream}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_the_worker,
        start_new_session=True,  # its children (one per connection) go with it
    )
    try:
        deadline = time.monotonic() + 5
        while not path.is_socket():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SandboxUnavailable(f"the sandbox's gateway socket {path} did not open (socat)")
            time.sleep(0.01)
        yield str(path)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        path.unlink(missing_ok=True)
