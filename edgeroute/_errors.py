"""The exception tree of edgeroute.

Every error edgeroute raises on purpose is an ``EdgeRouteError``::

    EdgeRouteError
    ├── ConfigError                  invalid configuration (negative timeout, unknown key, bad threshold, ...)
    ├── InputError                   the request itself is unusable
    │   ├── EmptyPromptError         empty or whitespace-only prompt
    │   ├── InvalidPromptError       not text, lone surrogates, NUL bytes, malformed messages, too many characters
    │   └── PromptTooLongError       longer than the local context and the cloud cannot take it
    ├── ModelError                   the local model cannot be used
    │   ├── ModelNotFoundError       no GGUF at the given path / in the default package / in the user model dir
    │   ├── ModelCorruptError        the file is not a loadable GGUF (names the file)
    │   └── ModelLoadError           llama.cpp refused it for another reason (e.g. a context too large to allocate)
    ├── GenerationCancelled          the caller cancelled a generation
    ├── CloudError                   the cloud could not answer (the router degrades to the local answer)
    │   ├── CloudUnreachableError    DNS failure, connection refused, TLS failure
    │   ├── CloudTimeoutError        connect or read timeout
    │   ├── CloudHTTPError           a non-2xx status; ``status_code`` says which
    │   │   └── CloudAuthError       401 / 403
    │   ├── CloudResponseError       a 2xx whose body is not a chat completion
    │   ├── CloudStreamError         a streamed answer broke after it started (never retried silently)
    │   └── CloudBudgetError         a hard spend cap (US$ per day, requests per minute) refused the call
    ├── EnergyError                  a meter cannot give a valid reading (absent, permission denied, bad window);
    │                                the Router falls back to another meter or the estimate and says so
    ├── PolicyError                  a policy was given a bad context, reward or state (rejected, state unchanged)
    ├── DatasetError                 a benchmark/calibration JSONL is unreadable or malformed (names the line)
    ├── CalibrationError             the data cannot certify the requested error bound (too few, or too wrong)
    ├── FitError                     ``edgeroute fit`` cannot fit what was asked (too few labelled answers, none)
    │   └── FitInterruptedError      the fit was interrupted; every answer so far is cached (``--resume``)
    ├── StoreError                   the trace store cannot be read or written
    └── UnknownAnswerError           feedback for an answer id the trace does not hold
"""

from __future__ import annotations

from typing import Optional


class EdgeRouteError(Exception):
    """Base class of every error edgeroute raises on purpose."""


class ConfigError(EdgeRouteError, ValueError):
    """Invalid configuration."""


class InputError(EdgeRouteError, ValueError):
    """The request is unusable; ``field`` names the request field at fault when one is (e.g. ``"top_p"``)."""

    def __init__(self, *args: object, field: "str | None" = None) -> None:
        super().__init__(*args)
        self.field = field


class EmptyPromptError(InputError):
    """The prompt is empty or only whitespace."""


class InvalidPromptError(InputError):
    """The prompt is not valid text or the messages are malformed."""


class PromptTooLongError(InputError):
    """The prompt does not fit the local context and cannot be escalated."""

    def __init__(self, message: str, *, prompt_tokens: int, n_ctx: int, over_tokens: Optional[int] = None) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx
        #: How many tokens the prompt would have to lose to fit (leaving room for an answer).
        self.over_tokens = over_tokens if over_tokens is not None else max(prompt_tokens - n_ctx, 0)

    @classmethod
    def over(cls, prompt_tokens: int, n_ctx: int, room: int, where: str) -> "PromptTooLongError":
        """The error for a prompt of ``prompt_tokens`` in a window of ``n_ctx`` that must leave ``room``."""
        over = prompt_tokens - (n_ctx - room)
        return cls(f"the prompt is {prompt_tokens} tokens, {over} over: {where} holds {n_ctx} and an answer needs "
                   f"at least {room}", prompt_tokens=prompt_tokens, n_ctx=n_ctx, over_tokens=over)


class ModelError(EdgeRouteError):
    """The local model cannot be used."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """No GGUF file was found."""


class ModelCorruptError(ModelError):
    """The file is not a loadable GGUF."""


class ModelLoadError(ModelError):
    """llama.cpp refused to load the model or to allocate its context."""


class GenerationCancelled(EdgeRouteError):
    """The caller cancelled a generation; the model is free again."""


class CloudError(EdgeRouteError):
    """The cloud could not answer."""


class CloudUnreachableError(CloudError):
    """DNS failure, connection refused or TLS failure."""


class CloudTimeoutError(CloudError):
    """The cloud did not connect or answer within the timeout."""


class CloudHTTPError(CloudError):
    """The cloud answered with a non-2xx status."""

    def __init__(self, message: str, *, status_code: int, retry_after_s: "float | None" = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        #: The server's Retry-After, in seconds, when it sent a usable one.
        self.retry_after_s = retry_after_s


class CloudAuthError(CloudHTTPError):
    """The cloud rejected the credentials (401/403)."""


class CloudResponseError(CloudError):
    """A 2xx answer whose body is not a valid chat completion."""


class CloudStreamError(CloudError):
    """A streamed cloud answer broke off (dropped connection, SSE error event, unreadable chunk)."""


class CloudBudgetError(CloudError):
    """A hard cap on cloud use (``cloud_budget_usd_per_day``, ``cloud_requests_per_minute``) refused the call."""


class EnergyError(EdgeRouteError):
    """An energy meter is unavailable or a window's reading is invalid; the message says why."""


class PolicyError(EdgeRouteError, ValueError):
    """A policy input (context, reward, arm, saved state) is invalid; the policy's state is unchanged."""


class DatasetError(EdgeRouteError, ValueError):
    """A labelled-data file is unreadable or malformed."""


class CalibrationError(EdgeRouteError):
    """No threshold can be certified for the requested epsilon and delta on these data."""


class FitError(EdgeRouteError):
    """``edgeroute fit`` cannot fit what was asked on the answers it has (it says how many more it needs)."""


class FitInterruptedError(FitError):
    """The fit was interrupted (Ctrl-C); the answers so far are cached and ``--resume`` continues."""


class StoreError(EdgeRouteError):
    """The trace store cannot be read or written."""


class UnknownAnswerError(EdgeRouteError, KeyError):
    """Feedback names an answer id the trace does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
