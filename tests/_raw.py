"""Raw HTTP/1.1 websocket upgrades: bytes a well-behaved client would never send."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["RawResponse", "raw_upgrade"]


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


async def raw_upgrade(
    port: int,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
    *,
    host: str = "127.0.0.1",
    raw_target: bytes | None = None,
    timeout: float = 10.0,
) -> RawResponse:
    """Send a websocket upgrade request byte for byte; read the status and headers.

    ``headers`` may repeat a name. For a 101 the body is empty and the
    connection is dropped right away; otherwise the body is read up to
    ``Content-Length``.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = (raw_target or target.encode("latin-1")).join([b"GET ", b" HTTP/1.1\r\n"])
        lines = [
            ("Host", host_header),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
            *headers,
        ]
        head += b"".join(f"{k}: {v}\r\n".encode("utf-8", "surrogateescape") for k, v in lines)
        writer.write(head + b"\r\n")
        await writer.drain()

        async def read() -> RawResponse:
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            parsed: list[tuple[str, str]] = []
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                parsed.append((name.strip(), value.strip()))
            body = b""
            length = [v for k, v in parsed if k.lower() == "content-length"]
            if status != 101 and length:
                body = await reader.readexactly(int(length[0]))
            return RawResponse(status, parsed, body)

        return await asyncio.wait_for(read(), timeout)
    finally:
        writer.close()
