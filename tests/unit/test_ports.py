"""Free-port picking and port probes (real sockets on the loopback, no broker)."""

from __future__ import annotations

import socket

import pytest

from spark_jobs.stack import ports

pytestmark = pytest.mark.unit


def test_free_port_is_bindable_and_never_repeated() -> None:
    picked = [ports.free_port() for _ in range(5)]

    assert len(set(picked)) == 5
    for port in picked:
        assert ports.PORT_RANGE[0] <= port < ports.PORT_RANGE[1]
        with socket.socket() as sock:
            sock.bind((ports.LOOPBACK, port))


def test_a_listening_port_is_taken_and_answers_until_closed() -> None:
    port = ports.free_port()
    server = socket.socket()
    server.bind((ports.LOOPBACK, port))
    server.listen()
    try:
        assert (ports.port_is_free(port), ports.accepts_connections(ports.LOOPBACK, port)) == (
            False,
            True,
        )
    finally:
        server.close()

    assert (ports.port_is_free(port), ports.accepts_connections(ports.LOOPBACK, port)) == (
        True,
        False,
    )
