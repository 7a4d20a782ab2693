"""The stand-in answers as Mistral's API does, including the refusals a broken dispatcher
would meet there."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from mistralai.client import errors

from tests.mistral.conftest import MODEL, SELECT, call, calls, say
from veto_opa.mistral.standin import MistralStandin, ScriptedReply, new_call_id


def post(standin: MistralStandin, path: str, body: Any, **headers: str) -> httpx2.Response:
    with httpx2.Client() as client:
        return client.post(standin.url + path, content=json.dumps(body),
                           headers={"Authorization": "Bearer k", **headers})


def test_call_ids_look_like_mistrals() -> None:
    ids = {new_call_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 9 and i.isalnum() for i in ids)


def test_no_bearer_token_is_401(serve) -> None:
    standin, _ = serve([say("x")])
    with httpx2.Client() as client:
        response = client.post(standin.url + "/v1/chat/completions", json={"messages": []})
    assert response.status_code == 401 and response.json()["type"] == "authentication_error"
    assert standin.requests == []


def test_unanswered_tool_calls_are_400_as_on_mistral(serve) -> None:
    standin, client = serve([calls(call("execute_sql", SELECT)), say("never")])
    message = client.chat.complete(model=MODEL, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(errors.SDKError) as raised:
        client.chat.complete(model=MODEL, messages=[{"role": "user", "content": "x"},
                                                    message.choices[0].message])
    assert raised.value.status_code == 400
    assert "Not the same number of function calls and responses" in raised.value.body


def test_tool_answers_must_name_the_calls(serve) -> None:
    standin, client = serve([calls(call("execute_sql", SELECT, id="abcdEFGH1"))])
    message = client.chat.complete(model=MODEL, messages=[{"role": "user", "content": "x"}])
    wrong = {"role": "tool", "tool_call_id": "zzzzZZZZ9", "name": "execute_sql",
             "content": "ok"}
    with pytest.raises(errors.SDKError, match="do not answer the tool calls' ids"):
        client.chat.complete(model=MODEL, messages=[{"role": "user", "content": "x"},
                                                    message.choices[0].message, wrong])


def test_stream_is_server_sent_events_ending_with_done(serve) -> None:
    standin, _ = serve([ScriptedReply(content="a b", calls=(call("execute_sql", SELECT),))],
                       split_arguments=2)
    response = post(standin, "/v1/chat/completions",
                    {"model": MODEL, "stream": True,
                     "messages": [{"role": "user", "content": "x"}]})
    assert response.headers["content-type"] == "text/event-stream"
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    pieces = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
              if "tool_calls" in c["choices"][0]["delta"]]
    assert len(pieces) == 2 and len({p["id"] for p in pieces}) == 1
    assert all(p["function"]["name"] == "execute_sql" for p in pieces)
    assert json.loads("".join(p["function"]["arguments"] for p in pieces)) == SELECT
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens"] == 100


def test_unknown_conversation_and_route(serve) -> None:
    standin, _ = serve([])
    assert post(standin, "/v1/conversations/conv_nope", {"inputs": "x"}).status_code == 404
    assert post(standin, "/v1/models", {}).status_code == 404
    with pytest.raises(ValueError):
        MistralStandin(lambda r: say("x"), split_arguments=0)
