"""The network of a network-on sandbox: a namespace of its own, NATed to the outside world by slirp4netns.

The sandbox reaches the internet and nothing of the host. ``--disable-host-loopback`` keeps slirp's gateway
address from leading to the host's 127.0.0.1 (where PostgreSQL and Redis listen), and prohibit routes, set from
outside before the agent starts, cover the cloud metadata address, the private and reserved ranges, and the host's
own addresses and subnets. The agent holds no capability in its namespace, so it cannot lift them. The model
gateway is reached as with network off, through the unix-socket relay.

The namespace is the sandbox's own (bubblewrap's child, or a Docker container started with ``network_mode=none``);
slirp4netns enters it as root, and exits with the worker (``--exit-fd``) or when the sandbox ends.
"""

from __future__ import annotations

import ipaddress
import os
import select
import subprocess
import threading
import time

from .base import SandboxUnavailable

BLOCKED = (
    "0.0.0.0/8",
    "10.0.0.0/8",  # slirp's own 10.0.2.0/24 stays reachable: its connected route is more specific
    "100.64.0.0/10",
    "169.254.0.0/16",  # link-local: the cloud metadata address 169.254.169.254
    "172.16.0.0/12",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
READY_WITHIN_S = 10.0


def waiting_for_network(argv: list[str]) -> list[str]:
    """The sandbox's command, started once slirp4netns has configured the default route (waits 5 s at most)."""
    wait = 'for _ in $(seq 500); do grep -q "^tap0\t00000000" /proc/net/route && break; sleep 0.01; done; exec "$@"'
    return ["/bin/bash", "-c", wait, "jetty-network", *argv]


def host_networks() -> list[str]:
    """The host's own global IPv4 addresses and the subnets they sit on: nothing a sandbox should reach."""
    try:
        found = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True)
    except FileNotFoundError:
        raise SandboxUnavailable("network-on sandboxes need `ip` (apt-get install iproute2)") from None
    networks: set[str] = set()
    for line in found.stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            interface = ipaddress.ip_interface(fields[fields.index("inet") + 1])
            networks |= {str(interface.network), f"{interface.ip}/32"}
    return sorted(networks)


class SandboxNetwork:
    """slirp4netns attached to one sandbox's network namespace, with the prohibit routes set before it."""

    def __init__(self, pid: int):
        self._closing = threading.Lock()
        netns = f"/proc/{pid}/ns/net"
        try:
            self._prohibit_routes(netns)
            ready_r = self._start_slirp(netns)
        except FileNotFoundError as exc:
            raise SandboxUnavailable(f"network-on sandboxes need {exc.filename} (scripts/setup-sandbox-host)") from None
        try:
            self._wait_ready(ready_r)
        finally:
            os.close(ready_r)

    @staticmethod
    def _prohibit_routes(netns: str) -> None:
        script = "; ".join(f"ip route add prohibit {net}" for net in [*BLOCKED, *host_networks()])
        made = subprocess.run(["nsenter", f"--net={netns}", "/bin/sh", "-ec", script], capture_output=True, text=True)
        if made.returncode != 0:
            raise SandboxUnavailable(f"could not set the sandbox's routes: {made.stderr.strip()[:300]}")

    def _start_slirp(self, netns: str) -> int:
        """Start slirp4netns on the namespace; returns the fd it writes to once the network is configured."""
        ready_r, ready_w = os.pipe()
        exit_r, self._exit_w = os.pipe()  # slirp4netns ends when the worker does
        try:
            self.proc = subprocess.Popen(
                [
                    "slirp4netns",
                    "--configure",
                    "--mtu=65520",
                    "--disable-host-loopback",
                    f"--ready-fd={ready_w}",
                    f"--exit-fd={exit_r}",
                    "--netns-type=path",
                    netns,
                    "tap0",
                ],
                pass_fds=(ready_w, exit_r),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError:
            for fd in (ready_r, self._exit_w):
                os.close(fd)
            raise
        finally:
            os.close(ready_w)
            os.close(exit_r)
        return ready_r

    def _wait_ready(self, fd: int) -> None:
        deadline = time.monotonic() + READY_WITHIN_S
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                if os.read(fd, 1):
                    return
                break  # closed without a byte: slirp4netns died
        self.proc.kill()
        error = self.proc.stderr.read().decode(errors="replace")[-300:] if self.proc.stderr else ""
        self.close()
        raise SandboxUnavailable(f"slirp4netns did not configure the sandbox's network: {error.strip()}")

    def close(self) -> None:
        """Stop slirp4netns (once, whichever thread asks first: the sandbox ending, or a kill)."""
        with self._closing:
            if self._exit_w < 0:
                return
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            os.close(self._exit_w)
            self._exit_w = -1
