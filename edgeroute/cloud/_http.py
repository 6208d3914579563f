"""One JSON POST with every failure mapped to a typed ``CloudError`` (shared by the HTTP providers)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Optional

import httpx

from .._errors import (
    CloudAuthError,
    CloudError,
    CloudHTTPError,
    CloudResponseError,
    CloudTimeoutError,
    CloudUnreachableError,
    ConfigError,
)
from ..scrub import scrub
from .retry import parse_retry_after


#: The largest response body read from a cloud, bytes.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def error_detail(response: httpx.Response, secrets: Sequence[str] = ()) -> str:
    """The provider's error message, shortened (both OpenAI's and Anthropic's error shapes), with ``secrets`` and
    anything token-like removed: a cloud that echoes the request's headers must not put the key in a trace."""
    try:
        body = response.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = str(msg)[:300]
    except (ValueError, AttributeError, UnicodeDecodeError):
        text = response.text[:300]
    return scrub(text, secrets)


def make_client(base_url: str, headers: dict[str, str], connect_timeout_s: float, read_timeout_s: float,
                transport: Optional[httpx.BaseTransport]) -> tuple[str, httpx.Client]:
    """Validate the endpoint and timeouts and build the provider's httpx client: (normalised base URL, client)."""
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"cloud base URL must start with http:// or https://, got {base_url!r}")
    if connect_timeout_s <= 0 or read_timeout_s <= 0:
        raise ConfigError("cloud timeouts must be positive seconds")
    url = base_url.rstrip("/")
    client = httpx.Client(base_url=url, headers=headers, transport=transport,
                          timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s))
    return url, client


def timeout_of(timeout_s: Optional[float]) -> Any:
    return httpx.Timeout(timeout_s) if timeout_s is not None else httpx.USE_CLIENT_DEFAULT


def transport_error(base_url: str, exc: Exception, secrets: Sequence[str] = ()) -> CloudError:
    if isinstance(exc, httpx.TimeoutException):
        return CloudTimeoutError(f"{base_url}: {type(exc).__name__}")
    return CloudUnreachableError(scrub(f"{base_url}: {type(exc).__name__}: {exc}", secrets))


def check_status(response: httpx.Response, base_url: str, secrets: Sequence[str] = ()) -> None:
    """Raise the typed error for a non-2xx response (its body must have been read)."""
    if response.status_code in (401, 403):
        raise CloudAuthError(
            f"{base_url} rejected the credentials ({response.status_code}): {error_detail(response, secrets)}",
            status_code=response.status_code,
        )
    if not response.is_success:
        raise CloudHTTPError(
            f"{base_url} answered {response.status_code}: {error_detail(response, secrets)}",
            status_code=response.status_code,
            retry_after_s=parse_retry_after(response.headers),
        )


class Deadline:
    """A whole call's time limit (seconds from now; None: none). ``check`` raises ``CloudTimeoutError`` once it has
    passed; ``left`` is what remains for the next read."""

    def __init__(self, base_url: str, timeout_s: Optional[float]) -> None:
        self.base_url, self.timeout_s = base_url, timeout_s
        self.end = None if timeout_s is None else time.monotonic() + timeout_s

    def left(self) -> Optional[float]:
        return None if self.end is None else max(self.end - time.monotonic(), 0.001)

    def check(self) -> None:
        if self.end is not None and time.monotonic() > self.end:
            # .3g: the retry loop passes what is left of its deadline (1.99999 s of 2), and the message says 2 s
            raise CloudTimeoutError(f"{self.base_url}: no complete answer within {self.timeout_s:.3g} s")


def post_json(client: httpx.Client, base_url: str, path: str, payload: dict[str, Any],
              timeout_s: Optional[float], secrets: Sequence[str] = (),
              headers: Optional[dict[str, str]] = None) -> Any:
    """POST ``payload`` and return the decoded JSON body; exactly one request, never a retry. ``timeout_s``
    bounds the whole call, a body that trickles in included."""
    deadline = Deadline(base_url, timeout_s)
    try:
        with client.stream("POST", path, json=payload, timeout=timeout_of(timeout_s), headers=headers) as response:
            parts, size = [], 0
            for piece in response.iter_bytes():
                deadline.check()
                size += len(piece)
                if size > MAX_RESPONSE_BYTES:
                    raise CloudResponseError(f"{base_url}: the answer is over {MAX_RESPONSE_BYTES} bytes")
                parts.append(piece)
            response = httpx.Response(response.status_code, headers=response.headers, content=b"".join(parts),
                                      request=response.request)
    except httpx.TransportError as exc:
        raise transport_error(base_url, exc, secrets) from exc
    check_status(response, base_url, secrets)
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CloudResponseError(
            f"{base_url} answered {response.status_code} with a body that is not JSON "
            f"(content-type {response.headers.get('content-type', '?')!r})"
        ) from None
