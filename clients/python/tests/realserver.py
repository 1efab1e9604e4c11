"""The real server of the integration tests: a running `allot serve` (with
its own redis-server) that server/python_client_test.go starts and names in
the environment:

    ALLOT_TEST_URL          the server
    ALLOT_TEST_ADMIN_TOKEN  an admin token (the tests add groups and evict nodes)
    ALLOT_TEST_NODE_TOKEN   a node token for any node ID
    ALLOT_TEST_PY_TOKEN     a node token bound to the IDs py-*

Run them with `go test ./server -run TestPythonClient`.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import re
import urllib.error
import urllib.request
from typing import Any, Dict, Optional, Tuple

_ids = itertools.count(1)


def env() -> Dict[str, str]:
    """The server's coordinates; an error naming the Go test that sets them
    when they are missing (these tests never pass without a server)."""
    keys = ("ALLOT_TEST_URL", "ALLOT_TEST_ADMIN_TOKEN", "ALLOT_TEST_NODE_TOKEN", "ALLOT_TEST_PY_TOKEN")
    missing = [k for k in keys if not os.environ.get(k)]
    if missing:
        raise RuntimeError(  # fail, never skip: these tests need the server
            "%s not set: the integration tests run against a real server; "
            "run them with `go test ./server -run TestPythonClient`" % ", ".join(missing)
        )
    return {k: os.environ[k] for k in keys}


def unique(prefix: str) -> str:
    """A name no other test of this run uses."""
    return "%s-%d-%d" % (prefix, os.getpid(), next(_ids))


class Admin:
    """The admin API, for what the tests do to the pool."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, token: Optional[str] = None, session: str = "") -> Tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + (token or self.token))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if session:
            req.add_header("Allot-Session", session)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def must(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.call(method, path, body)
        if status >= 300:
            raise AssertionError("%s %s: HTTP %d %r" % (method, path, status, out))
        return out

    def add_group(self, name: str, config: Dict[str, str], secret: Tuple[str, ...] = (), **kw: Any) -> Any:
        body = {"name": name, "config": config, "secret_keys": list(secret)}
        body.update(kw)
        return self.must("POST", "/v1/groups", body)

    def update_group(self, name: str, **change: Any) -> Any:
        return self.must("PATCH", "/v1/groups/" + name, change)

    def delete_group(self, name: str) -> None:
        self.call("POST", "/v1/groups/%s/retire" % name, {})
        self.call("DELETE", "/v1/groups/" + name)

    def nodes(self) -> Dict[str, Any]:
        return {n["id"]: n for n in self.must("GET", "/v1/nodes")}

    def evict(self, node: str) -> None:
        self.must("DELETE", "/v1/nodes/" + node)

    def beats(self, node_route: str = "POST /v1/nodes/{id}/heartbeat") -> int:
        """How many heartbeats the server answered 200 (its metrics)."""
        req = urllib.request.Request(self.url + "/metrics")
        req.add_header("Authorization", "Bearer " + self.token)
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
        want = 'allot_http_requests_total{code="200",route="%s"} ' % node_route
        for line in text.splitlines():
            if line.startswith(want):
                return int(float(line[len(want):]))
        return 0


def parse_time(text: str) -> float:
    """Unix seconds of an RFC 3339 time as the API writes it (Go's
    time.Time: nanoseconds, Z or an offset)."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        raise ValueError("not an RFC 3339 time: %r" % text)
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()
    if m.group(3) != "Z":
        sign = 1 if m.group(3)[0] == "+" else -1
        t -= sign * (int(m.group(3)[1:3]) * 3600 + int(m.group(3)[4:6]) * 60)
    return t + (float(m.group(2)) if m.group(2) else 0.0)

