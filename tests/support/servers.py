"""Real processes for tests: the fake upstream, daphne serving Jetty, a Celery worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


# Where the suite's own receivers (webhook targets, fake providers, OTLP collectors) listen: a loopback address of
# its own, the only one the suite's JETTY_OUTBOUND_ALLOW admits. The platform listens on 127.0.0.1, which stays
# refused, so no test can fetch the platform's own API through an outbound request.
RECEIVER_HOST = "127.0.0.2"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited early ({proc.returncode}): {log.read_text()[-3000:] if log else ''}")
        try:
            result = check()
            if result:
                return result
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s: {log.read_text()[-3000:] if log else ''}")


@dataclass
class Process:
    proc: subprocess.Popen
    log: Path
    url: str = ""
    backend: str = ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def start_fake_upstream(log: Path) -> Process:
    port = free_port(RECEIVER_HOST)
    args = [sys.executable, "-m", "tests.support.fake_openai", "--host", RECEIVER_HOST, "--port", str(port)]
    proc = spawn(args, dict(os.environ), log)
    url = f"http://{RECEIVER_HOST}:{port}"
    wait_until(
        lambda: urllib.request.urlopen(f"{url}/v1/models", timeout=1).status == 200, 20, "fake upstream", proc, log
    )
    return Process(proc, log, url)


def start_daphne(env: dict[str, str], log: Path, port: int | None = None) -> Process:
    port = port or free_port()
    args = [str(VENV_BIN / "python"), "-m", "jetty_site.daphne", "-b", "127.0.0.1", "-p", str(port)]
    if env.get("JETTY_GATEWAY_SOCKET"):
        Path(env["JETTY_GATEWAY_SOCKET"]).parent.mkdir(parents=True, exist_ok=True)
        args += ["-e", f"unix:{env['JETTY_GATEWAY_SOCKET']}:mode=666"]
    proc = spawn([*args, "jetty_site.asgi:application"], env, log)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: urllib.request.urlopen(f"{url}/healthz", timeout=1).status == 200, 60, "daphne", proc, log)
    return Process(proc, log, url)


def start_celery_worker(env: dict[str, str], log: Path) -> Process:
    proc = spawn([str(VENV_BIN / "celery"), "-A", "jetty_site", "worker", "--pool=solo", "--loglevel=INFO"], env, log)
    wait_until(lambda: "ready." in log.read_text(), 60, "celery worker", proc, log)
    return Process(proc, log)
