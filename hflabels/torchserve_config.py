"""TorchServe's config.properties: reading and writing it, and a copy whose ports are free, so
several servers (a demo, a test run, a benchmark) can run on one machine at once."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def read_properties(path: Path) -> dict[str, str]:
    properties = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            properties[key.strip()] = value.strip()
    return properties


def write_properties(path: Path, properties: dict[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()), encoding="utf-8")


# Linux's default ephemeral range starts here; ports below it are never handed out by the kernel to
# outgoing connections, which is what took a port chosen with bind(0) before torchserve bound it.
_DEFAULT_EPHEMERAL_LOW = 32768
_LOWEST_PORT = 20000


def ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_LOW


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free just now, chosen below the kernel's
    ephemeral range (so no outgoing connection of this machine takes one before it is bound),
    every one held open until all are found."""
    low = ephemeral_low()
    candidates = list(range(_LOWEST_PORT, low)) if low - _LOWEST_PORT >= 1000 else []
    random.SystemRandom().shuffle(candidates)
    held: list[socket.socket] = []
    try:
        for port in candidates:
            if len(held) == count:
                break
            probe = socket.socket()
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                probe.close()
                continue
            held.append(probe)
        while len(held) < count:  # no room below the ephemeral range: the kernel's choice
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            held.append(probe)
        return [probe.getsockname()[1] for probe in held]
    finally:
        for probe in held:
            probe.close()


def free_port() -> int:
    return free_ports(1)[0]


def config_with_free_ports(source: Path, target: Path) -> Path:
    """``source`` config.properties with every listener on a free loopback port, written to ``target``."""
    properties = read_properties(source)
    ports = free_ports(5)
    for key in ("inference_address", "management_address", "metrics_address"):
        properties[key] = f"http://127.0.0.1:{ports.pop()}"
    properties["grpc_inference_port"] = str(ports.pop())
    properties["grpc_management_port"] = str(ports.pop())
    write_properties(target, properties)
    return target
