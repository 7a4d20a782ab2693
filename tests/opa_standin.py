"""A stand-in for an OPA server, for the REST engine's tests and benchmarks.

It exists because no OPA binary or Docker engine can run on these machines. It speaks OPA's
REST Data API — the subset veto-opa uses — over the embedded OPA engine (``opa_bindings``,
OPA's own Go evaluator) loaded with the built bundle, read from the same ``.tar.gz`` that
``veto-opa build -o`` writes (``read_bundle`` + ``load_into_engine``). The same tests run
against a real OPA server in ``tests/integration/test_real_opa.py``.

    with OpaStandin("build/veto.tar.gz", decision_logs=True) as url:
        RestEngine(url).decide({...})

What it serves, as OPA does (docs/rest-api.md, v1/server/types and writer):

- ``POST /v1/data/{path}`` and ``POST /v1/data`` with body ``{"input": ...}`` -> 200
  ``{"result": ..., "decision_id": ...}``; undefined -> 200 ``{}`` (plus ``decision_id``);
  body that is not JSON -> 400 ``{"code": "invalid_parameter", ...}``; evaluation error -> 500
  ``{"code": "internal_error", "message": "error(s) occurred while evaluating query",
  "errors": [{"code", "message", "location"}]}``. ``GET /v1/data/{path}?input=<json>`` too.
  ``?metrics`` adds OPA's ``metrics`` (the timers of a cached prepared query, measured);
  other parameters such as ``?provenance`` are accepted and ignored. A body without
  ``input`` gets OPA's ``warning`` (``api_usage_warning``). Bodies are written as OPA's
  ``writer`` writes them: answers compact with a trailing newline, fields in
  ``DataResponseV1`` order; error objects indented by two spaces with a trailing newline.
  The recorded answers of a real OPA in ``tests/fixtures/opa/`` hold it to that.
- ``GET /health`` -> 200 ``{}``; ``GET /health?bundles`` (or ``?bundle``) -> 200 ``{}`` when a
  bundle is loaded, else 500 ``{"error": "not all configured bundles have been activated"}``.
- ``PUT``/``PATCH``/``DELETE`` on the Data API -> 405 (OPA writes data there; the stand-in
  does not); anything else, the Policy API included -> 404 ``404 page not found``.

Differences from OPA: builtin errors are always strict (OPA's server makes them undefined
unless ``?strict-builtin-errors``), ``{"input": null}`` counts as no input, and the message
of a 400 is Python's JSON error, not Go's.

For tests it counts TCP connections (:attr:`connections`), records every request
(:attr:`requests`, with its headers) and injects failures: :attr:`delay` before answering,
a forced :attr:`status` with a raw :attr:`body`, :attr:`close_connection` without answering,
and ``bundle=None`` (nothing loaded: every document is undefined).
"""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

from veto_opa.translators.bundle import Bundle, load_into_engine, read_bundle

_EVAL_ERROR = re.compile(r"^(?P<file>[^:\s]+):(?P<row>\d+): (?P<code>[a-z_]+): (?P<message>.*)$",
                         re.DOTALL)


@dataclass(frozen=True)
class Request:
    """One request as the stand-in received it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class OpaStandin:
    """An HTTP/1.1 server on 127.0.0.1 (a free port) answering like OPA.

    Args:
        bundle: a bundle, or the path of a ``.tar.gz``/directory; None loads nothing.
        decision_logs: add a ``decision_id`` to every Data API answer, as OPA does when
            decision logging is on.
        pool_size: OPA engines answering in parallel.
    """

    def __init__(self, bundle: Bundle | str | os.PathLike[str] | None, *,
                 decision_logs: bool = False, pool_size: int = 4) -> None:
        self.decision_logs = decision_logs
        self.delay = 0.0
        """Seconds to wait before answering (interrupted when the server stops)."""
        self.status: int | None = None
        """When set, answer every request with this status and :attr:`body` instead."""
        self.body = b""
        self.content_type = "application/json"
        self.close_connection = False
        """When true, read each request and close the connection without answering."""
        self.requests: list[Request] = []
        self.connections = 0
        self._pool_size = pool_size
        self._engines: queue.SimpleQueue[OpaEngine] = queue.SimpleQueue()
        self._all: list[OpaEngine] = []
        self._loaded = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.load(bundle)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Listen and serve in a background thread; returns the base URL."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.standin = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="opa-standin", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving, drop open connections and close the OPA engines."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            with self._lock:
                for sock in list(self._sockets):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = None
        self._close_engines(self._engines, self._all)
        self._all = []

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def load(self, bundle: Bundle | str | os.PathLike[str] | None) -> None:
        """Replace what is loaded; requests in flight finish on the engines they hold."""
        if bundle is not None and not isinstance(bundle, Bundle):
            bundle = read_bundle(bundle)
        engines = []
        for _ in range(self._pool_size):
            engine = OpaEngine()
            if bundle is not None:
                load_into_engine(bundle, engine)
                try:   # prepare the usual query now, as OPA compiles at activation
                    engine.eval_document("veto.decision", {})
                except OpaError:
                    pass
            engines.append(engine)
        idle: queue.SimpleQueue[OpaEngine] = queue.SimpleQueue()
        for engine in engines:
            idle.put(engine)
        old = (self._engines, self._all)
        self._engines, self._all = idle, engines
        self._loaded = bundle is not None
        self._close_engines(*old)

    @staticmethod
    def _close_engines(idle: queue.SimpleQueue[OpaEngine], engines: list[OpaEngine]) -> None:
        # Close each engine once it is idle: an engine must not be closed while it evaluates.
        for _ in engines:
            try:
                idle.get(timeout=10).close()
            except queue.Empty:
                return

    def headers(self) -> list[dict[str, str]]:
        """The headers of every request received so far."""
        return [r.headers for r in self.requests]

    # -- answering ---------------------------------------------------------------------------

    def evaluate(self, path: str, input: Any, *, metrics: bool = False,
                 has_input: bool = True) -> tuple[int, dict[str, Any]]:
        """Status and body for a Data API query of ``data.<path>`` (dotted, "" for data), in
        OPA's field order (``decision_id``, ``metrics``, ``result``, ``warning``)."""
        idle = self._engines
        engine = idle.get()
        started = time.perf_counter_ns()
        try:
            value = engine.eval_document(path, input)
        except OpaUndefinedError:
            body: dict[str, Any] = {}
        except OpaError as error:
            return 500, {"code": "internal_error",
                         "message": "error(s) occurred while evaluating query",
                         "errors": [_topdown_error(error)]}
        else:
            body = {"result": value}
        finally:
            idle.put(engine)
        elapsed = time.perf_counter_ns() - started
        head: dict[str, Any] = {}
        if self.decision_logs:
            head["decision_id"] = str(uuid.uuid4())
        if metrics:   # the prepared query is cached, so no parse/compile timers (as OPA)
            head["metrics"] = {"counter_server_query_cache_hit": 1,
                               "timer_rego_input_parse_ns": 0,
                               "timer_rego_query_eval_ns": elapsed,
                               "timer_server_handler_ns": elapsed}
        body = {**head, **body}
        if not has_input:
            body["warning"] = {"code": "api_usage_warning",
                               "message": "'input' key missing from the request"}
        return 200, body


def _topdown_error(error: OpaError) -> dict[str, Any]:
    """OPA's JSON for a topdown error, from the embedded engine's ``file:row: code: message``."""
    match = _EVAL_ERROR.match(error.message)
    if match is None:
        return {"code": error.code, "message": error.message}
    return {"code": match["code"], "message": match["message"],
            "location": {"file": match["file"], "row": int(match["row"]), "col": 1}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: OpaStandin

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass   # a client that timed out and hung up is part of the tests, not an error


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "opa-standin"
    wbufsize = -1                      # one write per response (with TCP_NODELAY below)
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        standin = self.server.standin
        with standin._lock:
            standin.connections += 1
            standin._sockets.add(self.connection)

    def finish(self) -> None:
        standin = self.server.standin
        with standin._lock:
            standin._sockets.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        standin = self.server.standin
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        standin.requests.append(Request(method, self.path,
                                        {k.lower(): v for k, v in self.headers.items()}, body))
        if standin.delay and standin._stopping.wait(standin.delay):
            self.close_connection = True
            return
        if standin.close_connection:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if standin.status is not None:
            self._send(standin.status, standin.body, standin.content_type)
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        route = unquote(url.path)
        if route == "/health" and method == "GET":
            if ("bundles" in query or "bundle" in query) and not standin._loaded:
                self._error(500, {"error": "not all configured bundles have been activated"})
            else:
                self._json(200, {})
        elif route == "/v1/data" or route.startswith("/v1/data/"):
            if method in ("GET", "POST"):
                self._data(method, route[len("/v1/data"):].strip("/"), query, body)
            else:
                self._error(405, {"code": "invalid_operation",
                                  "message": f"the stand-in does not implement {method} here"})
        else:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _data(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        has_input = True
        try:
            if method == "POST":
                request = json.loads(body) if body.strip() else {}
                if not isinstance(request, dict):
                    raise ValueError("expected a JSON object")
                has_input = "input" in request
                input = request.get("input")
            else:
                input = json.loads(query["input"][0]) if "input" in query else None
        except ValueError as error:
            self._error(400, {"code": "invalid_parameter",
                              "message": f"body contains malformed input document: {error}"})
            return
        metrics = query.get("metrics", ["false"])[-1] in ("", "true")
        status, answer = self.server.standin.evaluate(path.replace("/", "."), input,
                                                      metrics=metrics, has_input=has_input)
        if status == 200:
            self._json(status, answer)
        else:
            self._error(status, answer)

    def _json(self, status: int, value: object) -> None:
        # Go's json.Encoder: compact, HTML characters escaped, a trailing newline.
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                             ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
            text = text.replace(char, escape)
        self._send(status, text.encode() + b"\n", "application/json")

    def _error(self, status: int, value: object) -> None:
        # OPA's writer.Error: the ErrorV1 indented by two spaces, then a newline.
        self._send(status, json.dumps(value, indent=2, ensure_ascii=False).encode() + b"\n",
                   "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    """``python -m tests.opa_standin BUNDLE [--decision-logs]``: serve in this process (for
    benchmarks that keep the server out of the client's process, as OPA is); prints the URL,
    stops when standard input closes."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("bundle")
    parser.add_argument("--decision-logs", action="store_true")
    parser.add_argument("--pool-size", type=int, default=2)
    options = parser.parse_args()
    standin = OpaStandin(options.bundle, decision_logs=options.decision_logs,
                         pool_size=options.pool_size)
    print(standin.start(), flush=True)
    try:
        sys.stdin.read()
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
