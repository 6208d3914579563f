"""The Anthropic Messages API provider: request shape, key handling, typed faults (request counts)."""

from __future__ import annotations

import json

import httpx
import pytest

from edgeroute import CloudAuthError, CloudHTTPError, CloudResponseError, Router
from edgeroute.cloud.anthropic import AnthropicBackend
from edgeroute.cloud.retry import RetryingBackend
from edgeroute.testing import MockLocalModel

OK = {"content": [{"type": "text", "text": "Paris"}, {"type": "text", "text": "."}], "model": "claude-x",
      "usage": {"input_tokens": 12, "output_tokens": 2}, "stop_reason": "end_turn"}


def backend(handler, **kw):
    sent = []

    def counting(request):
        sent.append(request)
        return handler(request)

    return AnthropicBackend("claude-x", base_url="http://anthropic.test", transport=httpx.MockTransport(counting),
                            **kw), sent


def test_request_shape_system_field_and_key_header(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    b, sent = backend(lambda r: httpx.Response(200, json=OK))
    answer = b.complete([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"}],
                        max_tokens=16)
    assert answer.text == "Paris." and answer.prompt_tokens == 12 and answer.completion_tokens == 2
    req = sent[0]
    body = json.loads(req.content)
    assert req.url.path == "/v1/messages" and body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "Capital?"}] and body["max_tokens"] == 16
    assert req.headers["x-api-key"] == "sk-ant-secret" and req.headers["anthropic-version"] == "2023-06-01"
    assert "secret" not in repr(b)


@pytest.mark.parametrize(("response", "error"), [
    (httpx.Response(401, json={"type": "error", "error": {"type": "authentication_error", "message": "bad key"}}),
     CloudAuthError),
    (httpx.Response(529, json={"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
     CloudHTTPError),
    (httpx.Response(200, json={"content": []}), CloudResponseError),
    (httpx.Response(200, text="<html>portal</html>"), CloudResponseError),
])
def test_faults_are_typed_after_one_request(response, error):
    b, sent = backend(lambda r: response)
    with pytest.raises(error):
        b.complete([{"role": "user", "content": "hi"}], max_tokens=4)
    assert len(sent) == 1


def test_overloaded_529_is_retried_by_the_retry_loop():
    replies = [httpx.Response(529, json={"error": {"message": "busy"}}), httpx.Response(200, json=OK)]
    b, sent = backend(lambda r: replies.pop(0))
    retrying = RetryingBackend(b, sleep=lambda s: None)
    assert retrying.complete([{"role": "user", "content": "hi"}], max_tokens=4).text == "Paris." and len(sent) == 2


def test_router_with_the_anthropic_provider_from_config(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    router = Router(local_model=MockLocalModel(), trace=False, cloud_provider="anthropic",
                    cloud_url="https://api.anthropic.com", cloud_model="claude-x", cloud_api_key_env="ANTHROPIC_API_KEY")
    inner = router.cloud.inner.inner  # breaker -> retry loop -> provider
    assert isinstance(inner, AnthropicBackend) and inner.model == "claude-x"
    router.close()
