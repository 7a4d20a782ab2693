"""A scripted stand-in for Mistral's API on loopback, for the demo and the tests.

It is **not a model**: a script decides every reply. It speaks the wire format of the
endpoints the ``mistralai`` SDK calls, so that the real SDK parses every answer:

- ``POST /v1/chat/completions`` and ``POST /v1/agents/completions``: a
  ``chat.completion`` object, or with ``"stream": true`` server-sent events
  (``chat.completion.chunk`` objects, ``data: [DONE]`` last) whose tool-call arguments can
  be split over several chunks (each repeating the call's index, id and name, as the SDK
  requires);
- ``POST /v1/conversations`` (start) and ``POST /v1/conversations/{id}`` (append): a
  ``conversation.response`` with ``message.output`` or ``function.call`` entries.

Like the real API it answers 401 without a bearer token and 400 when an assistant turn's
tool calls are not each answered by one tool message (or function result) — a dispatcher
that drops a refused call's answer fails here as it would against Mistral.

    with MistralStandin(Scripted([ScriptedReply(calls=(ScriptedCall("get_weather",
                                                                   {"city": "Paris"}),)),
                                  ScriptedReply(content="Sunny.")])) as standin:
        client = Mistral(api_key="standin", server_url=standin.url)
"""

from __future__ import annotations

import json
import secrets
import string
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Api = Literal["chat", "agents", "conversations"]

_ID_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    """A tool-call id as Mistral makes them: 9 characters from ``[a-zA-Z0-9]``."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))


@dataclass(frozen=True)
class ScriptedCall:
    """One tool call the scripted model makes.

    Attributes:
        name: the function's name.
        arguments: JSON text (sent as a string, as Mistral does) or an object (sent as a JSON
            object, as some OpenAI-compatible servers do; the SDK then hands out a dict).
        id: the call id; a fresh 9-character id when None.
    """

    name: str
    arguments: str | dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class ScriptedReply:
    """What the scripted model answers: text, tool calls, or both."""

    content: str = ""
    calls: tuple[ScriptedCall, ...] = ()


@dataclass(frozen=True)
class ModelRequest:
    """One request, as the script sees it.

    Attributes:
        api: ``chat``, ``agents`` or ``conversations``.
        body: the JSON object the SDK sent.
        messages: the conversation so far as chat messages (for the Conversations API, its
            entries translated: ``message.input`` → user, ``function.call`` → an assistant
            message with ``tool_calls``, ``function.result`` → a tool message).
    """

    api: Api
    body: dict[str, Any]
    messages: list[dict[str, Any]]

    @property
    def turn(self) -> int:
        """How many assistant turns came before this request (0 for the first)."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    def tool_results(self) -> list[dict[str, Any]]:
        """The tool messages answering the latest assistant turn, in order."""
        results: list[dict[str, Any]] = []
        for message in reversed(self.messages):
            if message.get("role") != "tool":
                break
            results.insert(0, message)
        return results


Script = Callable[[ModelRequest], ScriptedReply]


class Scripted:
    """A script that gives its replies in order, one per request; past the end it fails the
    request (HTTP 500), which makes a loop that asks the model too often visible."""

    def __init__(self, replies: Sequence[ScriptedReply]) -> None:
        self._replies = list(replies)
        self._next = 0
        self._lock = threading.Lock()

    def __call__(self, request: ModelRequest) -> ScriptedReply:
        with self._lock:
            if self._next >= len(self._replies):
                raise RuntimeError(f"the script has no reply {self._next + 1} "
                                   f"(it has {len(self._replies)})")
            self._next += 1
            return self._replies[self._next - 1]


class ApiError(Exception):
    """A request the real API would refuse: answered with this status and message."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass
class _Conversation:
    entries: list[dict[str, Any]] = field(default_factory=list)
    start: dict[str, Any] = field(default_factory=dict)


class MistralStandin:
    """The stand-in server on ``127.0.0.1`` (a free port), in a background thread.

    Args:
        script: decides each reply.
        model: the model name the responses carry when the request names none (agents).
        split_arguments: in streamed answers, each call's arguments text is sent in this many
            chunks.
        chunk_delay: seconds between streamed chunks (0: as fast as possible).

    Attributes:
        url: the base URL to give ``Mistral(server_url=...)``.
        requests: every request received, as ``(path, body)``, in order.
    """

    def __init__(self, script: Script, *, model: str = "mistral-large-latest",
                 split_arguments: int = 1, chunk_delay: float = 0.0) -> None:
        if split_arguments < 1:
            raise ValueError(f"split_arguments must be at least 1, found {split_arguments}")
        self.script = script
        self.model = model
        self.split_arguments = split_arguments
        self.chunk_delay = chunk_delay
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._conversations: dict[str, _Conversation] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="mistral-standin", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def close(self) -> None:
        """Stop serving and release the port. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
            self._server.server_close()

    def __enter__(self) -> MistralStandin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the endpoints ----------------------------------------------------------------------

    def handle(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any] | None,
                                                               list[dict[str, Any]] | None]:
        """The JSON answer, or the stream's chunks, for one authenticated request.

        Raises:
            ApiError: what the real API would refuse.
        """
        with self._lock:
            self.requests.append((path, body))
        if path in ("/v1/chat/completions", "/v1/agents/completions"):
            api: Api = "chat" if path == "/v1/chat/completions" else "agents"
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise ApiError(422, "messages: a non-empty list is required")
            _check_tool_answers(messages)
            reply = self.script(ModelRequest(api, body, messages))
            model = body.get("model") or self.model
            if body.get("stream"):
                return None, self._chunks(model, reply)
            return self._completion(model, reply), None
        if path == "/v1/conversations":
            return self._start(body), None
        if path.startswith("/v1/conversations/"):
            return self._append(path.removeprefix("/v1/conversations/"), body), None
        raise ApiError(404, f"no route {path}", "not_found")

    def _completion(self, model: str, reply: ScriptedReply) -> dict[str, Any]:
        calls = [{"id": c.id or new_call_id(), "type": "function", "index": i,
                  "function": {"name": c.name, "arguments": c.arguments}}
                 for i, c in enumerate(reply.calls)]
        return {
            "id": f"cmpl-{secrets.token_hex(8)}", "object": "chat.completion", "model": model,
            "created": int(time.time()), "usage": _usage(reply),
            "choices": [{"index": 0, "finish_reason": "tool_calls" if calls else "stop",
                         "message": {"role": "assistant", "content": reply.content,
                                     "tool_calls": calls or None}}],
        }

    def _chunks(self, model: str, reply: ScriptedReply) -> list[dict[str, Any]]:
        completion_id = f"cmpl-{secrets.token_hex(8)}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        chunks = [chunk({"role": "assistant", "content": ""})]
        words = reply.content.split(" ")
        for i, word in enumerate(words if reply.content else []):
            chunks.append(chunk({"content": word if i == 0 else " " + word}))
        for index, call in enumerate(reply.calls):
            call_id = call.id or new_call_id()
            pieces = (_split(call.arguments, self.split_arguments)
                      if isinstance(call.arguments, str) else [call.arguments])
            for piece in pieces:
                # Every delta repeats the call's index, id and name: the SDK's ToolCall model
                # requires a name and arguments in each.
                chunks.append(chunk({"tool_calls": [{
                    "id": call_id, "type": "function", "index": index,
                    "function": {"name": call.name, "arguments": piece}}]}))
        last = chunk({"content": ""}, "tool_calls" if reply.calls else "stop")
        last["usage"] = _usage(reply)
        chunks.append(last)
        return chunks

    def _start(self, body: dict[str, Any]) -> dict[str, Any]:
        conversation_id = f"conv_{secrets.token_hex(8)}"
        conversation = _Conversation(start=body)
        with self._lock:
            self._conversations[conversation_id] = conversation
        return self._converse(conversation_id, conversation, body)

    def _append(self, conversation_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            conversation = self._conversations.get(conversation_id)
        if conversation is None:
            raise ApiError(404, f"conversation {conversation_id} not found", "not_found")
        return self._converse(conversation_id, conversation, body)

    def _converse(self, conversation_id: str, conversation: _Conversation,
                  body: dict[str, Any]) -> dict[str, Any]:
        if body.get("stream"):
            raise ApiError(400, "the stand-in does not stream the Conversations API")
        inputs = body.get("inputs")
        if isinstance(inputs, str):
            inputs = [{"type": "message.input", "role": "user", "content": inputs}]
        if not isinstance(inputs, list):
            raise ApiError(422, "inputs: a string or a list of entries is required")
        if body.get("tool_confirmations"):
            raise ApiError(400, "the stand-in has no server-side tools to confirm")
        entries = [*conversation.entries, *inputs]
        messages = _messages(entries)
        _check_tool_answers(messages)
        request = {**conversation.start, **body}
        reply = self.script(ModelRequest("conversations", request, messages))
        model = conversation.start.get("model") or self.model
        outputs: list[dict[str, Any]] = []
        if reply.content:
            outputs.append({"object": "entry", "type": "message.output", "role": "assistant",
                            "content": reply.content, "model": model,
                            "id": f"msg_{secrets.token_hex(8)}"})
        for call in reply.calls:
            arguments = (call.arguments if isinstance(call.arguments, str)
                         else json.dumps(call.arguments))
            outputs.append({"object": "entry", "type": "function.call",
                            "tool_call_id": call.id or new_call_id(), "name": call.name,
                            "arguments": arguments, "model": model,
                            "id": f"fc_{secrets.token_hex(8)}"})
        with self._lock:
            conversation.entries = [*entries, *outputs]
        return {"object": "conversation.response", "conversation_id": conversation_id,
                "outputs": outputs, "usage": _usage(reply)}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its kept-alive connection is not an error worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler(standin: MistralStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True   # headers and body are written apart

        def do_POST(self) -> None:  # noqa: N802 - the http.server interface
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            try:
                if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                    raise ApiError(401, "Unauthorized", "authentication_error")
                try:
                    body = json.loads(raw)
                except ValueError as e:
                    raise ApiError(400, f"the body is not JSON: {e}") from None
                if not isinstance(body, dict):
                    raise ApiError(400, "the body must be a JSON object")
                answer, chunks = standin.handle(path, body)
            except ApiError as e:
                self._json(e.status, {"object": "error", "message": str(e), "type": e.kind,
                                      "param": None, "code": None})
                return
            except Exception as e:  # noqa: BLE001 - a script's failure is the client's 500
                self._json(500, {"object": "error", "message": f"stand-in script failed: {e}",
                                 "type": "internal_error", "param": None, "code": None})
                return
            if chunks is not None:
                self._stream(chunks)
            else:
                self._json(200, answer)

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, chunks: list[dict[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for event in [*(json.dumps(c) for c in chunks), "[DONE]"]:
                data = f"data: {event}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                if standin.chunk_delay:
                    time.sleep(standin.chunk_delay)
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, format: str, *args: Any) -> None:
            pass   # quiet: the tests and the demo print what matters

    return Handler


def _check_tool_answers(messages: list[dict[str, Any]]) -> None:
    """Refuse a history in which an assistant turn's tool calls are not each answered, as
    Mistral does ("Not the same number of function calls and responses")."""
    for i, message in enumerate(messages):
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if not calls:
            continue
        answers = []
        for later in messages[i + 1:]:
            if later.get("role") != "tool":
                break
            answers.append(later.get("tool_call_id"))
        if len(answers) != len(calls):
            raise ApiError(400, "Not the same number of function calls and responses")
        if sorted(map(str, answers)) != sorted(str(c.get("id")) for c in calls):
            raise ApiError(400, "tool messages do not answer the tool calls' ids")


def _messages(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conversation entries as chat messages (consecutive function calls: one turn)."""
    messages: list[dict[str, Any]] = []
    for entry in entries:
        kind = entry.get("type", "message.input")
        if kind == "function.call":
            call = {"id": entry.get("tool_call_id"), "type": "function",
                    "function": {"name": entry.get("name"),
                                 "arguments": entry.get("arguments")}}
            if messages and messages[-1].get("role") == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function.result":
            messages.append({"role": "tool", "tool_call_id": entry.get("tool_call_id"),
                             "content": entry.get("result")})
        elif kind == "message.output":
            messages.append({"role": "assistant", "content": entry.get("content")})
        else:
            messages.append({"role": entry.get("role", "user"), "content": entry.get("content")})
    return messages


def _split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // parts))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _usage(reply: ScriptedReply) -> dict[str, int]:
    completion = max(1, (len(reply.content) + sum(len(str(c.arguments)) for c in reply.calls))
                     // 4)
    return {"prompt_tokens": 100, "completion_tokens": completion,
            "total_tokens": 100 + completion}
