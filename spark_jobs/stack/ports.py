"""Local TCP ports: pick free ones for tests, tell whether one is taken or answering.

``free_port`` draws from below the usual ephemeral range (Linux 32768-60999, macOS 49152+), so a
port handed to a broker is not grabbed meanwhile by an outgoing client connection, and it never
returns the same port twice in one process, so two calls in a row give two usable ports.
"""

from __future__ import annotations

import random
import socket

LOOPBACK = "127.0.0.1"
PORT_RANGE = (20_000, 32_000)

_handed_out: set[int] = set()


def free_port(host: str = LOOPBACK, attempts: int = 200) -> int:
    """A port nobody listens on or binds right now, not returned before by this process."""
    rng = random.SystemRandom()
    for _ in range(attempts):
        port = rng.randrange(*PORT_RANGE)
        if port not in _handed_out and port_is_free(port, host):
            _handed_out.add(port)
            return port
    return _os_assigned_port(host)


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could bind ``host:port`` now (``SO_REUSEADDR``, as Java servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def accepts_connections(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether something listens on ``host:port`` (one TCP connect, closed at once)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _os_assigned_port(host: str) -> int:
    """Fallback when the preferred range is crowded: let the kernel pick."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
