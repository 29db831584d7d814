"""sd_notify without a dependency: READY, WATCHDOG and STATUS datagrams to ``$NOTIFY_SOCKET``.

A no-op outside systemd (no socket in the environment), so the same daemon runs under a terminal, in tests
and as a ``Type=notify`` unit. The protocol is one datagram of ``KEY=VALUE`` lines (sd_notify(3)); a socket
name starting with ``@`` is in the abstract namespace.
"""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    def __init__(self, socket_path: str | None = None) -> None:
        self.path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
        self.sent = 0
        self.errors = 0
        self.watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)

    @property
    def enabled(self) -> bool:
        return bool(self.path)

    def notify(self, **fields: str) -> bool:
        if not self.path:
            return False
        addr = "\0" + self.path[1:] if self.path.startswith("@") else self.path
        msg = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(msg, addr)
        except OSError:
            self.errors += 1
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify(READY="1", **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG="1")

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text.replace("\n", " ")[:200])

    def stopping(self) -> bool:
        return self.notify(STOPPING="1")
