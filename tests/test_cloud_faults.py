"""OpenAI-compatible backend: faults injected with httpx.MockTransport; every case counts requests sent."""

import httpx
import pytest

from edgeroute import (
    CloudAuthError,
    CloudHTTPError,
    CloudResponseError,
    CloudTimeoutError,
    CloudUnreachableError,
    OpenAICompatBackend,
    Router,
)
from edgeroute.testing import MockLocalModel

MSGS = [{"role": "user", "content": "hi"}]
OK_BODY = {
    "model": "m",
    "choices": [{"message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


def backend(handler, **kw):
    sent = []

    def counting(request):
        sent.append(request)
        return handler(request)

    return OpenAICompatBackend("http://cloud.test/v1", "m", transport=httpx.MockTransport(counting), **kw), sent


def raise_(exc):
    def handler(request):
        raise exc("injected", request=request)

    return handler


@pytest.mark.parametrize(
    "handler, error",
    [
        (lambda r: httpx.Response(401, json={"error": {"message": "bad key"}}), CloudAuthError),
        (lambda r: httpx.Response(403, json={"error": "forbidden"}), CloudAuthError),
        (lambda r: httpx.Response(500, text="boom"), CloudHTTPError),
        (lambda r: httpx.Response(429, headers={"Retry-After": "1"}), CloudHTTPError),
        (lambda r: httpx.Response(400, json={"error": {"message": "context length exceeded"}}), CloudHTTPError),
        (lambda r: httpx.Response(200, text="<html>captive portal</html>"), CloudResponseError),
        (lambda r: httpx.Response(200, json={"id": "x"}), CloudResponseError),
        (lambda r: httpx.Response(200, json={"choices": []}), CloudResponseError),
        (lambda r: httpx.Response(200, json={"choices": [{"message": {"content": None}}]}), CloudResponseError),
        (raise_(httpx.ConnectError), CloudUnreachableError),
        (raise_(httpx.ConnectTimeout), CloudTimeoutError),
        (raise_(httpx.ReadTimeout), CloudTimeoutError),
        (raise_(httpx.RemoteProtocolError), CloudUnreachableError),
    ],
)
def test_each_fault_is_a_typed_error_after_exactly_one_request(handler, error):
    b, sent = backend(handler)
    with pytest.raises(error):
        b.complete(MSGS, max_tokens=8)
    assert len(sent) == 1


def test_status_code_is_kept_and_detail_is_readable():
    b, _ = backend(lambda r: httpx.Response(400, json={"error": {"message": "context length exceeded"}}))
    with pytest.raises(CloudHTTPError) as err:
        b.complete(MSGS, max_tokens=8)
    assert err.value.status_code == 400 and "context length exceeded" in str(err.value)


def test_success_parses_text_usage_and_sends_the_key_only_in_the_header(monkeypatch):
    monkeypatch.setenv("EDGEROUTE_CLOUD_API_KEY", "sk-secret-123")
    b, sent = backend(lambda r: httpx.Response(200, json=OK_BODY))
    ans = b.complete(MSGS, max_tokens=8)
    assert (ans.text, ans.prompt_tokens, ans.completion_tokens) == ("hello", 3, 1)
    assert sent[0].headers["authorization"] == "Bearer sk-secret-123"
    assert b"sk-secret" not in sent[0].content
    assert "sk-secret" not in repr(b)


def test_router_degrades_on_a_malformed_200_and_says_why(tmp_path):
    b, sent = backend(lambda r: httpx.Response(200, text="not json"))
    local = MockLocalModel()
    local.enqueue("maybe this", logprobs=[-5.0, -5.0])
    router = Router(local_model=local, cloud=b, trace_path=str(tmp_path / "t.db"))
    a = router.ask("question?")
    assert a.route == "local-offline" and "CloudResponseError" in a.reason and len(sent) == 1
    row = router.store.get(a.id)
    assert "sk-" not in str(row) and row["error"].startswith("CloudResponseError")
