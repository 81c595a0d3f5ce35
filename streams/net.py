"""A port's availability, asked before a server that would only say so in its log starts."""

from __future__ import annotations

import socket


def cannot_bind(host: str, port: int) -> OSError | None:
    """Why ``port`` on ``host`` cannot be listened on now (None: it can). Another process may
    still take it before the server does; then the server's own log says so."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        # a port left in TIME_WAIT by a server that just stopped is free to its next one
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
    return None
