"""The one retry loop (RELIABILITY rows 15-19, 21, 22, 24): behaviour and the number of requests sent."""

from __future__ import annotations

import random
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from edgeroute import CloudAuthError, CloudHTTPError, CloudResponseError, CloudTimeoutError, OpenAICompatBackend
from edgeroute.cloud.retry import RetryingBackend, backoff_s, parse_retry_after, should_retry
from edgeroute.testing import MockLocalModel
from test_cloud_faults import MSGS, OK_BODY


class FakeTime:
    """A clock that only moves when the retry loop sleeps."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def clock(self) -> float:
        return self.now


def scripted(*responses, **kw):
    """A RetryingBackend over the real OpenAI-compatible client whose transport plays ``responses`` in order."""
    sent = []
    queue = list(responses)

    def handler(request):
        sent.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, type) and issubclass(item, Exception):
            raise item("injected", request=request)
        return item

    t = FakeTime()
    inner = OpenAICompatBackend("http://cloud.test/v1", "m", transport=httpx.MockTransport(handler))
    return RetryingBackend(inner, sleep=t.sleep, clock=t.clock, rng=random.Random(0), **kw), sent, t


def ok():
    return httpx.Response(200, json=OK_BODY)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"Retry-After-Ms": "250"}, 0.25),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After-Ms": "x", "Retry-After": "2"}, 2.0),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers, expected):
    assert parse_retry_after(headers) == expected


def test_retry_after_as_an_http_date():
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
    header = {"Retry-After": format_datetime(now + timedelta(seconds=7), usegmt=True)}
    assert parse_retry_after(header, now=now.timestamp()) == pytest.approx(7.0)
    assert parse_retry_after({"Retry-After": format_datetime(now - timedelta(seconds=7), usegmt=True)},
                             now=now.timestamp()) == 0.0


@pytest.mark.parametrize(("status", "retry"), [(408, True), (409, True), (429, True), (500, True), (503, True),
                                               (400, False), (404, False), (422, False)])
def test_should_retry_by_status(status, retry):
    assert should_retry(CloudHTTPError("x", status_code=status)) is retry


def test_backoff_is_full_jitter_and_capped():
    rng = random.Random(1)
    draws = [backoff_s(a, rng) for a in range(10) for _ in range(50)]
    assert min(draws) >= 0.0 and max(draws) <= 8.0
    assert max(backoff_s(0, rng) for _ in range(100)) <= 0.5


def test_5xx_then_success_retries_with_backoff():
    cloud, sent, t = scripted(httpx.Response(503), httpx.Response(502), ok())
    assert cloud.complete(MSGS, max_tokens=8).text == "hello"
    assert len(sent) == 3 and len(t.sleeps) == 2 and all(0 <= s <= 1.0 for s in t.sleeps)


def test_429_retry_after_inside_the_budget_is_honoured():
    cloud, sent, t = scripted(httpx.Response(429, headers={"Retry-After": "2"}), ok())
    assert cloud.complete(MSGS, max_tokens=8).text == "hello"
    assert len(sent) == 2 and t.sleeps == [2.0]


def test_429_beyond_the_deadline_is_not_retried():
    cloud, sent, t = scripted(httpx.Response(429, headers={"Retry-After": "3600"}), ok(), deadline_s=30)
    with pytest.raises(CloudHTTPError, match="would pass the 30 s deadline") as info:
        cloud.complete(MSGS, max_tokens=8)
    assert info.value.status_code == 429 and len(sent) == 1 and t.sleeps == []


def test_retries_are_bounded_by_max_retries():
    cloud, sent, _ = scripted(httpx.Response(500), max_retries=2)
    with pytest.raises(CloudHTTPError):
        cloud.complete(MSGS, max_tokens=8)
    assert len(sent) == 3  # 1 + max_retries


def test_timeouts_are_retried_once_if_the_deadline_allows():
    cloud, sent, _ = scripted(httpx.ReadTimeout, ok(), max_retries=1)
    assert cloud.complete(MSGS, max_tokens=8).text == "hello" and len(sent) == 2


@pytest.mark.parametrize("response", [httpx.Response(400, json={"error": {"message": "context length exceeded"}}),
                                      httpx.Response(422, text="bad"), httpx.Response(200, json={"id": "x"})])
def test_client_errors_and_malformed_200s_are_not_retried(response):
    cloud, sent, t = scripted(response)
    with pytest.raises((CloudHTTPError, CloudResponseError)):
        cloud.complete(MSGS, max_tokens=8)
    assert len(sent) == 1 and t.sleeps == []


def test_auth_failure_disables_the_backend_without_further_requests():
    cloud, sent, _ = scripted(httpx.Response(401, json={"error": {"message": "bad key"}}), ok())
    with pytest.raises(CloudAuthError):
        cloud.complete(MSGS, max_tokens=8)
    with pytest.raises(CloudAuthError, match="disabled until its configuration changes"):
        cloud.complete(MSGS, max_tokens=8)
    assert len(sent) == 1


def test_router_degrades_to_local_after_exhausted_retries_and_counts_requests():
    from edgeroute import Router

    cloud, sent, _ = scripted(httpx.Response(503), max_retries=2)
    local = MockLocalModel()
    local.enqueue("maybe Lyon", logprobs=[-3.0, -3.0])
    a = Router(local_model=local, cloud=cloud, trace=False).ask("What is the capital of France?")
    assert a.route == "local-offline" and "offline" in a.flags and "503" in a.reason and len(sent) == 3


def test_a_per_request_timeout_reaches_the_http_request():
    seen = []

    def handler(request):
        seen.append(request.extensions["timeout"])
        return ok()

    backend = OpenAICompatBackend("http://cloud.test/v1", "m", transport=httpx.MockTransport(handler),
                                  connect_timeout_s=3.0, read_timeout_s=60.0)
    backend.complete(MSGS, max_tokens=4, timeout_s=1.5)
    backend.complete(MSGS, max_tokens=4)
    assert seen[0]["read"] == 1.5 and seen[0]["connect"] == 1.5
    assert seen[1]["read"] == 60.0 and seen[1]["connect"] == 3.0


def test_a_remote_cloud_without_an_api_key_is_disabled_up_front(monkeypatch):
    """RELIABILITY row 32: no key for a remote endpoint -> cloud disabled, local only, the reason in the answer."""
    from edgeroute import Router

    monkeypatch.delenv("EDGEROUTE_CLOUD_API_KEY", raising=False)
    local = MockLocalModel()
    local.enqueue("maybe Lyon", logprobs=[-3.0, -3.0])
    router = Router(local_model=local, trace=False, cloud_url="https://api.example.com/v1")
    assert router.cloud is None
    a = router.ask("What is the capital of France?")
    assert a.route == "local-offline" and "no API key in $EDGEROUTE_CLOUD_API_KEY" in a.reason
    # a server on this machine needs no key
    assert Router(local_model=local, trace=False, cloud_url="http://127.0.0.1:8080/v1").cloud is not None


def test_strict_mode_raises_instead_of_degrading(monkeypatch):
    from edgeroute import ConfigError, Router

    cloud, sent, _ = scripted(httpx.Response(401, json={"error": {"message": "bad key"}}))
    local = MockLocalModel()
    local.enqueue("maybe Lyon", logprobs=[-3.0, -3.0])
    with pytest.raises(CloudAuthError):
        Router(local_model=local, cloud=cloud, trace=False, cloud_required=True).ask("Capital of France?")
    assert len(sent) == 1
    monkeypatch.delenv("EDGEROUTE_CLOUD_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="cloud_required is set but there is no API key"):
        Router(local_model=local, trace=False, cloud_url="https://api.example.com/v1", cloud_required=True)
