"""Circuit breaker and offline detection (RELIABILITY rows 13, 14, 17, 26): hysteresis, probes, requests sent."""

from __future__ import annotations

import threading

import pytest

from edgeroute import CloudAuthError, CloudHTTPError, CloudResponseError, CloudUnreachableError, Router
from edgeroute.cloud.breaker import CircuitBreaker
from edgeroute.testing import MockCloud, MockLocalModel

MSGS = [{"role": "user", "content": "hi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(**kw):
    cloud, clock = MockCloud(), Clock()
    return CircuitBreaker(cloud, clock=clock, failures=3, cooldown_s=10, probe_timeout_s=1.5, **kw), cloud, clock


def fail(b, cloud, error):
    cloud.enqueue(error)
    with pytest.raises(type(error)):
        b.complete(MSGS, max_tokens=4)


def test_opens_after_consecutive_failures_then_fails_fast_without_requests():
    b, cloud, _ = breaker()
    for _ in range(3):
        fail(b, cloud, CloudUnreachableError("dns"))
    assert b.state == "open" and len(cloud.requests) == 3
    with pytest.raises(CloudUnreachableError, match="treated as offline after 3 failures"):
        b.complete(MSGS, max_tokens=4)
    assert len(cloud.requests) == 3  # no request while open


def test_half_open_probe_uses_its_own_timeout_and_closes_on_success():
    b, cloud, clock = breaker()
    for _ in range(3):
        fail(b, cloud, CloudUnreachableError("refused"))
    clock.now = 10.0
    assert b.state == "half-open"
    assert b.complete(MSGS, max_tokens=4).text == "cloud answer"
    assert cloud.timeouts[-1] == 1.5 and b.state == "closed"
    b.complete(MSGS, max_tokens=4)
    assert cloud.timeouts[-1] is None  # normal requests: the backend's own timeouts


def test_failed_probe_reopens_with_a_doubled_cooldown():
    b, cloud, clock = breaker()
    for _ in range(3):
        fail(b, cloud, CloudUnreachableError("refused"))
    clock.now = 10.0
    fail(b, cloud, CloudResponseError("<html>captive portal</html>"))  # captive portal: still offline
    clock.now = 25.0  # 15 s after the probe: the cooldown is now 20 s
    with pytest.raises(CloudUnreachableError, match="next probe in 5 s"):
        b.complete(MSGS, max_tokens=4)
    clock.now = 30.0
    assert b.complete(MSGS, max_tokens=4).text == "cloud answer" and b.state == "closed"


def test_a_success_resets_the_count_so_the_route_does_not_flap():
    b, cloud, _ = breaker()
    for _ in range(5):
        fail(b, cloud, CloudUnreachableError("blip"))
        fail(b, cloud, CloudUnreachableError("blip"))
        b.complete(MSGS, max_tokens=4)
    assert b.state == "closed"


@pytest.mark.parametrize("error", [CloudHTTPError("bad request", status_code=400),
                                   CloudHTTPError("unprocessable", status_code=422),
                                   CloudAuthError("bad key", status_code=401)])
def test_client_errors_do_not_trip_the_breaker(error):
    b, cloud, _ = breaker()
    for _ in range(5):
        fail(b, cloud, error)
    assert b.state == "closed" and len(cloud.requests) == 5


def test_only_one_probe_at_a_time():
    b, _, clock = breaker()

    class Slow(MockCloud):
        def __init__(self) -> None:
            super().__init__()
            self.entered, self.release = threading.Event(), threading.Event()

        def complete(self, messages, *, max_tokens, temperature=0.0, timeout_s=None):
            self.entered.set()
            self.release.wait(5)
            return super().complete(messages, max_tokens=max_tokens, temperature=temperature, timeout_s=timeout_s)

    slow = Slow()
    b.inner = slow
    for _ in range(3):
        slow.enqueue(CloudUnreachableError("down"))
    slow.release.set()
    for _ in range(3):
        with pytest.raises(CloudUnreachableError):
            b.complete(MSGS, max_tokens=4)
    slow.release.clear()
    clock.now = 10.0
    result = {}
    probe = threading.Thread(target=lambda: result.setdefault("a", b.complete(MSGS, max_tokens=4)))
    probe.start()
    assert slow.entered.wait(5)
    with pytest.raises(CloudUnreachableError, match="a probe is in flight"):
        b.complete(MSGS, max_tokens=4)
    slow.release.set()
    probe.join(5)
    assert result["a"].text == "cloud answer" and b.state == "closed" and len(slow.requests) == 4


def test_router_answers_locally_flagged_offline_while_the_circuit_is_open():
    b, cloud, _ = breaker()
    for _ in range(3):
        fail(b, cloud, CloudUnreachableError("no route to host"))
    local = MockLocalModel()
    local.enqueue("maybe Lyon", logprobs=[-3.0, -3.0])
    a = Router(local_model=local, cloud=b, trace=False).ask("What is the capital of France?")
    assert a.route == "local-offline" and "offline" in a.flags and "treated as offline" in a.reason
    assert len(cloud.requests) == 3
