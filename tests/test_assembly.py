"""Building the parts: capabilities declared by the parts, not type checks; every cloud backend behind the retry
loop and the breaker unless the caller opts out."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Optional

import numpy as np

from edgeroute import CloudHTTPError, Router
from edgeroute.cloud.base import CloudAnswer, CloudBackend
from edgeroute.cloud.breaker import CircuitBreaker
from edgeroute.cloud.retry import RetryingBackend
from edgeroute.local.base import Generation, LocalModel
from edgeroute.testing import MockCloud, MockLocalModel


class PlainCloud(CloudBackend):
    """A third-party backend that knows nothing of retries."""

    name = "plain"

    def __init__(self, failures: int = 0) -> None:
        self.failures, self.requests = failures, 0

    def complete(self, messages, *, max_tokens, temperature=0.0, timeout_s=None) -> CloudAnswer:
        self.requests += 1
        if self.requests <= self.failures:
            raise CloudHTTPError("plain answered 503", status_code=503)
        return CloudAnswer("from the plain cloud", "plain-1", 1, 1, 0.0)


class TinyLocal(LocalModel):
    """A local model with no hidden states, written against the base class alone."""

    name = "tiny"
    n_ctx = 512

    @property
    def fingerprint(self) -> str:
        return "tiny-model"

    def count_prompt_tokens(self, messages: Sequence) -> int:
        return 4

    def stream(self, messages, *, max_tokens, temperature=0.0, cancel=None) -> Generator[str, None, Generation]:
        yield "maybe"
        return Generation("maybe", [1], np.array([-3.0]), np.array([2.0]), 4, 0.0, 0.0, "stop")


def test_a_backend_passed_in_gets_the_retry_loop_and_the_breaker():
    inner = PlainCloud(failures=1)
    router = Router(local_model=MockLocalModel(), cloud=inner, trace=False, threshold=0.99)
    assert isinstance(router.cloud, CircuitBreaker) and isinstance(router.cloud.inner, RetryingBackend)
    assert router.cloud.inner.inner is inner
    a = router.ask("Capital of France?")
    assert a.route == "cloud" and a.text == "from the plain cloud" and inner.requests == 2  # one retry
    assert router.cloud.reachable


def test_opting_out_calls_the_backend_as_it_is_and_wrapped_ones_are_not_wrapped_twice():
    inner = PlainCloud(failures=1)
    router = Router(local_model=MockLocalModel(), cloud=inner, trace=False, threshold=0.99, cloud_resilience=False)
    assert router.cloud is inner
    a = router.ask("Capital of France?")
    assert a.route == "local-offline" and "503" in a.reason and inner.requests == 1
    mine = CircuitBreaker(RetryingBackend(PlainCloud()))
    assert Router(local_model=MockLocalModel(), cloud=mine, trace=False).cloud is mine
    retrying = RetryingBackend(PlainCloud())
    wrapped = Router(local_model=MockLocalModel(), cloud=retrying, trace=False).cloud
    assert isinstance(wrapped, CircuitBreaker) and wrapped.inner is retrying  # only what was missing
    mock = MockCloud()
    assert Router(local_model=MockLocalModel(), cloud=mock, trace=False).cloud is mock  # a scripted double
    assert isinstance(Router(local_model=MockLocalModel(), cloud=MockCloud(resilient=False), trace=False).cloud,
                      CircuitBreaker)


def test_an_open_circuit_makes_the_cloud_unreachable_for_the_policy():
    breaker = CircuitBreaker(RetryingBackend(PlainCloud(failures=100), max_retries=0), failures=1)
    router = Router(local_model=MockLocalModel(), cloud=breaker, trace=False, threshold=0.99)
    first = router.ask("one?")
    assert first.route == "local-offline" and breaker.state == "open" and not router.cloud.reachable
    second = router.ask("two?")
    assert second.route == "local-offline" and breaker.inner.inner.requests == 1  # no request while open


def test_a_local_model_declares_what_it_can_do():
    tiny = TinyLocal()
    assert tiny.hidden_states is False and tiny.n_embd is None and tiny.hidden_layers == () and tiny.selfref is None
    router = Router(local_model=tiny, local_only=True, trace=False)
    assert router.pregen is None and "probe" not in [s.name for s in router.signals]
    a = router.ask("anything?")
    assert a.text == "maybe" and a.route == "local" and a.confidence is not None
    assert MockLocalModel().hidden_states is True  # the double declares hidden states, so probes run on it
