"""The errors of the allot package: every one is an AllotError.

    AllotError
    ├── ConnectionFailed     the server could not be reached (or timed out)
    ├── NotJoined            the node has no session: not joined yet, re-joining, or closed
    └── APIError             the server answered with an error status
        ├── Unauthorized     401: no token, or an unknown one
        ├── Forbidden        403: the token may not act for this node ID, or a lease was refused
        │   └── SessionLost  403 on a request made with the node's session: it is gone
        ├── NotFound         404
        ├── Conflict         409: node ID in use, lease already settled or expired, group not held
        ├── RateLimited      429: a limit refused the call; retry_after says when to try again
        └── Unavailable      5xx: Redis unreachable, server shutting down, long polls full

Messages never hold the bearer token, a session or a config value.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "AllotError",
    "ConnectionFailed",
    "NotJoined",
    "APIError",
    "Unauthorized",
    "Forbidden",
    "SessionLost",
    "NotFound",
    "Conflict",
    "RateLimited",
    "Unavailable",
]


class AllotError(Exception):
    """Base class of every error this package raises."""


class ConnectionFailed(AllotError):
    """The server could not be reached, or did not answer in time."""


class NotJoined(AllotError):
    """The node holds no session: it has not joined yet, lost its session
    and is joining again, or was closed."""


class APIError(AllotError):
    """The server answered with an error status.

    Attributes: status (the HTTP status), code (the JSON error code, such as
    "conflict"; "" when the body had none), message (the server's message),
    retry_after (seconds the server asked to wait, from Retry-After or
    retry-after-ms; None when it sent neither).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str = "",
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class Unauthorized(APIError):
    """401: the request carried no token, or one the server does not know."""


class Forbidden(APIError):
    """403: the token may not act for this node ID, or the server refused a
    lease (forged, or from another node or session)."""


class SessionLost(Forbidden):
    """403 on a request sent with the node's session: another process holds
    the node ID now, or an operator evicted the node. The node stops using
    its groups and joins again on its own; retry once it has."""


class NotFound(APIError):
    """404: no such route, node or group."""


class Conflict(APIError):
    """409: the node ID is in use by another live process, a lease was
    already settled or has expired, or the node does not hold the group."""


class RateLimited(APIError):
    """429: a limit refused the call.

    retry_after is how many seconds to wait before the next try (from the
    server's retry-after-ms header, else Retry-After, else 1 s); limit names
    the refusing limit as the server wrote it ("90000 tokens/m", "cooling"),
    or None when the answer named none.
    """

    def __init__(
        self,
        retry_after: float,
        limit: Optional[str] = None,
        message: str = "",
        *,
        status: int = 429,
        code: str = "too_many_requests",
    ) -> None:
        text = message or "allot: rate limited by %s, retry after %.3fs" % (limit or "a limit", retry_after)
        super().__init__(text, status=status, code=code, retry_after=retry_after)
        self.retry_after: float = retry_after
        self.limit = limit


class Unavailable(APIError):
    """5xx: the server cannot serve the request now (Redis unreachable, the
    server shutting down, its long polls full). Retry later."""
