"""The REST engine: asks an OPA server that holds the veto bundle, over OPA's Data API.

    from veto_opa.engines import RestEngine

    engine = RestEngine("http://localhost:8181", timeout=0.5)
    answer = engine.decide(input)        # POST /v1/data/veto/decision {"input": input}
    answer.opa_decision_id               # OPA's decision_id when decision logging is on
    engine.health()                      # GET /health?bundles=True: up, bundles activated

Configuration goes through ``opa-python-client`` (``opa_client.OpaClient``) and its
``requests`` session: the bearer token (``OpaClient(token=...)`` -> ``Authorization``), the TLS
options (``verify``, ``cert``), and the environment as ``requests`` reads it, once, at
construction: ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, ``HTTP(S)_PROXY``/``NO_PROXY`` and
``.netrc``. :meth:`RestEngine.health` is ``OpaClient.check_health({"bundles": True})``.

The per-call POST does not go through ``requests``, nor through urllib3: it is sent by a
minimal keep-alive HTTP/1.1 client on ``http.client`` — the HTTP client's cost is paid on every
tool call, and the requirement is at most 1.2 x a bare kept-alive ``http.client`` POST of the
same bytes (p50, one thread). Measured on a shared 2-CPU machine, calls interleaved one by one,
p50 over the bare POST; "fixed server": a separate process answering a fixed decision, which
isolates the client; "stand-in": tests/opa_standin.py, the server of
``benchmarks/bench_engines.py``, in the same process, where the client's CPU also competes
with the server for the GIL:

    ===========================================  ==============  ==========================
    client                                       fixed server    stand-in (bare: 1.6-1.7 ms)
    ===========================================  ==============  ==========================
    requests (``HTTPAdapter.send``, the old      +410..480 µs    +940..1085 µs, 1.56-1.64x
    path, a prepared request per call)
    urllib3 ``HTTPConnectionPool.urlopen``       +165..195 µs    +470..520 µs,  1.28-1.31x
    (``preload_content``, ``retries=False``,
    headers precomputed; the POST alone)
    this module (all of ``decide``)              +48..59 µs      +95..160 µs,   1.06-1.10x
    ===========================================  ==============  ==========================

``requests`` builds Request, PreparedRequest and Response objects, case-insensitive header
dictionaries and hooks on every call; urllib3's ``urlopen`` still builds a Timeout, a Retry and
a response object with its content decoders, polls the socket for liveness before each reuse
and sends the headers and the body through its own layers. Only the ``http.client`` client
meets 1.2x. (This module's stand-in figures are rows (c)/(d) of the benchmark; the others
and the fixed-server column come from one-off scripts interleaving the same way.) It keeps
what the old path gave:

- **Connection reuse.** A thread-safe pool: a ``queue.LifoQueue`` of idle connections, the
  most recently used first, up to ``pool_maxsize``; a caller that finds none idle opens one
  (never waits), and a connection returned to a full pool is closed, as urllib3 does with
  ``block=False``. Each connection serves one caller at a time.
- **A stale connection is retried once.** A reused connection that fails before the first
  byte of the answer — the send fails, or the socket is reset or closed (OPA restarted, an
  idle timeout of OPA or of a proxy) — is closed and the request is sent again, once, on a
  new connection. The request cannot have been answered; at worst OPA evaluated it and logged
  a decision that nobody read, which a read-only Data API query allows. A new connection that
  fails is not retried, nor is any failure after the first byte, nor a timeout: fail closed.
  No liveness poll before reuse: it would cost a system call on every decision.
- **Timeout.** ``timeout`` bounds the connection (TCP and TLS handshake) and each read, as a
  socket timeout; a connection that timed out is closed, never reused.
- **TLS.** The ``ssl.SSLContext`` is built once, as urllib3 builds it for ``requests``
  (``create_urllib3_context``: TLS >= 1.2, hostname check), from ``verify`` (True: the CA bundle
  ``requests`` would use; a path: that file or directory; False: no verification) and ``cert``
  (a PEM path or a ``(cert, key)`` pair for mutual TLS).
- **Headers.** Computed once: ``User-Agent``, ``Accept``, ``Content-Type``, OpaClient's
  ``Authorization`` (or ``.netrc`` Basic), ``Proxy-Authorization`` for a proxy with
  credentials; per call ``traceparent``/``tracestate`` from the active span (the global
  propagator) or the ``headers`` passed, merged case-insensitively. ``http.client`` rejects a
  name or value it cannot send (CR/LF injection) before anything is sent.
- **Proxies.** An ``http://`` proxy from the environment is honoured (absolute-form request
  for ``http``, ``CONNECT`` tunnel for ``https``); other proxy schemes raise ``ValueError`` at
  construction — exclude OPA with ``NO_PROXY``.

The body is serialized once, compact (``separators=(",", ":")``), to bytes. The answer is
requested with ``Accept-Encoding: identity``: decisions are small and OPA is near.

Failures raise, with messages naming the cause (the guard turns them into a deny):
EngineUnavailable (refused, DNS, TLS, connection dropped), EngineTimeout (no connection or no
answer within ``timeout``), EngineProtocolError (non-200 with OPA's message, a body that is not
a JSON object, a result that is not a decision, an answer that is not HTTP), PolicyNotLoaded
(200 without ``result``: undefined — never false, never allow).
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import os
import queue
import socket
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opa_client import OpaClient
from opentelemetry import propagate
from requests.utils import (
    DEFAULT_CA_BUNDLE_PATH,
    get_auth_from_url,
    get_netrc_auth,
    prepend_scheme_if_needed,
    select_proxy,
)
from urllib3.util.ssl_ import create_urllib3_context

from veto_opa import __version__
from veto_opa.engines.base import EngineAnswer, check_decision, input_text
from veto_opa.errors import (
    EngineError,
    EngineProtocolError,
    EngineTimeout,
    EngineUnavailable,
    PolicyNotLoaded,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

_EXCERPT = 80

# A send on a reused connection that fails like this never delivered a whole request.
_SEND_FAILED = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLEOFError,
                ssl.SSLZeroReturnError)


class RestEngine:
    """Decides by POSTing the input to an OPA server's Data API.

    Args:
        url: OPA's base URL, e.g. ``http://localhost:8181`` (``https`` for TLS); it may carry
            a path prefix (an OPA behind a gateway).
        timeout: seconds to wait for the connection and for each read of the answer.
        token: sent as ``Authorization: Bearer <token>`` (OPA's ``--authentication=token``).
        verify: TLS verification: True (the CA bundle ``requests`` uses, or
            ``REQUESTS_CA_BUNDLE``), False, or the path of a CA bundle file or directory.
        cert: client certificate for mutual TLS: a PEM path (certificate and key) or a
            ``(cert, key)`` pair.
        path: the document to query, ``/``-separated under ``/v1/data/``.
        pool_maxsize: idle keep-alive connections kept for concurrent callers (at least 1).

    Raises:
        ValueError: the URL is not an absolute http(s) URL, ``pool_maxsize`` is below 1, the
            TLS files cannot be loaded, or the environment's proxy for OPA is not ``http://``.
    """

    name = "rest"

    #: ``decide`` takes the input's JSON text (``text=``) instead of serialising the input.
    takes_text = True

    def __init__(self, url: str, *, timeout: float = 1.0, token: str | None = None,
                 verify: bool | str = True, cert: str | tuple[str, str] | None = None,
                 path: str = "veto/decision", pool_maxsize: int = 10) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL of OPA such as http://localhost:8181, "
                             f"found {url!r}")
        if pool_maxsize < 1:
            raise ValueError(f"pool_maxsize must be at least 1, found {pool_maxsize}")
        https = parts.scheme == "https"
        self.url = url.rstrip("/")
        self.path = path.strip("/")
        self.endpoint = f"{self.url}/v1/data/{self.path}"
        self.timeout = timeout
        self._document = "data." + self.path.replace("/", ".") if self.path else "data"
        host, port = parts.hostname, parts.port or (443 if https else 80)
        netloc_host = f"[{host}]" if ":" in host else host
        self._client = OpaClient(host=netloc_host, port=port,
                                 ssl=verify if https else False, cert=cert, token=token,
                                 retries=0, timeout=timeout)
        session = self._client._session
        if https and verify is False:
            session.verify = False   # OpaClient(ssl=False) would mean plain http
        settings = session.merge_environment_settings(
            self.endpoint, {}, False, session.verify, session.cert)

        headers = {"User-Agent": f"veto-opa/{__version__}", "Accept": "application/json",
                   "Content-Type": "application/json", **(self._client.headers or {})}
        if "Authorization" not in headers and session.trust_env:
            netrc = get_netrc_auth(self.endpoint)
            if netrc is not None:
                headers["Authorization"] = session.headers["Authorization"] = _basic(*netrc)
        # The session (health) uses what was read here too: per request, requests would let
        # REQUESTS_CA_BUNDLE override an explicit CA path.
        session.verify, session.proxies = settings["verify"], settings["proxies"]
        session.trust_env = False
        self._session = session

        context = _tls_context(settings["verify"], cert) if https else None
        target = f"{parts.path.rstrip('/')}/v1/data/{self.path}"
        address, tunnel = (host, port), None
        proxy = select_proxy(self.endpoint, settings["proxies"])
        if proxy:
            proxy_parts = urlsplit(prepend_scheme_if_needed(proxy, "http"))
            if proxy_parts.scheme != "http" or not proxy_parts.hostname:
                raise ValueError(f"the proxy {proxy!r} for OPA at {self.url} is not supported "
                                 "(only http:// proxies are); exclude OPA with NO_PROXY")
            address = (proxy_parts.hostname, proxy_parts.port or 80)
            user, password = get_auth_from_url(proxy)
            proxy_headers = {"Proxy-Authorization": _basic(user, password)} if user else {}
            if https:
                tunnel = (host, port, proxy_headers)   # CONNECT, then TLS with OPA
            else:
                headers.update(proxy_headers)
                target = self.endpoint                 # absolute-form: the proxy forwards it
        options: dict[str, Any] = {"timeout": timeout}
        if context is not None:
            options["context"] = context
        factory = _HTTPSConnection if https else _HTTPConnection
        self._target = target
        self._headers = headers
        self._names = {name.lower(): name for name in headers}
        self._pool = _Pool(functools.partial(_open, factory, address, options, tunnel),
                           pool_maxsize)

    def decide(self, input: dict[str, Any], *, headers: Mapping[str, str] | None = None,
               text: str | None = None) -> EngineAnswer:
        """POST ``{"input": input}`` to ``/v1/data/<path>`` and check the answer.

        Args:
            input: the OPA input document.
            headers: extra request headers, typically ``traceparent``/``tracestate`` of the
                caller's span. When None, the current OpenTelemetry context is injected with
                the global propagator (nothing is added when there is no active span).
            text: the JSON text of ``input``, when the caller has it; then ``input`` itself
                is not read.

        Returns:
            The checked decision and OPA's ``decision_id``.

        Raises:
            EngineUnavailable: connection refused, DNS or TLS failure, connection dropped.
            EngineTimeout: no connection or no answer within ``timeout``.
            EngineProtocolError: HTTP status other than 200, or an answer that is not a JSON
                object holding a decision object; a header or input that cannot be sent.
            PolicyNotLoaded: OPA answered without ``result``: the document is undefined.
        """
        request_headers = self._headers.copy()
        if headers is None:
            propagate.inject(request_headers)
        else:
            for name, value in headers.items():
                same = self._names.get(name.lower())
                if same is not None and same != name:
                    del request_headers[same]
                request_headers[name] = value
        try:
            if text is None:
                text = input_text(input)
            body = f'{{"input":{text}}}'.encode()
        except (TypeError, ValueError) as error:
            raise EngineProtocolError(f"the input cannot be sent to OPA as JSON: {error}") from None
        status, content = self._post(body, request_headers)
        return self._answer(status, content)

    def health(self) -> bool:
        """Whether OPA answers ``GET /health?bundles=True`` with 200: up, bundles activated.

        Through ``OpaClient.check_health`` (its session: same token, TLS and proxies); any
        failure, a timeout included, is False.
        """
        return self._client.check_health({"bundles": True}, diagnostic_url=f"{self.url}/health")

    def document(self, path: str) -> Any:
        """GET ``/v1/data/<path>``: a document of the bundle OPA holds (``veto/facts``), or
        None when it is undefined. Through OpaClient's session, as :meth:`health`.

        Raises:
            EngineUnavailable: OPA cannot be reached (or did not answer in time).
            EngineProtocolError: OPA answered other than 200 with a JSON object.
        """
        url = f"{self.url}/v1/data/{path.strip('/')}"
        try:
            response = self._session.get(url, timeout=self.timeout)
        except Exception as error:  # noqa: BLE001 - requests' errors, named in the message
            raise EngineUnavailable(f"cannot read {path} from OPA at {self.url}: "
                                    f"{type(error).__name__}: {error}") from None
        if response.status_code != 200:
            raise EngineProtocolError(f"OPA answered HTTP {response.status_code} for {path}: "
                                      f"{_error_message(response.content)}")
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if type(body) is not dict:
            raise EngineProtocolError(f"OPA's answer for {path} is not a JSON object: "
                                      f"{_excerpt(response.content)}")
        return body.get("result")

    def close(self) -> None:
        """Close the keep-alive connections; later calls still work, without keep-alive."""
        self._pool.close()
        self._client.close_connection()

    def __enter__(self) -> RestEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send the request on a pooled connection; status and body of the answer."""
        connection = self._pool.get()
        reused = connection.sock is not None
        while True:
            stage = "connect"
            try:
                if connection.sock is None:
                    connection.connect()
                stage = "send"
                try:
                    connection.request("POST", self._target, body, headers)
                except ValueError as error:   # a header name or value http.client cannot send
                    raise _Unsendable(error) from None
                stage = "answer"
                response = connection.getresponse()
                stage = "read"
                content = response.read()
            except BaseException as error:
                connection.close()
                if reused and (stage == "send" and isinstance(error, _SEND_FAILED)
                               or stage == "answer" and isinstance(error, _NoAnswer)):
                    connection, reused = self._pool.new(), False   # stale: once, on a new one
                    continue
                if isinstance(error, _Unsendable):
                    raise EngineProtocolError(
                        f"the request to OPA cannot be built: {error.args[0]}") from None
                if isinstance(error, (OSError, http.client.HTTPException)):
                    raise self._failure(error, connecting=stage == "connect") from None
                raise
            self._pool.put(connection)
            return response.status, content

    def _failure(self, error: OSError | http.client.HTTPException, *,
                 connecting: bool) -> EngineError:
        if isinstance(error, TimeoutError):
            if connecting:
                return EngineTimeout(f"OPA at {self.url} did not accept the connection within "
                                     f"{self.timeout:g} s")
            return EngineTimeout(f"OPA did not answer within {self.timeout:g} s")
        if isinstance(error, ConnectionRefusedError):
            return EngineUnavailable(f"OPA at {self.url} refused the connection")
        if isinstance(error, socket.gaierror):
            return EngineUnavailable(f"cannot resolve OPA's host in {self.url}: {error}")
        if isinstance(error, ssl.SSLError):
            return EngineUnavailable(f"TLS with OPA at {self.url} failed: {error}")
        if isinstance(error, (_NoAnswer, ConnectionError)):
            return EngineUnavailable(f"OPA at {self.url} closed the connection without answering")
        if isinstance(error, http.client.IncompleteRead):
            return EngineUnavailable(f"OPA at {self.url} closed the connection in the middle of "
                                     f"its answer ({len(error.partial)} bytes received)")
        if isinstance(error, http.client.HTTPException):
            return EngineProtocolError(f"OPA's answer is not HTTP/1.1: {error!r}")
        return EngineUnavailable(f"cannot reach OPA at {self.url}: {error}")

    def _answer(self, status: int, content: bytes) -> EngineAnswer:
        if status != 200:
            raise EngineProtocolError(f"OPA answered HTTP {status}: {_error_message(content)}")
        try:
            body = json.loads(content)
        except ValueError:
            raise EngineProtocolError(f"OPA's answer is not JSON: {_excerpt(content)}") from None
        if type(body) is not dict:
            raise EngineProtocolError(f"OPA's answer is not a JSON object: {_excerpt(content)}")
        if "result" not in body:
            raise PolicyNotLoaded(f"{self._document} is undefined at OPA {self.url}: "
                                  "is the veto bundle loaded?")
        decision_id = body.get("decision_id")
        return EngineAnswer(check_decision(body["result"]),
                            decision_id if type(decision_id) is str else None)


# -- the HTTP client -----------------------------------------------------------------------------

class _NoAnswer(ConnectionError):
    """The connection was closed or reset before the first byte of an answer."""


class _Unsendable(Exception):
    """``http.client`` refused a header before sending anything."""


class _Response(http.client.HTTPResponse):
    """An answer that tells "nothing received" (safe to send again) from a broken answer."""

    def begin(self) -> None:
        try:
            first = self.fp.peek(1)   # one read, nothing consumed
        except (ConnectionResetError, ConnectionAbortedError) as error:
            raise _NoAnswer(str(error)) from error
        if not first:
            raise _NoAnswer("the connection was closed before the answer")
        super().begin()


class _HTTPConnection(http.client.HTTPConnection):
    response_class = _Response


class _HTTPSConnection(http.client.HTTPSConnection):
    response_class = _Response


class _Pool:
    """Idle keep-alive connections, the most recently used first.

    ``get`` never waits: with none idle it makes a new (unconnected) connection. ``put`` keeps
    at most ``maxsize`` idle ones and closes the rest; after ``close`` it closes them all.
    """

    def __init__(self, new: Callable[[], http.client.HTTPConnection], maxsize: int) -> None:
        self.new = new
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(maxsize)
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> http.client.HTTPConnection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self.new()

    def put(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                try:
                    self._idle.put_nowait(connection)
                    return
                except queue.Full:
                    pass
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            while True:
                try:
                    self._idle.get_nowait().close()
                except queue.Empty:
                    return


def _open(factory: type[http.client.HTTPConnection], address: tuple[str, int],
          options: dict[str, Any],
          tunnel: tuple[str, int, dict[str, str]] | None) -> http.client.HTTPConnection:
    """A new connection, not yet connected (``_post`` connects it)."""
    connection = factory(*address, **options)
    if tunnel is not None:
        connection.set_tunnel(*tunnel)
    return connection


def _tls_context(verify: bool | str, cert: str | tuple[str, str] | None) -> ssl.SSLContext:
    """The SSLContext urllib3 would build for ``requests`` with these options."""
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE)
    try:
        if verify:
            location = DEFAULT_CA_BUNDLE_PATH if verify is True else verify
            if os.path.isdir(location):
                context.load_verify_locations(capath=location)
            else:
                context.load_verify_locations(cafile=location)
        if cert:
            certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
            context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"cannot load the TLS files for OPA (verify={verify!r}, "
                         f"cert={cert!r}): {error}") from None
    return context


def _basic(user: str, password: str) -> str:
    """An ``Authorization``/``Proxy-Authorization`` Basic value, as ``requests`` encodes it."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode("latin-1")).decode("ascii")


def _error_message(content: bytes) -> str:
    """OPA's error text from an error body ``{"code", "message", "errors": [...]}``."""
    try:
        body = json.loads(content)
    except ValueError:
        return _excerpt(content) if content else "(empty body)"
    if type(body) is not dict or type(body.get("message", body.get("error"))) is not str:
        return _excerpt(content)
    message = body.get("message", body.get("error"))
    details = []
    for item in body.get("errors") or ():
        if type(item) is not dict:
            continue
        text = f"{item.get('code', 'error')}: {item.get('message', '')}"
        location = item.get("location")
        if type(location) is dict and location.get("file"):
            text = f"{location['file']}:{location.get('row', 0)}: {text}"
        if text not in message:
            details.append(text)
    return "; ".join([message, *details])


def _excerpt(content: bytes) -> str:
    text = content.decode("utf-8", errors="replace")
    return repr(text[:_EXCERPT]) + ("..." if len(text) > _EXCERPT else "")
