"""Errors in one vocabulary; each ingress renders them in its own wire format."""

from __future__ import annotations

from typing import Literal, TypeAlias

ErrorKind: TypeAlias = Literal[
    "invalid_request",  # 400: malformed or unsupported input
    "authentication",  # 401
    "payment_required",  # 402: budget exhausted
    "permission",  # 403: scope, clearance, policy
    "not_found",  # 404
    "request_too_large",  # 413
    "unprocessable",  # 422: input that fails a contract's schema
    "rate_limit",  # 429
    "api_error",  # 500: Podium itself failed
    "upstream",  # 502: the worker answered with an error
    "overloaded",  # 503/529: no worker available right now
    "timeout",  # 504
]

STATUS_OF_KIND: dict[ErrorKind, int] = {
    "invalid_request": 400,
    "authentication": 401,
    "payment_required": 402,
    "permission": 403,
    "not_found": 404,
    "request_too_large": 413,
    "unprocessable": 422,
    "rate_limit": 429,
    "api_error": 500,
    "upstream": 502,
    "overloaded": 503,
    "timeout": 504,
}


class PodiumError(Exception):
    """An error a client is meant to see. ``message`` must never carry a secret."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.status = status if status is not None else STATUS_OF_KIND[kind]
        self.param = param
        self.code = code
        self.retry_after: float | None = retry_after
        # More response headers for the caller (a key's rate-limit state on a 429, say).
        self.headers = headers


class ProviderError(PodiumError):
    """A worker's upstream failed. ``retryable`` says whether trying again (here or on another
    worker) may succeed: rate limits, 5xx, timeouts and connection errors are; 4xx are not."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        worker: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(kind, message, status=status, retry_after=retry_after, code=code)
        self.retryable = retryable
        self.worker = worker


def provider_error_from_status(
    status: int, message: str, *, retry_after: float | None = None, worker: str | None = None
) -> ProviderError:
    """Map an upstream HTTP status to the error the caller sees, keeping its meaning."""
    kind: ErrorKind
    if status == 429:
        kind = "rate_limit"
    elif status in (401, 403):
        # The worker's credential is Podium's business, not the caller's: a misconfigured
        # provider key is a gateway failure, reported without the key.
        kind, status = "upstream", 502
    elif status == 404:
        kind, status = "upstream", 502
    elif status == 413:
        kind = "request_too_large"
    elif status in (400, 422):
        kind = "invalid_request"
        status = 400
    elif status in (503, 529):
        kind = "overloaded"
    elif status == 504 or status == 408:
        kind = "timeout"
        status = 504
    elif status >= 500:
        kind, status = "upstream", 502
    else:
        kind, status = "upstream", 502
    retryable = kind in ("rate_limit", "overloaded", "timeout", "upstream") and status != 400
    return ProviderError(
        kind, message, status=status, retryable=retryable, retry_after=retry_after, worker=worker
    )
