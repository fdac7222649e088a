"""A quick reachability check for Kafka bootstrap servers, so jobs fail in seconds, not minutes."""

from __future__ import annotations

import socket

from spark_jobs.common.errors import BrokerUnavailableError


def ensure_reachable(bootstrap_servers: str, timeout_s: float = 5.0) -> None:
    """Raise ``BrokerUnavailableError`` unless at least one bootstrap server accepts TCP."""
    tried = []
    for server in filter(None, (s.strip() for s in bootstrap_servers.split(","))):
        host, _, port = server.rpartition(":")
        tried.append(server)
        try:
            with socket.create_connection((host or "localhost", int(port)), timeout=timeout_s):
                return
        except (OSError, ValueError):
            continue
    raise BrokerUnavailableError(
        f"cannot reach Kafka at {', '.join(tried) or repr(bootstrap_servers)}",
        hint="start the local broker with `recsys stack up`, or set RECSYS_KAFKA_BOOTSTRAP",
    )
