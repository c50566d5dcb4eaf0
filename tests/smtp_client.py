"""A raw-socket SMTP client for byte sequences smtplib will not send (smuggling, pipelining)."""
from __future__ import annotations

import socket


class RawSMTP:
    def __init__(self, port: int, host: str = "127.0.0.1", source: str | None = None, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buffer = b""
        self.greeting = self.reply()

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self) -> str:
        """A whole (possibly multi-line) reply, as text, lines joined by newlines."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3:4] == b"-":
            lines.append(self.line())
        return "\n".join(x.decode("utf-8", "replace") for x in lines)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, command: str) -> str:
        self.send(command.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawSMTP":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
