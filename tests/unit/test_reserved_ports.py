"""Servers lms starts on free ports never take the port its own API is about to listen on (a
test's `lms dev` once found embedded NATS on its LMS_PORT)."""

from __future__ import annotations

from lms import netutil
from lms.embedded import _choose_port


def test_a_reserved_port_is_never_chosen_even_when_it_was_last_runs() -> None:
    port = netutil.free_port()
    assert _choose_port(port) == port  # free and not reserved: last run's port is reused
    netutil.reserve_ports(port, None)
    try:
        assert netutil.is_reserved(port)
        assert _choose_port(port) != port
        assert all(netutil.free_port() != port for _ in range(200))
    finally:
        netutil._RESERVED.discard(port)
