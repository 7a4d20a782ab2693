"""A bundle server for the tests: serves one bundle archive over real HTTP on 127.0.0.1.

It answers as the bundle servers OPA's docs name do (nginx, S3 — any static file server with
ETags; OPA's ``docs/docs/management-bundles``): ``GET`` -> 200 with the archive,
``Content-Type: application/gzip`` and a strong ``ETag`` (the sha256 of the bytes); a request
whose ``If-None-Match`` names the current ETag -> 304 without a body. With
:attr:`long_polling` it also behaves as a long-polling bundle service: a request carrying
``Prefer: ...;wait=N`` whose ETag is current is held until the archive changes or N seconds
pass (then 304), and every 200 carries ``Content-Type: application/vnd.openpolicyagent.bundles``.

For tests it records every request (:attr:`requests`), and can answer late (:attr:`delay`),
with another status (:attr:`status`), or with a token requirement (:attr:`token`).
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LONG_POLL_TYPE = "application/vnd.openpolicyagent.bundles"


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]


class BundleServer:
    def __init__(self, archive: bytes = b"") -> None:
        self.requests: list[Seen] = []
        self.delay = 0.0
        self.status: int | None = None
        self.token: str | None = None
        self.long_polling = False
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._sockets: set[Any] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.archive = archive
        self.etag = ""
        self.publish(archive)

    def publish(self, archive: bytes) -> None:
        """Serve new bytes (a new ETag); wakes held long polls."""
        with self._changed:
            self.archive = archive
            self.etag = f'"{hashlib.sha256(archive).hexdigest()[:32]}"'
            self._changed.notify_all()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/bundles/veto.tar.gz"

    def start(self) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.owner = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            for sock in list(self._sockets):   # kept-alive connections die with the server
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = None

    def __enter__(self) -> BundleServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.owner._sockets.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.owner._sockets.discard(self.connection)  # type: ignore[attr-defined]
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:
        owner: BundleServer = self.server.owner  # type: ignore[attr-defined]
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner.requests.append(Seen(self.path, headers))
        if owner.delay and owner._stopping.wait(owner.delay):
            return
        if owner.token is not None and headers.get("authorization") != f"Bearer {owner.token}":
            self._send(401, b'{"code":"unauthorized"}', "application/json")
            return
        if owner.status is not None:
            self._send(owner.status, b"", "text/plain")
            return
        wait = re.search(r"wait=(\d+)", headers.get("prefer", ""))
        with owner._changed:
            if owner.long_polling and wait and headers.get("if-none-match") == owner.etag:
                owner._changed.wait_for(
                    lambda: headers.get("if-none-match") != owner.etag
                    or owner._stopping.is_set(), timeout=int(wait[1]))
            archive, etag = owner.archive, owner.etag
        if headers.get("if-none-match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        kind = LONG_POLL_TYPE if owner.long_polling else "application/gzip"
        self._send(200, archive, kind, etag)

    def _send(self, status: int, body: bytes, kind: str, etag: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if etag:
            self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)
