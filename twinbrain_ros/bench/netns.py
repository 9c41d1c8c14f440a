"""Two "hosts" on one Linux machine: network namespaces ``gpu`` and ``robot`` joined by a point-to-point
link whose faults (delay with jitter, loss, a partition) this process applies — for the two-host test and
`twinbrain-bench two-hosts`. Root only; nothing here touches traffic outside the two namespaces.

Why not a veth pair with ``tc netem``: the development and CI kernel here has no ``sch_netem`` and no tc
classifiers or actions (``tc qdisc add ... netem`` answers "Specified qdisc kind is unknown"), so nothing
in the kernel can delay or drop packets. The link is instead a pair of TUN devices, one in each namespace,
and a relay thread here that moves every IP packet from one to the other after the configured delay —
netem's model in user space: per-packet delay ``delay ± jitter`` (uniform; packets may reorder, as
netem's do), independent loss, and a partition that drops everything. It also counts the bytes that
cross, per direction. On two real machines, ``tc qdisc add dev eth0 root netem delay 20ms 5ms loss 5%``
does the same to a real link (README, "Two hosts").

DDS over it: Fast DDS would move data between processes of the same machine through shared memory,
bypassing any link, so the nodes run with ``FASTDDS_BUILTIN_TRANSPORTS=UDPv4`` (``host_env``); the TUN
devices carry multicast, so plain discovery works across the link as between two real hosts.
"""

from __future__ import annotations

import fcntl
import heapq
import os
import random
import select
import shutil
import struct
import subprocess
import threading
import time
from dataclasses import dataclass

TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
HOSTS = ("gpu", "robot")
ADDRESSES = {"gpu": "10.231.0.1", "robot": "10.231.0.2"}


class NamespacesUnavailable(RuntimeError):
    """Network namespaces (or TUN devices) cannot be created here: the reason says why."""


@dataclass
class LinkCondition:
    name: str = "clean"
    delay: float = 0.0        # one-way, seconds
    jitter: float = 0.0       # uniform ± seconds around ``delay``
    loss: float = 0.0         # probability that a packet is dropped
    down: bool = False        # partition: every packet is dropped

    def as_dict(self) -> dict:
        return {"delay_ms": self.delay * 1e3, "jitter_ms": self.jitter * 1e3, "loss": self.loss, "down": self.down}


def _run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise NamespacesUnavailable(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.returncode}")


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class TwoHosts:
    """``with TwoHosts() as hosts:`` creates the namespaces and the link, removes both on exit (also when
    the body raised). ``hosts.command("robot", [...])`` prefixes a command to run it on that host;
    ``hosts.set(LinkCondition(...))`` changes the link; ``hosts.bytes()`` counts what crossed."""

    def __init__(self, tag: str | None = None, seed: int = 0):
        tag = tag or str(os.getpid())
        self.ns = {h: f"tb{tag}-{h}" for h in HOSTS}
        self.dev = {h: f"tb{tag[-8:]}{h[0]}" for h in HOSTS}   # interface names: 15 characters at most
        self.condition = LinkCondition()
        self.crossed = {"gpu->robot": 0, "robot->gpu": 0}
        self.dropped = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fds: dict[str, int] = {}
        self._thread: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------------------
    def __enter__(self) -> "TwoHosts":
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _create(self) -> None:
        if os.geteuid() != 0:
            raise NamespacesUnavailable("network namespaces need root (this process is not)")
        if shutil.which("ip") is None:
            raise NamespacesUnavailable("the `ip` tool (iproute2) is not installed")
        if not os.path.exists("/dev/net/tun"):
            raise NamespacesUnavailable("/dev/net/tun is missing (no TUN support in this kernel or container)")
        for host in HOSTS:
            _run("ip", "netns", "add", self.ns[host])
            self._fds[host] = _open_tun(self.dev[host])
            # the open descriptor stays attached to the device when the device moves into the namespace
            _run("ip", "link", "set", self.dev[host], "netns", self.ns[host])
            ip = ("ip", "-n", self.ns[host])
            _run(*ip, "link", "set", "lo", "up")
            _run(*ip, "link", "set", self.dev[host], "multicast", "on", "up")
            _run(*ip, "addr", "add", f"{ADDRESSES[host]}/24", "dev", self.dev[host])
            _run(*ip, "route", "add", "224.0.0.0/4", "dev", self.dev[host])   # DDS discovery multicast
        self._thread = threading.Thread(target=self._relay, name="twinbrain-link", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for fd in self._fds.values():
            os.close(fd)          # the (non-persistent) TUN device goes away with its descriptor
        self._fds.clear()
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def command(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[host], *argv]

    @staticmethod
    def host_env(base: dict | None = None, **extra) -> dict:
        """Environment of a node on one of the hosts: DDS over UDP only (never shared memory, which would
        bypass the link), discovery beyond localhost."""
        env = dict(os.environ if base is None else base)
        env.update(FASTDDS_BUILTIN_TRANSPORTS="UDPv4", ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET")
        env.update(extra)
        return env

    # -- the link -------------------------------------------------------------------------------
    def set(self, condition: LinkCondition) -> None:
        with self._lock:
            self.condition = condition

    def bytes(self) -> dict:
        with self._lock:
            return dict(self.crossed, dropped_packets=self.dropped)

    def _relay(self) -> None:
        peer = {self._fds["gpu"]: (self._fds["robot"], "gpu->robot"),
                self._fds["robot"]: (self._fds["gpu"], "robot->gpu")}
        queue: list[tuple[float, int, int, bytes]] = []   # (release time, sequence, out fd, packet)
        seq = 0
        while not self._stop.is_set():
            timeout = 0.05 if not queue else max(0.0, min(0.05, queue[0][0] - time.monotonic()))
            readable, _, _ = select.select(list(peer), [], [], timeout)
            now = time.monotonic()
            for fd in readable:
                while True:
                    try:
                        packet = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    out, direction = peer[fd]
                    with self._lock:
                        c = self.condition
                        self.crossed[direction] += len(packet)
                        if c.down or (c.loss and self._rng.random() < c.loss):
                            self.dropped += 1
                            continue
                        delay = max(0.0, c.delay + (self._rng.uniform(-c.jitter, c.jitter) if c.jitter else 0.0))
                    seq += 1
                    heapq.heappush(queue, (now + delay, seq, out, packet))
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                _, _, out, packet = heapq.heappop(queue)
                try:
                    os.write(out, packet)
                except OSError:
                    pass   # the far device is going away (shutdown), or its queue is full: a lost packet
