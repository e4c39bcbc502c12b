"""Small socket helpers: free ports and readiness probes."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

# Ports this process is about to listen on (the API's LMS_PORT, the worker's metrics port) but
# has not bound yet: a server we start on a "free" port (embedded NATS, localstripe) must not take
# one of them in the meantime, or the API then finds its own port in use.
_RESERVED: set[int] = set()


def reserve_ports(*ports: int | None) -> None:
    _RESERVED.update(port for port in ports if port)


def is_reserved(port: int) -> bool:
    return port in _RESERVED


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now on `host`, and not one this process reserved."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _RESERVED:
            return port


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (we can bind it ourselves)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR mirrors what servers set, so a port in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def accepts_connections(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it returns True or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
