"""A tiny allot node-protocol server for the unit tests: it keeps sessions,
an assignment and an epoch, long-polls, and records every request. Tests
change its state, or script the answers of a route, to drive the client
through what a real server does (the integration tests use a real one).
"""

from __future__ import annotations

import http.server
import json
import os
import ssl
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Tuple

Answer = Tuple[int, Dict[str, str], Any]

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")
#: The fake's self-signed certificate (127.0.0.1 and localhost, valid
#: until 2126): the CA bundle of the https tests.
CERT = os.path.join(TESTDATA, "localhost.pem")


class Request:
    """One request the fake received."""

    def __init__(
        self, method: str, path: str, query: Dict[str, str], headers: Dict[str, str], body: Any, port: int = 0
    ) -> None:
        self.port = port  # the client's port: one per connection
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.at = time.monotonic()

    @property
    def route(self) -> str:
        """The request's route with the node ID and lease replaced: "POST heartbeat"."""
        parts = self.path.split("/")
        # /v1/nodes/{id}[/heartbeat|/assignment|/acquire|/report|/leases/{l}/settle]
        if len(parts) == 4:
            return self.method + " node"
        if len(parts) >= 7 and parts[4] == "leases":
            return self.method + " " + parts[6]
        return self.method + " " + parts[4]

    @property
    def session(self) -> str:
        return self.headers.get("allot-session", "")

    def __repr__(self) -> str:
        return "Request(%s %s %r)" % (self.method, self.path, self.body)


class FakeAllot:
    """The fake server's state. Every public method is safe from any thread."""

    def __init__(self, interval_ms: int = 200, ttl_ms: int = 5000, tls: bool = False) -> None:
        self.mu = threading.Condition()
        self.interval_ms = interval_ms
        self.ttl_ms = ttl_ms
        self.epoch = 1
        self.groups: List[Dict[str, Any]] = []
        self.sessions: Dict[str, str] = {}  # node id -> session
        self.in_use: Dict[str, bool] = {}  # node id -> another process holds it
        self.requests: List[Request] = []
        # route ("POST acquire") -> a function of the request returning an
        # answer, or None to fall back to the default behaviour.
        self.scripts: Dict[str, Callable[[Request], Optional[Answer]]] = {}
        self._next_session = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.tls = tls
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(CERT, os.path.join(TESTDATA, "localhost-key.pem"))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return "%s://%s:%d" % ("https" if self.tls else "http", host, port)

    def close(self) -> None:
        """Stops serving and waits for the server thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        with self.mu:
            self.mu.notify_all()

    # ---- state the tests change ----

    def set_groups(self, groups: List[Dict[str, Any]], bump: bool = True) -> None:
        """Replaces the assignment every node gets; bump moves the epoch."""
        with self.mu:
            self.groups = groups
            if bump:
                self.epoch += 1
            self.mu.notify_all()

    def bump(self) -> None:
        """Moves the epoch without changing the groups."""
        with self.mu:
            self.epoch += 1
            self.mu.notify_all()

    def forget(self, node: str) -> None:
        """Drops node's session, as an eviction does."""
        with self.mu:
            self.sessions.pop(node, None)
            self.mu.notify_all()

    def script(self, route: str, fn: Callable[[Request], Optional[Answer]]) -> None:
        with self.mu:
            self.scripts[route] = fn

    def seen(self, route: Optional[str] = None) -> List[Request]:
        with self.mu:
            return [r for r in self.requests if route is None or r.route == route]

    def wait_for(self, cond: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Polls cond (under no lock) until true or the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.005)
        return cond()

    # ---- the protocol ----

    def _assignment(self, node: str) -> Dict[str, Any]:
        return {
            "epoch": self.epoch,
            "node": node,
            "groups": self.groups,
            "interval_ms": self.interval_ms,
            "ttl_ms": self.ttl_ms,
        }

    def handle(self, req: Request) -> Answer:
        with self.mu:
            self.requests.append(req)
            fn = self.scripts.get(req.route)
        if fn is not None:
            ans = fn(req)
            if ans is not None:
                return ans
        parts = req.path.split("/")
        if len(parts) < 4 or parts[1] != "v1" or parts[2] != "nodes":
            return _error(404, "not_found", "no route")
        node = urllib.parse.unquote(parts[3])
        route = req.route
        with self.mu:
            if route == "POST heartbeat":
                held = self.sessions.get(node)
                if req.session and held != req.session:
                    if held is None and not self.in_use.get(node):
                        pass  # a free ID: the server hands out a new session
                    else:
                        return _error(403, "forbidden", "wrong Allot-Session for node %s" % node)
                if not req.session and (held is not None or self.in_use.get(node)):
                    return _error(409, "conflict", "node %s is in use by another process" % node)
                if not req.session or held != req.session:
                    self._next_session += 1
                    self.sessions[node] = "s%08d" % self._next_session
                a = self._assignment(node)
                a["session"] = self.sessions[node]
                return 200, {}, a
            if self.sessions.get(node) != req.session or not req.session:
                return _error(403, "forbidden", "wrong Allot-Session header for node %s; re-join" % node)
            if route == "GET assignment":
                after = int(req.query.get("after", "-1"))
                wait = float(req.query.get("wait", "30000ms").rstrip("ms")) / 1000.0
                deadline = time.monotonic() + wait
                while self.epoch <= after and self.sessions.get(node) == req.session:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.mu.wait(left)
                return 200, {}, self._assignment(node)
            if route == "DELETE node":
                del self.sessions[node]
                self.mu.notify_all()
                return 204, {}, None
            if route == "POST acquire":
                g = self.groups[0] if self.groups else {"name": "", "config": {}}
                return 200, {}, {
                    "lease": "lease/%d+%s" % (len(self.requests), node),
                    "group": g["name"],
                    "config": g.get("config", {}),
                    "borrowed": False,
                    "expires_ms": int(time.time() * 1000) + 60000,
                }
            if route in ("POST settle", "POST observe"):
                return 200, {}, {"ok": True}
            if route == "POST report":
                return 200, {}, {"group": req.body.get("group"), "state": "active", "cooling_until": 0, "failures": 0}
        return _error(404, "not_found", "no route %s" % route)


def _error(status: int, code: str, message: str, headers: Optional[Dict[str, str]] = None) -> Answer:
    return status, headers or {}, {"error": {"code": code, "message": message}}


def error(status: int, code: str, message: str, headers: Optional[Dict[str, str]] = None) -> Answer:
    """An answer in the server's error shape."""
    return _error(status, code, message, headers)


def _handler(fake: FakeAllot) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as allot serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            body = json.loads(raw) if raw else None
            query = dict(urllib.parse.parse_qsl(url.query))
            headers = {k.lower(): v for k, v in self.headers.items()}
            req = Request(self.command, url.path, query, headers, body, self.client_address[1])
            status, extra, out = fake.handle(req)
            data = b"" if out is None else json.dumps(out).encode()
            try:
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client went away (an interrupted long poll)

        do_GET = do_POST = do_DELETE = _serve

    return Handler
