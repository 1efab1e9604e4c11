"""HTTP transport of the node protocol: keep-alive connections per thread,
JSON bodies, the bearer token and the session header, and the mapping of
error answers to the exceptions of allot.errors."""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, Dict, Mapping, Optional, Tuple

from . import errors

__all__ = ["Transport", "Response", "SESSION_HEADER", "parse_retry_after", "mask", "mask_url"]

#: The header that carries a node's session on every request after the join.
SESSION_HEADER = "Allot-Session"

# The most a single answer may hold: an assignment of many groups is a few
# hundred kilobytes; anything larger is not an allot server speaking.
MAX_BODY = 8 << 20

# Transport errors on a reused keep-alive connection that mean the server
# closed it while idle: the request never reached a handler, so it is sent
# again once on a fresh connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def mask(value: str) -> str:
    """A secret as outputs show it: "****", plus its last 4 characters when
    it is at least 12 long (as allot's CLI and API mask secrets)."""
    if len(value) >= 12:
        return "****" + value[-4:]
    return "****"


def mask_url(url: str) -> str:
    """url with any user:password part masked."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = "%s:%d" % (host, parts.port)
    return urllib.parse.urlunsplit((parts.scheme, "****@" + host, parts.path, parts.query, parts.fragment))


def parse_retry_after(value: Any, now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After value: a number of seconds (int,
    float or text) or an HTTP date. None when value is None or unreadable;
    never negative."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return max(0.0, float(value)) if value == value else None  # NaN is unreadable
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Response:
    """One answer: status, headers and the decoded JSON body (None when the
    body was empty)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Transport:
    """Sends node protocol requests to one server.

    Each thread keeps its own keep-alive connection, so a lease's acquire
    and settle do not pay a new TCP (and TLS) handshake each. The token is
    sent as a bearer token and never appears in an error or a repr.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
        cafile: Optional[str] = None,
        timeout: float = 10.0,
        user_agent: str = "allot-python",
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("allot: url %r: want http://host:port or https://host:port" % mask_url(url))
        if parts.query or parts.fragment:
            raise ValueError("allot: url %r: want no query or fragment" % mask_url(url))
        if parts.username is not None or parts.password is not None:
            raise ValueError("allot: url %r: pass the token as token=, not in the URL" % mask_url(url))
        if parts.scheme == "http" and (ssl_context is not None or cafile is not None):
            raise ValueError("allot: ssl_context and cafile need an https:// url")
        if ssl_context is not None and cafile is not None:
            raise ValueError("allot: give ssl_context or cafile, not both")
        if timeout <= 0:
            raise ValueError("allot: timeout must be positive, got %r" % timeout)
        if token is not None and not isinstance(token, str):
            raise TypeError("allot: token must be a str")
        if token and any(c in token for c in "\r\n"):
            raise ValueError("allot: token holds a line break")
        self.url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._token = token or ""
        if self._https and ssl_context is None:
            ssl_context = ssl.create_default_context(cafile=cafile)
        self._ssl = ssl_context
        self.timeout = timeout
        self._user_agent = user_agent
        self._local = threading.local()

    @property
    def host(self) -> str:
        """The server's host name or address."""
        return self._host or ""

    def __repr__(self) -> str:
        return "Transport(url=%r, token=%s)" % (self.url, "'****'" if self._token else "None")

    def new_connection(self, timeout: float) -> http.client.HTTPConnection:
        """A new, unconnected connection to the server."""
        if self._https:
            return http.client.HTTPSConnection(self._host or "", self._port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host or "", self._port, timeout=timeout)

    def _thread_connection(self, timeout: float) -> Tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        conn = self.new_connection(timeout)
        self._local.conn = conn
        return conn, False

    def _drop_thread_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Closes the calling thread's kept-alive connection."""
        self._drop_thread_connection()

    def request(
        self,
        method: str,
        path: str,
        body: Optional[Mapping[str, Any]] = None,
        *,
        session: str = "",
        timeout: Optional[float] = None,
        shown: Optional[str] = None,
        conn: Optional[http.client.HTTPConnection] = None,
    ) -> Response:
        """Sends one request and returns its 2xx answer; raises an
        errors.APIError for an error status and errors.ConnectionFailed when
        the server cannot be reached.

        shown is the path as errors show it (a lease's path hides the lease).
        conn, when given, is used instead of the thread's connection (the
        node's long poll uses one it can interrupt); the caller closes it.
        """
        shown = shown or path
        headers: Dict[str, str] = {"Accept": "application/json", "User-Agent": self._user_agent}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = "Bearer " + self._token
        if session:
            headers[SESSION_HEADER] = session
        timeout = self.timeout if timeout is None else timeout
        own = conn is None
        for attempt in (0, 1):
            reused = False
            if own:
                conn, reused = self._thread_connection(timeout)
            assert conn is not None
            try:
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.timeout = timeout
                conn.request(method, self._prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read(MAX_BODY + 1)
            except _STALE as e:
                if own:
                    self._drop_thread_connection()
                if own and reused and attempt == 0:
                    continue  # the server closed the idle connection: send again
                raise errors.ConnectionFailed("allot: %s %s: %s" % (method, shown, _describe(e))) from None
            except (OSError, http.client.HTTPException) as e:
                if own:
                    self._drop_thread_connection()
                raise errors.ConnectionFailed("allot: %s %s: %s" % (method, shown, _describe(e))) from None
            if resp.will_close and own:
                self._drop_thread_connection()
            if len(raw) > MAX_BODY:
                if own:
                    self._drop_thread_connection()
                raise errors.ConnectionFailed("allot: %s %s: answer larger than %d bytes" % (method, shown, MAX_BODY))
            if resp.status >= 400:
                raise error_from(method, shown, resp.status, resp.headers, raw)
            return Response(resp.status, resp.headers, _decode(method, shown, resp.status, raw))
        raise AssertionError("unreachable")  # pragma: no cover


def _describe(e: BaseException) -> str:
    if isinstance(e, socket.timeout) or isinstance(e, TimeoutError):
        return "timed out"
    text = str(e) or type(e).__name__
    return text


def _decode(method: str, shown: str, status: int, raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise errors.APIError(
            "allot: %s %s: HTTP %d with a body that is not JSON" % (method, shown, status), status=status
        ) from None


def retry_after_of(headers: Any, body: Any = None) -> Optional[float]:
    """The wait an answer asks for, in seconds: retry-after-ms (exact),
    else Retry-After (whole seconds or a date), else a retry_after_ms field
    of the JSON error; None when there is none."""
    if headers is not None:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            v = parse_retry_after(ms)
            if v is not None:
                return v / 1000.0
        v = parse_retry_after(headers.get("Retry-After"))
        if v is not None:
            return v
    for where in _error_objects(body):
        ms = where.get("retry_after_ms")
        if isinstance(ms, (int, float)) and not isinstance(ms, bool):
            v = parse_retry_after(ms)
            if v is not None:
                return v / 1000.0
    return None


def _error_objects(body: Any) -> Tuple[Dict[str, Any], ...]:
    """The JSON objects an error body may keep fields in: {"error": {...}}
    first, then the top level."""
    out = []
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            out.append(inner)
        out.append(body)
    return tuple(out)


def error_from(method: str, shown: str, status: int, headers: Any, raw: bytes) -> errors.APIError:
    """The exception for an error answer. The body is read defensively: the
    server writes {"error": {"code", "message"}}; a 429 may also name the
    refusing limit in "limit" (inside "error" or at the top level)."""
    body: Any = None
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
        body = None
    code, message, limit = "", "", None
    for where in _error_objects(body):
        if not code and isinstance(where.get("code"), str):
            code = where["code"]
        if not message and isinstance(where.get("message"), str):
            message = where["message"]
        if limit is None and isinstance(where.get("limit"), str) and where["limit"]:
            limit = where["limit"]
    if isinstance(body, dict) and isinstance(body.get("error"), str) and not message:
        message = body["error"]
    if not message and body is None:
        message = raw.decode("utf-8", "replace").strip()[:200]
    text = "allot: %s %s: HTTP %d" % (method, shown, status)
    if code:
        text += " " + code
    if message:
        text += ": " + message
    wait = retry_after_of(headers, body)
    if status == 429:
        return errors.RateLimited(1.0 if wait is None else wait, limit, text, code=code or "too_many_requests")
    cls = {
        401: errors.Unauthorized,
        403: errors.Forbidden,
        404: errors.NotFound,
        409: errors.Conflict,
    }.get(status)
    if cls is None:
        cls = errors.Unavailable if status >= 500 else errors.APIError
    return cls(text, status=status, code=code, retry_after=wait)
