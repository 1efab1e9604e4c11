"""Leases: one upstream call the pool's limits let through, over HTTP."""

from __future__ import annotations

import logging
import threading
import types
import urllib.parse
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Type

from . import errors
from ._http import Transport, parse_retry_after

if TYPE_CHECKING:  # pragma: no cover
    from types import TracebackType

__all__ = ["Lease"]


class Lease:
    """One upstream call that Node.acquire let through: the group (and so
    the key) to make it with, and the tokens reserved for it.

    Use it as a context manager. Leaving the ``with`` block without calling
    settle() settles the lease with the reserved estimate (``tokens``), also
    when the block raised: the call may have used them. A failure of that
    automatic settle is logged, not raised, so it never hides the block's
    own result or exception; call settle() yourself to see it.

    Attributes: group (the group's name), config (its config, read-only, as
    it was when the lease was taken; values in clear, never log them),
    borrowed (the server lent this call from a group the node does not
    hold), tokens (the estimate reserved), expires_at (Unix seconds: settle
    before then). repr() shows neither the lease nor config values.

    Lease methods may be called from any thread.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        node_path: str,
        session: str,
        tokens: int,
        answer: Mapping[str, Any],
        logger: logging.Logger,
    ) -> None:
        lease = answer.get("lease")
        group = answer.get("group")
        if not isinstance(lease, str) or not lease:
            raise errors.AllotError("allot: acquire answered without a lease")
        if not isinstance(group, str):
            raise errors.AllotError("allot: acquire answered without a group")
        config = answer.get("config") or {}
        if not isinstance(config, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in config.items()):
            raise errors.AllotError("allot: acquire answered a config that is not an object of strings")
        expires_ms = answer.get("expires_ms")
        if isinstance(expires_ms, bool) or not isinstance(expires_ms, (int, float)):
            expires_ms = 0
        self._transport = transport
        self._node_path = node_path
        self._session = session
        self._lease = lease
        self._log = logger
        self._mu = threading.Lock()
        self._settle_called = False
        self._settled: Optional[int] = None
        self.group: str = group
        self.config: Mapping[str, str] = types.MappingProxyType(dict(config))
        self.borrowed: bool = bool(answer.get("borrowed"))
        self.tokens: int = tokens
        self.expires_at: float = float(expires_ms) / 1000.0

    @property
    def id(self) -> str:
        """The opaque lease the server issued (a capability: do not log it)."""
        return self._lease

    @property
    def settled(self) -> Optional[int]:
        """The tokens the lease was settled with, or None while it is open."""
        return self._settled

    def __repr__(self) -> str:
        return "Lease(group=%r, tokens=%d, borrowed=%r, settled=%r)" % (
            self.group,
            self.tokens,
            self.borrowed,
            self._settled,
        )

    def _path(self, action: str) -> "tuple[str, str]":
        base = self._node_path + "/leases/"
        return base + urllib.parse.quote(self._lease, safe="") + "/" + action, base + "…/" + action

    def settle(self, used: int) -> Any:
        """Tells the pool the call used ``used`` tokens: the difference from
        the reserved estimate is debited or given back
        (POST /v1/nodes/{id}/leases/{lease}/settle). Returns the server's
        answer (its JSON, or None).

        Raises ValueError for a negative or non-integer ``used``; Conflict
        when this lease was settled already (without asking the server
        again) or the server says it was, or that it expired; Forbidden when
        the server refuses the lease (forged, or taken under a session the
        node no longer holds: it re-joined since).
        """
        if isinstance(used, bool) or not isinstance(used, int) or used < 0:
            raise ValueError("allot: settle: used must be a non-negative int, got %r" % (used,))
        with self._mu:
            if self._settled is not None:
                raise errors.Conflict(
                    "allot: settle: lease of group %r already settled with %d tokens" % (self.group, self._settled),
                    status=409,
                    code="conflict",
                )
            self._settle_called = True
        path, shown = self._path("settle")
        resp = self._transport.request("POST", path, {"tokens": used}, session=self._session, shown=shown)
        with self._mu:
            self._settled = used
        return resp.body

    def observe(self, status: int, retry_after: Any = None) -> Any:
        """Tells the pool what the upstream answered to the call
        (POST /v1/nodes/{id}/leases/{lease}/observe): a 429 cools the group
        for every holder (for retry_after, else 1 s doubling on repeats), a
        401 or 403 counts towards the group's suspension, a 2xx towards its
        recovery. ``retry_after`` is the upstream's Retry-After: seconds (a
        number) or the header's text (seconds or an HTTP date); None when it
        sent none. Returns the server's answer (its JSON, or None).
        """
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError("allot: observe: status must be an HTTP status (100-599), got %r" % (status,))
        body: Dict[str, Any] = {"status": status}
        wait = parse_retry_after(retry_after)
        if wait is not None:
            body["retry_after_ms"] = int(round(wait * 1000))
        path, shown = self._path("observe")
        resp = self._transport.request("POST", path, body, session=self._session, shown=shown)
        return resp.body

    def __enter__(self) -> "Lease":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: "Optional[TracebackType]",
    ) -> None:
        with self._mu:
            if self._settle_called:
                return
        try:
            self.settle(self.tokens)
        except errors.AllotError as e:
            self._log.warning("lease of group %s: settling with the estimate failed: %s", self.group, e)

