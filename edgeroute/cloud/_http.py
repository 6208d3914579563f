"""One JSON POST with every failure mapped to a typed ``CloudError`` (shared by the HTTP providers)."""

from __future__ import annotations

import json
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
from .retry import parse_retry_after


def error_detail(response: httpx.Response) -> str:
    """The provider's error message, shortened (both OpenAI's and Anthropic's error shapes)."""
    try:
        body = response.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message", err) if isinstance(err, dict) else err
        return str(msg)[:300]
    except (ValueError, AttributeError):
        return response.text[:300]


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


def transport_error(base_url: str, exc: Exception) -> CloudError:
    if isinstance(exc, httpx.TimeoutException):
        return CloudTimeoutError(f"{base_url}: {type(exc).__name__}")
    return CloudUnreachableError(f"{base_url}: {type(exc).__name__}: {exc}")


def check_status(response: httpx.Response, base_url: str) -> None:
    """Raise the typed error for a non-2xx response (its body must have been read)."""
    if response.status_code in (401, 403):
        raise CloudAuthError(
            f"{base_url} rejected the credentials ({response.status_code}): {error_detail(response)}",
            status_code=response.status_code,
        )
    if not response.is_success:
        raise CloudHTTPError(
            f"{base_url} answered {response.status_code}: {error_detail(response)}",
            status_code=response.status_code,
            retry_after_s=parse_retry_after(response.headers),
        )


def post_json(client: httpx.Client, base_url: str, path: str, payload: dict[str, Any],
              timeout_s: Optional[float]) -> Any:
    """POST ``payload`` and return the decoded JSON body; exactly one request, never a retry."""
    try:
        response = client.post(path, json=payload, timeout=timeout_of(timeout_s))
    except httpx.TransportError as exc:
        raise transport_error(base_url, exc) from exc
    check_status(response, base_url)
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CloudResponseError(
            f"{base_url} answered {response.status_code} with a body that is not JSON "
            f"(content-type {response.headers.get('content-type', '?')!r})"
        ) from None
