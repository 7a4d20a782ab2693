"""The REST engine: asks an OPA server that holds the veto bundle, over OPA's Data API.

    from veto_opa.engines import RestEngine

    engine = RestEngine("http://localhost:8181", timeout=0.5)
    answer = engine.decide(input_text)   # POST /v1/data/veto/decision {"input": <input_text>}
    answer.opa_decision_id               # OPA's decision_id when decision logging is on
    engine.health()                      # GET /health?bundles: up, bundles activated

HTTP goes through one ``httpx.HTTPTransport`` per engine (httpx's public transport API, below
the client layer, which adds nothing here): a thread-safe pool of kept-alive connections, TLS
from an ``ssl.SSLContext`` built once (``verify``: True for httpx's CA bundle, a CA file or
directory, or False; ``cert`` for mutual TLS), the bearer token as a default header (without
one, ``.netrc`` credentials for OPA's host), and the environment's proxy for OPA
(``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, read once; ``https`` goes through a
``CONNECT`` tunnel). The input is never serialised here: the guard hands the compact JSON
text of the OPA input, and the body is that text spliced into ``{"input":...}``.

A request that OPA closed without answering (OPA restarted, an idle timeout of OPA or of a
proxy closed the kept-alive connection as it was reused) is sent once more: nothing was
answered, and a Data API query only reads. Nothing else is retried, timeouts included.

Every failure raises an :class:`~veto_opa.errors.EngineError` whose message names the cause;
the guard turns it into a deny: EngineUnavailable (refused, DNS, TLS, connection dropped),
EngineTimeout (no connection or no answer within ``timeout``), EngineProtocolError (non-200
with OPA's message, a body that is not a JSON object, a result that is not a decision, an
answer that is not HTTP, a request that cannot be built), PolicyNotLoaded (200 without
``result``: undefined, never false and never allow).
"""

from __future__ import annotations

import base64
import json
import netrc
import os
import socket
import ssl
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from opentelemetry import propagate

from veto_opa import __version__
from veto_opa.decision import Verdict
from veto_opa.engines.base import EngineAnswer
from veto_opa.errors import (
    EngineError,
    EngineProtocolError,
    EngineTimeout,
    EngineUnavailable,
    PolicyNotLoaded,
    VetoError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from veto_opa.translators.bundle import Bundle

_EXCERPT = 80
_NO_ANSWER = "Server disconnected without sending a response"   # h11's words, via httpcore
_KEEPALIVE = 60.0   # seconds an idle connection is kept (httpx's default is 5)
_CUT_SHORT = "peer closed connection without sending complete message body"


class RestEngine:
    """Decides by POSTing the input to an OPA server's Data API.

    Args:
        url: OPA's base URL, e.g. ``http://localhost:8181`` (``https`` for TLS); it may carry
            a path prefix (an OPA behind a gateway).
        timeout: seconds to wait for the connection, for each read of the answer and for a
            free connection of the pool.
        token: sent as ``Authorization: Bearer <token>`` (OPA's ``--authentication=token``).
        verify: TLS verification: True (httpx's CA bundle, or ``SSL_CERT_FILE``), False, or
            the path of a CA bundle file or directory.
        cert: client certificate for mutual TLS: a PEM path (certificate and key) or a
            ``(cert, key)`` pair.
        path: the document to query, ``/``-separated under ``/v1/data/``.
        pool_maxsize: keep-alive connections kept for concurrent callers (at least 1).

    Raises:
        ValueError: the URL is not an absolute http(s) URL, ``pool_maxsize`` is below 1, or
            the TLS files cannot be loaded.
    """

    name = "rest"

    def __init__(self, url: str, *, timeout: float = 1.0, token: str | None = None,
                 verify: bool | str = True, cert: str | tuple[str, str] | None = None,
                 path: str = "veto/decision", pool_maxsize: int = 10) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL of OPA such as http://localhost:8181, "
                             f"found {url!r}")
        if pool_maxsize < 1:
            raise ValueError(f"pool_maxsize must be at least 1, found {pool_maxsize}")
        self.url = url.rstrip("/")
        self.path = path.strip("/")
        self.endpoint = f"{self.url}/v1/data/{self.path}"
        self.timeout = timeout
        self._document = "data." + self.path.replace("/", ".") if self.path else "data"
        headers = {"User-Agent": f"veto-opa/{__version__}", "Accept": "application/json",
                   "Accept-Encoding": "identity", "Content-Type": "application/json"}
        credentials = f"Bearer {token}" if token else _netrc_basic(parts.hostname)
        if credentials:
            headers["Authorization"] = credentials
        self._headers = headers
        self._names = {name.lower(): name for name in headers}
        self._url = httpx.URL(self.endpoint)
        self._health_url = httpx.URL(f"{self.url}/health?bundles")
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
        proxy = _environment_proxy(self.url)
        try:
            self._transport = httpx.HTTPTransport(
                verify=tls_context(verify, cert, what="OPA"), proxy=proxy, trust_env=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=pool_maxsize,
                                    keepalive_expiry=_KEEPALIVE))
        except (ImportError, ValueError) as error:   # e.g. a socks:// proxy without socksio
            raise ValueError(f"the proxy {proxy!r} for OPA at {self.url} cannot be used: "
                             f"{str(error).rstrip('.')}; exclude OPA with NO_PROXY") from None
        self._closed = False

    def decide(self, input: Mapping[str, Any], *,
               headers: Mapping[str, str] | None = None) -> EngineAnswer:
        """POST ``{"input": input}`` to ``/v1/data/<path>`` and check the answer.

        Args:
            input: the OPA input document, sent as compact JSON.
            headers: extra request headers, typically ``traceparent``/``tracestate`` of the
                caller's span; they replace default headers of the same name. When None, the
                current OpenTelemetry context is injected with the global propagator
                (nothing is added when there is no active span).

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
            body = json.dumps({"input": input}, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as error:   # UnicodeEncodeError is a ValueError
            raise EngineProtocolError(f"the input cannot be sent to OPA as JSON: {error}") from None
        status, content = self._send("POST", self._url, body, request_headers)
        return self._answer(status, content)

    def health(self) -> bool:
        """Whether OPA answers ``GET /health?bundles`` with 200: up, bundles activated.

        Any failure, a timeout included, is False.
        """
        try:
            return self._send("GET", self._health_url, b"", self._headers)[0] == 200
        except EngineError:
            return False

    def reload(self, bundle: Bundle) -> None:
        """An OPA server loads its bundles itself (``opa run --bundle``, a bundle service).

        Raises:
            VetoError: always.
        """
        raise VetoError(f"the OPA server at {self.url} loads its own bundles; reload there")

    def document(self, path: str) -> Any:
        """GET ``/v1/data/<path>``: a document of the bundle OPA holds (``veto/facts``), or
        None when it is undefined. On the engine's kept-alive connections, as :meth:`decide`.

        Raises:
            EngineUnavailable: OPA cannot be reached (or did not answer in time).
            EngineProtocolError: OPA answered other than 200 with a JSON object.
        """
        url = httpx.URL(f"{self.url}/v1/data/{path.strip('/')}")
        status, content = self._send("GET", url, b"", self._headers)
        if status != 200:
            raise EngineProtocolError(f"OPA answered HTTP {status} for {path}: "
                                      f"{error_message(content)}")
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        if type(body) is not dict:
            raise EngineProtocolError(f"OPA's answer for {path} is not a JSON object: "
                                      f"{_excerpt(content)}")
        return body.get("result")

    def close(self) -> None:
        """Close the keep-alive connections; ``decide`` raises EngineUnavailable afterwards."""
        self._closed = True
        self._transport.close()

    def __enter__(self) -> RestEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, url: httpx.URL, body: bytes,
              headers: Mapping[str, str]) -> tuple[int, bytes]:
        """Send one request on a pooled connection; status and body of the answer.

        Straight to the transport: the client layer (cookies, auth flows, redirects, event
        hooks) has nothing to do here and costs about a tenth of a call.
        """
        if self._closed:
            raise EngineUnavailable("the REST engine is closed")
        for attempt in (1, 2):
            try:
                request = httpx.Request(method, url, content=body, headers=headers,
                                        extensions=self._extensions)
                response = self._transport.handle_request(request)
                try:
                    return response.status_code, response.read()
                finally:
                    response.close()
            except httpx.RemoteProtocolError as error:
                if str(error).startswith(_NO_ANSWER) and attempt == 1:
                    continue   # closed before any answer: once more, on a new connection
                raise self._failure(error) from None
            except (httpx.HTTPError, httpx.InvalidURL) as error:
                raise self._failure(error) from None
        raise AssertionError("unreachable")

    def _failure(self, error: Exception) -> EngineError:
        cause = _root(error)
        if isinstance(error, httpx.ConnectTimeout):
            return EngineTimeout(f"OPA at {self.url} did not accept the connection within "
                                 f"{self.timeout:g} s")
        if isinstance(error, httpx.TimeoutException):
            return EngineTimeout(f"OPA did not answer within {self.timeout:g} s")
        if isinstance(cause, ConnectionRefusedError):
            return EngineUnavailable(f"OPA at {self.url} refused the connection")
        if isinstance(cause, socket.gaierror):
            return EngineUnavailable(f"cannot resolve OPA's host in {self.url}: {cause}")
        if isinstance(cause, ssl.SSLError):
            return EngineUnavailable(f"TLS with OPA at {self.url} failed: {cause}")
        if isinstance(error, httpx.ProxyError):
            return EngineUnavailable(f"cannot reach OPA at {self.url} through the proxy: {error}")
        if isinstance(error, httpx.LocalProtocolError | httpx.InvalidURL):
            return EngineProtocolError(f"the request to OPA cannot be built: {error}")
        if isinstance(error, httpx.RemoteProtocolError):
            text = str(error)
            if text.startswith(_NO_ANSWER):
                return EngineUnavailable(
                    f"OPA at {self.url} closed the connection without answering")
            if text.startswith(_CUT_SHORT):
                detail = text.removeprefix(_CUT_SHORT).strip(": ()")
                return EngineUnavailable(f"OPA at {self.url} closed the connection in the "
                                         f"middle of its answer ({detail})")
            return EngineProtocolError(f"OPA's answer is not HTTP/1.1: {text}")
        if isinstance(error, httpx.NetworkError):
            return EngineUnavailable(f"cannot reach OPA at {self.url}: {cause}")
        return EngineUnavailable(f"cannot reach OPA at {self.url}: {error}")

    def _answer(self, status: int, content: bytes) -> EngineAnswer:
        if status != 200:
            raise EngineProtocolError(f"OPA answered HTTP {status}: {error_message(content)}")
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
        return EngineAnswer(Verdict.from_document(body["result"]),
                            decision_id if type(decision_id) is str else None)


def tls_context(verify: bool | str, cert: str | tuple[str, str] | None, *,
                what: str) -> ssl.SSLContext:
    """An SSLContext for httpx: TLS >= 1.2 with host name checks, the CA bundle ``verify``
    names (True: httpx's default, False: none), and ``cert`` for mutual TLS.

    Raises:
        ValueError: a file cannot be loaded (naming ``what`` the context is for).
    """
    try:
        if verify is True:
            context = httpx.create_ssl_context()
        elif verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif os.path.isdir(verify):
            context = ssl.create_default_context(capath=verify)
        else:
            context = ssl.create_default_context(cafile=verify)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert:
            certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
            context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"cannot load the TLS files for {what} (verify={verify!r}, "
                         f"cert={cert!r}): {error}") from None
    return context


def error_message(content: bytes) -> str:
    """OPA's error text from an error body ``{"code", "message", "errors": [...]}``."""
    try:
        body: Any = json.loads(content)
    except ValueError:
        return _excerpt(content) if content else "(empty body)"
    message = body.get("message", body.get("error")) if type(body) is dict else None
    if not isinstance(message, str):
        return _excerpt(content)
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


def _netrc_basic(host: str) -> str | None:
    """A Basic ``Authorization`` value from ``$NETRC`` or ``~/.netrc`` for OPA's host, when
    the file has one (used only without a token)."""
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        found = netrc.netrc(path).authenticators(host) if os.path.isfile(path) else None
    except (OSError, netrc.NetrcParseError):
        return None
    if not found or not found[2]:
        return None
    login, _, password = found
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


def _environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP(S)_PROXY``, ``ALL_PROXY``, minus
    ``NO_PROXY``), read once, as the standard library reads it."""
    scheme, host = urlsplit(url).scheme, urlsplit(url).hostname or ""
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass(host):
        return None
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy and "://" not in proxy:
        proxy = "http://" + proxy
    return proxy or None


def _root(error: BaseException) -> BaseException:
    """The innermost exception httpx and httpcore wrapped (the socket's or ssl's own)."""
    seen = {id(error)}
    while (inner := error.__cause__ or error.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    return error


def _excerpt(content: bytes) -> str:
    text = content.decode("utf-8", errors="replace")
    return repr(text[:_EXCERPT]) + ("..." if len(text) > _EXCERPT else "")
