"""Node: a process in allot's pool, over the HTTP node protocol."""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Set, Tuple, Type

from . import errors
from ._http import Transport, mask_url, parse_retry_after
from ._version import __version__
from .assignment import Assignment, Group
from .lease import Lease

if TYPE_CHECKING:  # pragma: no cover
    import ssl
    from types import TracebackType

__all__ = ["Node", "ChangeCallback", "BACKOFF_FIRST", "BACKOFF_MAX"]

#: on_change callbacks receive the previous and the new assignment.
ChangeCallback = Callable[[Assignment, Assignment], None]

#: Retry delays while the server is unreachable (seconds): doubling from
#: the first to the cap, so a long outage costs the server little when it
#: comes back.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0

# Heartbeat settings until the first answer gives the server's (they are
# allot's defaults).
_DEFAULT_INTERVAL = 2.0
_DEFAULT_TTL = 6.0

# A long poll shorter than this is not worth a request: wait instead.
_MIN_POLL = 0.05

# Errors that end the first join for good: retrying cannot fix a bad token,
# a token not allowed this node ID, a wrong URL or an invalid node ID.
_FATAL_STATUSES = (400, 401, 403, 404, 405, 413, 415, 422)


class Node:
    """A node of allot's pool: joins, beats, follows its assignment and
    leaves, over the HTTP node protocol of ``allot serve``.

    ``Node(url, token, node_id=..., ip=...)`` starts two daemon threads and,
    by default, returns once the node has joined (at most start_timeout
    seconds; None waits as long as it takes, 0 returns at once):

    - the heartbeat thread beats every interval the server asks for,
      long-polls for assignment changes between beats, follows its session
      (when the server says it is gone, the node stops using its groups and
      joins again), waits while another live process holds the node ID, and
      backs off (0.5 s doubling to 10 s) while the server is unreachable. A
      node that has gone a TTL without a successful beat stops using its
      capped groups (max_nodes > 0): the server may have handed them on.
    - the callback thread runs on_change callbacks.

    Reading ``node.config("api_key")``, ``node.groups`` or
    ``node.assignment`` takes no request: they read the latest assignment,
    replaced whole on every change. ``acquire`` takes a lease for one
    upstream call; ``report`` tells the pool what the upstream answered.
    ``close()`` (or leaving a ``with`` block) leaves the pool: its groups move
    at once. Without it the server reaps the node after its TTL.

    The token is never shown: repr(), errors and logs mask it.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        *,
        node_id: Optional[str] = None,
        ip: Optional[str] = None,
        preferred: str = "",
        on_change: Optional[ChangeCallback] = None,
        ssl_context: "Optional[ssl.SSLContext]" = None,
        cafile: Optional[str] = None,
        timeout: float = 10.0,
        start_timeout: Optional[float] = 30.0,
        logger: Optional[logging.Logger] = None,
    ) -> None:
        """Starts the node.

        url: the server, http(s)://host:port (a path prefix is kept).
        token: a node-role bearer token (ALLOT_NODE_TOKEN, or one of
        ALLOT_NODE_TOKENS whose pattern matches node_id); None on an open
        server. node_id: unique in the pool (default: the host name). ip:
        fed to the allocation hash (default: the local address that reaches
        the server). preferred: a group to hold when it has room.
        on_change: registered before the first join, so it hears of it.
        ssl_context or cafile (a CA bundle file): how https:// urls verify
        the server (default: the system's CAs). timeout: seconds for one
        request (a beat waits at most a TTL). start_timeout: see above.
        logger: where the node logs (default: the "allot" logger, which
        stays silent unless the application configures logging).

        Raises ValueError for bad arguments; Unauthorized or Forbidden when
        the server refuses the token for this node ID, and another APIError
        when it refuses the join for good; NotJoined when start_timeout
        passed before the node joined (the last error is in the message).
        """
        if node_id is None:
            node_id = socket.gethostname()
        for name, v in (("node_id", node_id), ("preferred", preferred)):
            if not isinstance(v, str):
                raise TypeError("allot: %s must be a str" % name)
        if not node_id:
            raise ValueError("allot: node_id is empty")
        if start_timeout is not None and start_timeout < 0:
            raise ValueError("allot: start_timeout must be >= 0 or None")
        self._transport = Transport(
            url, token, ssl_context=ssl_context, cafile=cafile, timeout=timeout, user_agent="allot-python/" + __version__
        )
        self.id: str = node_id
        self.ip: str = ip if ip else _local_ip(self._transport.host)
        self.preferred: str = preferred
        self._log = logger or logging.getLogger("allot")
        self._path = "/v1/nodes/" + urllib.parse.quote(node_id, safe="")

        self._mu = threading.Lock()
        self._cv = threading.Condition(self._mu)  # joins, errors, the callback queue
        self._cur = Assignment()
        self._session = ""
        self._ever_joined = False
        self._last_error: Optional[errors.AllotError] = None
        self._interval = _DEFAULT_INTERVAL
        self._ttl = _DEFAULT_TTL
        self._lease_until = 0.0  # monotonic: last successful beat sent + TTL
        self._listeners: List[ChangeCallback] = []
        # (old, new, the callbacks registered when it happened, whether it
        # is a late callback's first call)
        self._queue: Deque[Tuple[Assignment, Assignment, Tuple[ChangeCallback, ...], bool]] = collections.deque()
        self._undelivered = 0  # queued changes whose callbacks have not all returned
        self._delivered: Tuple[str, ...] = ()  # groups whose arrival the callbacks have seen
        self._voided: Set[str] = set()  # capped groups a lapse took away
        self._closing = False
        self._dispatch_stop = False
        self._stop = threading.Event()
        self._wake = threading.Event()  # beat now (or stop)
        self._pconn: Any = None  # the long poll's kept-alive connection
        self._poll_conn: Any = None  # the same, while a poll is in flight
        self._interrupted = False
        self._logged_waiting = False
        self._logged_polls_full = False
        if on_change is not None:
            self._listeners.append(on_change)

        self._dispatcher = threading.Thread(target=self._dispatch, name="allot-callbacks-" + node_id, daemon=True)
        self._loop = threading.Thread(target=self._run, name="allot-node-" + node_id, daemon=True)
        self._dispatcher.start()
        self._loop.start()
        if start_timeout == 0:
            return
        if not self._wait_started(start_timeout):
            err = self._last_error
            self.close()
            if err is not None and _fatal(err):
                raise err
            raise errors.NotJoined(
                "allot: node %s did not join %s within %ss%s"
                % (node_id, self._transport.url, start_timeout, " (last error: %s)" % err if err else "")
            )

    @classmethod
    def from_env(cls, **kwargs: Any) -> "Node":
        """A Node configured by the environment, as allot's other nodes are:
        ALLOT_URL (default http://127.0.0.1:7070), ALLOT_NODE_TOKEN,
        ALLOT_NODE_ID (default: the host name), ALLOT_NODE_IP, ALLOT_GROUP
        (preferred) and ALLOT_CA_FILE (a CA bundle for https). Keyword
        arguments override them and pass the rest (on_change, timeouts)."""
        env = os.environ
        kwargs.setdefault("node_id", env.get("ALLOT_NODE_ID") or None)
        kwargs.setdefault("ip", env.get("ALLOT_NODE_IP") or None)
        kwargs.setdefault("preferred", env.get("ALLOT_GROUP", ""))
        if "ssl_context" not in kwargs:
            kwargs.setdefault("cafile", env.get("ALLOT_CA_FILE") or None)
        url = kwargs.pop("url", None) or env.get("ALLOT_URL") or "http://127.0.0.1:7070"
        token = kwargs.pop("token", None) or env.get("ALLOT_NODE_TOKEN", "").strip() or None
        return cls(url, token, **kwargs)

    # ---- what the node holds ----

    @property
    def url(self) -> str:
        """The server's URL."""
        return self._transport.url

    @property
    def assignment(self) -> Assignment:
        """The latest assignment (empty before the first join and after a
        lost session or close)."""
        return self._cur

    @property
    def groups(self) -> Tuple[Group, ...]:
        """The groups held now, sorted by name."""
        return self._cur.groups

    @property
    def epoch(self) -> int:
        """The pool epoch of the latest assignment."""
        return self._cur.epoch

    @property
    def session(self) -> str:
        """The node's session ("" while it has none). With the token it acts
        for the node: never log it."""
        return self._session

    @property
    def joined(self) -> bool:
        """Whether the node holds a session now."""
        return bool(self._session)

    @property
    def interval(self) -> float:
        """Seconds between beats, as the server asked."""
        return self._interval

    @property
    def ttl(self) -> float:
        """Seconds of silence after which the server reaps a node."""
        return self._ttl

    @property
    def last_error(self) -> Optional[errors.AllotError]:
        """The last error of the heartbeat thread (None once a beat
        succeeds)."""
        return self._last_error

    def config(self, key: str, default: Optional[str] = None, *, group: Optional[str] = None) -> Optional[str]:
        """The value of key in the config of the first held group by name
        (the common one-group-per-node case), or of the held group called
        group; default when no group is held or the key is absent."""
        a = self._cur
        g = a.group(group) if group is not None else (a.groups[0] if a.groups else None)
        if g is None:
            return default
        return g.config.get(key, default)

    def wait_joined(self, timeout: Optional[float] = None) -> bool:
        """Waits until the node holds a session; False when timeout passed
        first or the node is closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._session and not self._closing:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
            return bool(self._session)

    def on_change(self, fn: ChangeCallback) -> ChangeCallback:
        """Registers fn(old, new) to be called after every change of what
        the node holds: its groups, their versions (config), shares, quotas
        or caps. An epoch that changes none of them (a change elsewhere in
        the pool) updates node.epoch without a call. Returns fn, so it works
        as a decorator.

        Callbacks run on the node's one callback thread, in order, never
        concurrently, and never on the heartbeat thread (a slow callback
        does not delay beats). node.assignment is already the new one when a
        callback runs. The node reports a dropped group as released only
        after the callbacks of its change have returned, so stop using a
        group before returning. When the node already holds groups, fn is
        called once (old: an empty Assignment) with the current assignment.
        An exception in fn is logged and does not stop later calls. fn must
        not call close().
        """
        if not callable(fn):
            raise TypeError("allot: on_change wants a callable")
        with self._cv:
            self._listeners.append(fn)
            if self._cur.groups:
                self._queue.append((Assignment(), self._cur, (fn,), True))
                self._undelivered += 1
                self._cv.notify_all()
        return fn

    # ---- leases and reports ----

    def acquire(self, tokens: int = 0, *, wait: Optional[float] = None) -> Lease:
        """Takes a lease for one upstream call of ``tokens`` (an estimate;
        0 for a plain call) from the pool's limits
        (POST /v1/nodes/{id}/acquire): the group to call with is in
        lease.group and its key in lease.config. Use it as a context
        manager, settle it with the tokens used and observe the upstream's
        answer (see Lease).

        Raises RateLimited (retry_after, limit) when no group can take the
        call now; with wait (seconds), retries after each refusal's
        retry_after until a retry would come after the deadline, then
        raises the last refusal. Raises NotJoined while the node holds no
        session (with wait: waits for it), SessionLost when the server says
        the session is gone (the heartbeat thread then joins again at once),
        ValueError for a negative or non-integer tokens.
        """
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise ValueError("allot: acquire: tokens must be a non-negative int, got %r" % (tokens,))
        deadline = None if wait is None else time.monotonic() + max(0.0, wait)
        while True:
            session = self._session
            if self._closing:
                raise errors.NotJoined("allot: acquire: node %s is closed" % self.id)
            if not session:
                left = 0.0 if deadline is None else deadline - time.monotonic()
                if left <= 0 or not self.wait_joined(left):
                    raise errors.NotJoined("allot: acquire: node %s has no session (not joined yet)" % self.id)
                continue
            try:
                resp = self._transport.request(
                    "POST", self._path + "/acquire", {"tokens": tokens}, session=session
                )
            except errors.Forbidden as e:
                lost = errors.SessionLost(e.message, status=e.status, code=e.code, retry_after=e.retry_after)
                self._beat_now()  # the beat sees the same 403 and joins again
                raise lost from None
            except errors.RateLimited as e:
                if deadline is None or time.monotonic() + e.retry_after > deadline:
                    raise
                if self._stop.wait(max(e.retry_after, 0.001)):
                    raise
                continue
            if not isinstance(resp.body, dict):
                raise errors.AllotError("allot: acquire: answer is not a JSON object")
            return Lease(
                transport=self._transport,
                node_path=self._path,
                session=session,
                tokens=tokens,
                answer=resp.body,
                logger=self._log,
            )

    def report(self, group: str, outcome: str, retry_after: Any = None, reason: str = "") -> Any:
        """Tells the pool what the upstream answered to a call made with
        group's key, when the call was not made under a lease
        (POST /v1/nodes/{id}/report). outcome: "throttled" (a 429; pass its
        Retry-After, seconds or the header's text; None: the pool cools 1 s,
        doubling on repeats), "failure" (401/403: counts towards the group's
        eject_after) or "success" (2xx). Do not report 5xx or network
        errors: they say nothing about the key. reason is shown in events
        (at most 200 bytes): never put a secret in it.

        Returns the answer: {"group", "state", "cooling_until" (Unix ms: do
        not call with this key before then), "failures", "transition"}.
        Raises Conflict when the node does not hold the group or its lease
        lapsed, NotFound for an unknown group.
        """
        if outcome not in ("throttled", "failure", "success"):
            raise ValueError("allot: report: outcome %r: want throttled, failure or success" % (outcome,))
        session = self._session
        if not session:
            raise errors.NotJoined("allot: report: node %s has no session" % self.id)
        body: Dict[str, Any] = {"group": group, "outcome": outcome, "reason": reason}
        wait = parse_retry_after(retry_after)
        if wait is not None:
            body["retry_after_ms"] = int(round(wait * 1000))
        return self._transport.request("POST", self._path + "/report", body, session=session).body

    # ---- lifecycle ----

    def close(self) -> bool:
        """Leaves the pool: stops the heartbeat thread, publishes an empty
        assignment (callbacks run, so the application stops using its
        groups), then leaves (DELETE /v1/nodes/{id}): the server moves the
        node's groups before it answers. Returns True when the server
        confirmed the leave; False when there was nothing to leave or the
        leave failed (logged; the server then reaps the node after its TTL).
        Calling it again returns False. Must not be called from an
        on_change callback (it waits for them).
        """
        if threading.current_thread() is self._dispatcher:
            raise errors.AllotError("allot: close() called from an on_change callback; call it elsewhere")
        with self._cv:
            if self._closing:
                return False
            self._closing = True
            self._cv.notify_all()
        self._stop.set()
        self._wake.set()
        self._interrupt()
        if threading.current_thread() is not self._loop:
            self._loop.join()
        with self._cv:
            session = self._session
            old = self._cur
            if old.groups:
                self._publish_locked(Assignment(epoch=old.epoch))
            # Wait for the callbacks to hear of it before leaving.
            while self._undelivered and self._dispatcher.is_alive():
                self._cv.wait(1.0)
        left = False
        if session:
            try:
                self._transport.request("DELETE", self._path, session=session, timeout=min(self._transport.timeout, 10.0))
                left = True
                self._log.info("node %s left", self.id)
            except errors.AllotError as e:
                self._log.warning("node %s: leave failed: %s; the server reaps it after its TTL", self.id, e)
        with self._cv:
            self._session = ""
            self._dispatch_stop = True
            self._cv.notify_all()
        self._dispatcher.join()
        self._transport.close()
        return left

    def __enter__(self) -> "Node":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: "Optional[TracebackType]",
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Node(url=%r, id=%r, ip=%r, token=%s, joined=%r, epoch=%d, groups=%r)" % (
            mask_url(self._transport.url),
            self.id,
            self.ip,
            "'****'" if self._transport._token else "None",
            self.joined,
            self._cur.epoch,
            list(self._cur.names),
        )

    # ---- the heartbeat thread ----

    def _wait_started(self, timeout: Optional[float]) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._ever_joined:
                if self._last_error is not None and _fatal(self._last_error) and not self._ever_joined:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def _run(self) -> None:
        """Beats every interval and long-polls in between, until close."""
        backoff = BACKOFF_FIRST
        next_beat = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_beat or self._wake.is_set():
                    self._wake.clear()
                    joined = self._beat()
                    next_beat = time.monotonic() + self._interval
                    backoff = BACKOFF_FIRST
                    if not joined:
                        self._wake.wait(self._interval)  # the ID is taken: wait
                        continue
                remaining = next_beat - time.monotonic()
                if remaining > _MIN_POLL and self._session:
                    self._poll(remaining)
                elif remaining > 0:
                    self._wake.wait(remaining)
            except Exception as exc:  # the loop must outlive any error
                if self._stop.is_set():
                    break
                e = exc if isinstance(exc, errors.AllotError) else _unexpected(exc, self._log, self.id)
                with self._cv:
                    self._last_error = e
                    self._cv.notify_all()
                    started = self._ever_joined
                if not started and _fatal(e):
                    self._log.error("node %s: join refused: %s", self.id, e)
                # Keep serving the current assignment (capped groups stop at
                # the lease's end, see _dispatch); a 429 or 503 says how long
                # to wait.
                delay = backoff
                if isinstance(e, errors.APIError) and e.retry_after is not None and e.status in (429, 503):
                    delay = max(backoff, e.retry_after)
                self._log.warning("node %s: %s (retrying in %.1fs)", self.id, e, delay)
                self._wake.wait(delay)
                backoff = min(backoff * 2, BACKOFF_MAX)
                next_beat = 0.0
        self._transport.close()  # this thread's kept-alive connections
        self._drop_poll_connection()

    def _beat(self) -> bool:
        """One heartbeat: tells the server what the node uses, adopts the
        answer. False when another live process holds the node ID (409)."""
        with self._cv:
            held = self._held_locked()
            ack = self._cur.epoch
            session = self._session
            ttl = self._ttl
        body = {"ip": self.ip, "preferred": self.preferred, "held": held, "ack": ack}
        sent = time.monotonic()
        try:
            resp = self._transport.request(
                "POST", self._path + "/heartbeat", body, session=session, timeout=min(self._transport.timeout, ttl)
            )
        except errors.Forbidden as e:
            if not session:
                raise
            # The session is gone: another process took the ID after a
            # silence past the TTL, or an operator evicted the node. Its
            # groups are not ours: stop using them, then join again.
            self._displaced(e)
            return self._beat()
        except errors.Conflict as e:
            if session:
                raise
            if not self._logged_waiting:
                self._log.warning("node %s is in use by another process (%s); waiting", self.id, e)
                self._logged_waiting = True
            with self._cv:
                self._last_error = e
                self._cv.notify_all()
            return False
        reply = resp.body
        if not isinstance(reply, dict) or not isinstance(reply.get("session"), str) or not reply["session"]:
            raise errors.AllotError("allot: heartbeat: answer without a session")
        self._logged_waiting = False
        with self._cv:
            # The session is the node's from now on, even if the rest of the
            # answer cannot be read: the next beat and close() need it.
            self._session = reply["session"]
            if self._closing:
                return True  # close() is leaving with it
        try:
            a = Assignment.from_json(reply)
        except ValueError as e:
            raise errors.AllotError("allot: heartbeat: %s" % e) from None
        with self._cv:
            if session and reply["session"] != session:
                self._log.info("node %s: the server gave a new session (the old one ended)", self.id)
            elif not session:
                self._log.info("node %s joined %s", self.id, self._transport.url)
            self._ever_joined = True
            self._last_error = None
            interval, ttl_ms = reply.get("interval_ms"), reply.get("ttl_ms")
            if isinstance(interval, (int, float)) and not isinstance(interval, bool) and interval > 0:
                self._interval = interval / 1000.0
            if isinstance(ttl_ms, (int, float)) and not isinstance(ttl_ms, bool) and ttl_ms > 0:
                self._ttl = ttl_ms / 1000.0
            self._lease_until = sent + self._ttl
            self._voided -= set(a.names)
            self._apply_locked(a)
            self._cv.notify_all()
        return True

    def _poll(self, seconds: float) -> None:
        """Long-polls for an assignment newer than the node's, for at most
        seconds; close() and released groups interrupt it. The poll keeps
        its own connection alive from one poll to the next (no handshake
        per poll); the interrupt shuts that connection's socket down."""
        ms = max(1, int(seconds * 1000))
        timeout = seconds + self._transport.timeout
        for attempt in (0, 1):
            with self._cv:
                if self._interrupted:
                    self._interrupted = False
                    return
                session = self._session
                epoch = self._cur.epoch
                reused = self._pconn is not None
                if self._pconn is None:
                    self._pconn = self._transport.new_connection(timeout)
                conn = self._pconn
                self._poll_conn = conn
            path = self._path + "/assignment?after=%d&wait=%dms" % (epoch, ms)
            try:
                resp = self._transport.request("GET", path, session=session, timeout=timeout, conn=conn)
            except errors.ConnectionFailed:
                self._drop_poll_connection()
                with self._cv:
                    if self._interrupted:
                        self._interrupted = False
                        return
                if reused and attempt == 0:
                    continue  # the server closed the idle connection: poll again on a new one
                raise
            except errors.Unavailable as e:
                if e.retry_after is None:
                    raise
                # The server refused the long poll (its long polls are full,
                # or Redis is away): the next beat brings the assignment
                # instead.
                if not self._logged_polls_full:
                    self._log.warning("node %s: long poll refused: %s; waiting for the next heartbeat", self.id, e)
                    self._logged_polls_full = True
                self._wake.wait(min(seconds, max(e.retry_after, _MIN_POLL)))
                return
            except errors.Forbidden as e:
                self._displaced(e)
                self._wake.set()  # join again at once
                return
            finally:
                with self._cv:
                    self._poll_conn = None
            break
        self._logged_polls_full = False
        if not isinstance(resp.body, dict):
            return
        try:
            a = Assignment.from_json(resp.body)
        except ValueError as e:
            raise errors.AllotError("allot: assignment: %s" % e) from None
        with self._cv:
            if not self._closing and self._session == session:
                self._apply_locked(a)

    def _drop_poll_connection(self) -> None:
        with self._cv:
            conn, self._pconn = self._pconn, None
        if conn is not None:
            conn.close()

    def _interrupt(self) -> None:
        """Ends the long poll in flight (or the next one) at once."""
        with self._cv:
            self._interrupted = True
            conn = self._poll_conn
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _beat_now(self) -> None:
        self._wake.set()
        self._interrupt()

    def _displaced(self, err: errors.AllotError) -> None:
        self._log.warning("node %s: session lost (%s); re-joining", self.id, err)
        with self._cv:
            self._session = ""
            if self._cur.groups or self._cur.epoch:
                self._publish_locked(Assignment())

    def _apply_locked(self, a: Assignment) -> None:
        """Adopts a newer assignment; an older answer overtaken by a newer
        one is dropped."""
        cur = self._cur
        if a.epoch < cur.epoch or a == cur:
            return
        if a.same_groups(cur):
            self._cur = a  # an epoch elsewhere in the pool: no callback
            return
        self._publish_locked(a)

    def _publish_locked(self, a: Assignment) -> None:
        old = self._cur
        self._cur = a
        self._queue.append((old, a, tuple(self._listeners), False))
        self._undelivered += 1
        self._cv.notify_all()

    def _held_locked(self) -> List[str]:
        """What the node uses: the current groups plus those whose removal
        the callbacks have not yet heard of, except capped groups a lapse
        voided (the node has no claim on them)."""
        held = set(self._cur.names)
        held.update(g for g in self._delivered if g not in self._voided)
        return sorted(held)

    # ---- the callback thread ----

    def _dispatch(self) -> None:
        """Runs the callbacks of every queued change in order, and ends the
        use of capped groups once the lease lapses. After the callbacks of a
        change return, the groups it dropped stop being reported as held,
        and a beat is sent at once so a waiting node gets a released capped
        group without delay."""
        while True:
            with self._cv:
                while not self._queue and not self._dispatch_stop:
                    wait = self._lapse_wait_locked()
                    if wait is not None and wait <= 0:
                        self._lapse_locked()
                        continue
                    self._cv.wait(wait)
                if not self._queue:
                    return
                old, new, listeners, initial = self._queue.popleft()
            for fn in listeners:
                try:
                    fn(old, new)
                except Exception:  # a callback's bug must not stop the node
                    self._log.exception("node %s: on_change callback raised", self.id)
            released = False
            with self._cv:
                if not initial:
                    released = any(not new.holds(g) for g in self._delivered)
                    self._delivered = new.names
                    self._voided = {g for g in self._voided if g in self._delivered}
                self._undelivered -= 1
                self._cv.notify_all()
            if released and not self._closing:
                self._beat_now()

    def _lapse_wait_locked(self) -> Optional[float]:
        """Seconds until the lease lapses while the node uses capped
        groups; None when it uses none."""
        if not any(g.max_nodes for g in self._cur.groups) or self._closing:
            return None
        return self._lease_until - time.monotonic()

    def _lapse_locked(self) -> None:
        cur = self._cur
        kept = tuple(g for g in cur.groups if not g.max_nodes)
        self._voided.update(g.name for g in cur.groups if g.max_nodes)
        self._log.warning(
            "node %s: lease lapsed: capped groups dropped (no successful heartbeat for %.1fs)", self.id, self._ttl
        )
        self._publish_locked(Assignment(epoch=cur.epoch, groups=kept))


def _unexpected(exc: Exception, log: logging.Logger, node: str) -> errors.AllotError:
    """An error the heartbeat thread did not expect (a server answer of an
    unexpected shape): logged with its traceback, then retried as any."""
    log.error("node %s: unexpected error in the heartbeat thread", node, exc_info=exc)
    return errors.AllotError("allot: %s: %s" % (type(exc).__name__, exc))


def _fatal(e: errors.AllotError) -> bool:
    """Whether e refuses a join for good."""
    return isinstance(e, errors.APIError) and e.status in _FATAL_STATUSES and not isinstance(e, errors.SessionLost)


def _local_ip(host: str) -> str:
    """The local address the OS would use to reach host (no packet is
    sent); 127.0.0.1 when there is none."""
    try:
        infos = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)
    except OSError:
        return "127.0.0.1"
    for family, kind, proto, _, addr in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.connect(addr)
                return str(s.getsockname()[0])
        except OSError:
            continue
    return "127.0.0.1"

