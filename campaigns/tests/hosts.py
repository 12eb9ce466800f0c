"""Worker "hosts" for the multi-host test (campaigns/tests/test_multihost.py): each a Linux network namespace of its
own, joined to this machine by a veth pair, running one real `celery worker` process group (campaigns.tests.worker);
or, where namespaces are unavailable (not root, no `ip`), plain process groups on this machine's loopback.

In a namespace, a worker reaches nothing on 127.0.0.1 but its own loopback. PostgreSQL and Redis keep listening on
this machine's loopback only (their configuration is not ours to change), so a `socat` on the host end of each veth
pair forwards their ports there. The SMTP sink listens on every address, and each host reaches it through a relay on
its own loopback (a `socat` inside the namespace), as a machine's local MTA would relay. Each host's traffic then
comes from its own address (10.231.N.2): the sink's records tell which host sent what.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from campaigns.tests.worker import database_url_of_this_test, worker_start

SUBNET = "10.231"  # 10.231.N.0/30 for host N: .1 this machine's end, .2 the host's
FORWARDED_PORTS = (5432, 6379)  # PostgreSQL, Redis (both on 127.0.0.1 here)


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def namespaces_available() -> tuple[bool, str]:
    """Whether this process can make network namespaces and veth pairs (and forward with socat); why not if not."""
    if os.geteuid() != 0:
        return False, "not root"
    if shutil.which("ip") is None or shutil.which("socat") is None:
        return False, "no ip (iproute2) or no socat"
    probe = f"hmprobe{os.getpid() % 100000}"
    made = _run("ip", "netns", "add", probe)
    if made.returncode != 0:
        return False, f"ip netns add failed: {made.stderr.strip()}"
    _run("ip", "netns", "del", probe)
    return True, ""


def _with_host(url: str, host: str) -> str:
    """`url` with its host (127.0.0.1 or localhost) replaced, credentials and port kept."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = (f"{credentials}@" if credentials else "") + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _wait_for_port(host: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class Host:
    number: int
    namespace: str = ""  # "" in process-group mode
    worker: subprocess.Popen | None = None
    log_path: Path | None = None
    forwarders: list[subprocess.Popen] = field(default_factory=list)
    killed_at: float | None = None

    @property
    def address(self) -> str:
        """The address its connections come from (and the sink sees)."""
        return f"{SUBNET}.{self.number}.2" if self.namespace else "127.0.0.1"

    @property
    def gateway(self) -> str:
        """The address it reaches PostgreSQL, Redis and (through its loopback relay) the SMTP sink at."""
        return f"{SUBNET}.{self.number}.1" if self.namespace else "127.0.0.1"


class Hosts:
    """`count` worker hosts; `mode` is "namespaces" or "process groups" (what ran, for the report)."""

    def __init__(self, count: int, *, log_dir: Path, broker_url: str, use_namespaces: bool):
        self.log_dir = log_dir
        self.broker_url = broker_url
        self.mode = "network namespaces" if use_namespaces else "process groups"
        tag = os.getpid() % 10000
        self.hosts = [Host(n, namespace=f"hm{tag}h{n}" if use_namespaces else "") for n in range(1, count + 1)]

    # --- the network ---------------------------------------------------------------------------------------

    def _network_up(self, host: Host) -> None:
        outside, inside = f"{host.namespace}a", f"{host.namespace}b"
        steps = [
            ("ip", "netns", "add", host.namespace),
            ("ip", "netns", "exec", host.namespace, "ip", "link", "set", "lo", "up"),
            ("ip", "link", "add", outside, "type", "veth", "peer", "name", inside),
            ("ip", "link", "set", inside, "netns", host.namespace),
            ("ip", "addr", "add", f"{host.gateway}/30", "dev", outside),
            ("ip", "link", "set", outside, "up"),
            ("ip", "netns", "exec", host.namespace, "ip", "addr", "add", f"{host.address}/30", "dev", inside),
            ("ip", "netns", "exec", host.namespace, "ip", "link", "set", inside, "up"),
        ]
        for step in steps:
            result = _run(*step)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(step)}: {result.stderr.strip()}")
        for port in FORWARDED_PORTS:
            host.forwarders.append(
                subprocess.Popen(
                    ["socat", f"TCP-LISTEN:{port},bind={host.gateway},fork,reuseaddr", f"TCP:127.0.0.1:{port}"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in FORWARDED_PORTS:
            _wait_for_port(host.gateway, port)

    def _smtp_relay_up(self, host: Host, port: int) -> None:
        """The host's own loopback relay to the sink, as a local MTA relays on a real machine: the sender speaks
        plaintext only to a loopback relay (R-SEC-TLS, HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK), and the sink still
        sees the host's own address."""
        host.forwarders.append(
            subprocess.Popen(
                ["ip", "netns", "exec", host.namespace, "socat",
                 f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", f"TCP:{host.gateway}:{port}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 10
        while _run("ip", "netns", "exec", host.namespace, "ss", "-ltn", f"sport = :{port}").stdout.count("LISTEN") < 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the SMTP relay of host {host.number} did not start")
            time.sleep(0.05)

    def _network_down(self, host: Host) -> None:
        for forwarder in host.forwarders:
            forwarder.terminate()
            forwarder.wait(10)
        host.forwarders.clear()
        if host.namespace:
            _run("ip", "link", "del", f"{host.namespace}a")  # deletes its peer too
            _run("ip", "netns", "del", host.namespace)

    # --- the workers ---------------------------------------------------------------------------------------

    def start(self, sink, *, env: dict[str, str], concurrency: int) -> None:
        for host in self.hosts:
            if host.namespace:
                self._network_down(host)  # a namespace of that name left by a killed run
                self._network_up(host)
                self._smtp_relay_up(host, sink.port)
            host.log_path = self.log_dir / f"host-{host.number}.log"
            log = host.log_path.open("w")
            host.worker = worker_start(
                sink, log, queues="campaigns", name=f"host{host.number}",
                extra_env=env | {
                    "DATABASE_URL": _with_host(database_url_of_this_test(), host.gateway),
                    "CELERY_BROKER_URL": _with_host(self.broker_url, host.gateway),
                    "EMAIL_HOST": "127.0.0.1",  # its own relay (namespaces) or the sink itself
                },
                pool=("--concurrency", str(concurrency), "-P", "prefork"),
                prefix=("ip", "netns", "exec", host.namespace) if host.namespace else (),
                own_group=True,
            )
            log.close()  # the worker holds its own descriptor

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(" ready." in host.log_path.read_text(errors="replace") for host in self.hosts):
                return
            dead = [host for host in self.hosts if host.worker.poll() is not None]
            if dead:
                break
            time.sleep(0.1)
        raise AssertionError(f"the worker hosts did not start:\n{self.output()}")

    def kill(self, host: Host) -> None:
        """SIGKILL the host's whole process group (the worker and its pool's children) at once: a lost machine."""
        if host.worker.poll() is None:
            os.killpg(host.worker.pid, signal.SIGKILL)
            host.killed_at = time.time()
        host.worker.wait(10)

    def output(self) -> str:
        return "\n".join(
            f"--- host {host.number} (exit {host.worker.returncode if host.worker else '-'}) ---\n"
            f"{host.log_path.read_text(errors='replace')[-3000:] if host.log_path else ''}"
            for host in self.hosts
        )

    def stop(self) -> None:
        for host in self.hosts:
            if host.worker is not None:
                try:  # the group, even when its leader is gone: a pool child may outlive it
                    os.killpg(host.worker.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                host.worker.wait(10)
            self._network_down(host)
