#!/usr/bin/env python3
"""A minimal allot node in Python, standard library only.

It speaks allot's HTTP node protocol to `allot serve`:

  POST   /v1/nodes/{id}/heartbeat              join / beat; answers with the assignment
  GET    /v1/nodes/{id}/assignment?after=E&wait=D   long-poll for an assignment newer than E
  DELETE /v1/nodes/{id}                        leave: its groups move at once
  POST   /v1/nodes/{id}/report                 what the upstream answered (see report())

The first heartbeat's answer carries a `session`; every later request sends it
in the Allot-Session header. A node ID is one process's at a time: while
another live process holds it, joining answers 409 and the node waits.

Environment:
  ALLOT_URL         server URL (default http://127.0.0.1:7070)
  ALLOT_NODE_ID     node ID (default: host name)
  ALLOT_NODE_IP     IP used for the allocation hash (default: the local address that reaches the server)
  ALLOT_GROUP       preferred group (optional)
  ALLOT_NODE_TOKEN  bearer token of the node role (optional)

It prints one line per change, e.g. `epoch=12 groups=alpha@v3`, and leaves the
pool on SIGINT or SIGTERM. Copy it and replace on_change with your own code.
"""

import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_URL = "http://127.0.0.1:7070"


# Retry delays while the server is unreachable: doubling from the first to
# the cap, so a long outage costs the server little when it comes back.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0


class Stop(Exception):
    """Raised by the signal handler to break out of a blocking call."""


class HTTPStatusError(RuntimeError):
    """The server answered with an error status."""

    def __init__(self, status, message, retry_after=None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds from Retry-After, or None


def retry_after(headers):
    """Retry-After in seconds (429 and 503 answers carry it), or None."""
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except (TypeError, ValueError):
        return None


class Node:
    def __init__(self, url, node_id, ip, preferred="", token=""):
        self.url = url.rstrip("/")
        self.id = node_id
        self.ip = ip
        self.preferred = preferred
        self.token = token
        self.epoch = 0
        self.groups = []  # [{"name", "version", "config", "share", "quota"}]
        self.interval = 2.0  # seconds; the server tells us the real value
        self.ttl = 6.0
        self.session = ""  # ours once the first heartbeat answers
        self.waiting_logged = False
        self.polls_full_logged = False
        self.lease_until = 0.0  # monotonic: last successful beat sent + TTL

    # ---- HTTP ----

    def _request(self, method, path, body=None, timeout=10.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        if self.session:
            req.add_header("Allot-Session", self.session)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)["error"]
                msg = "%s: %s" % (err.get("code"), err.get("message"))
            except (ValueError, KeyError, TypeError):
                msg = raw.decode(errors="replace").strip() or e.reason
            raise HTTPStatusError(e.code, "%s %s: HTTP %d %s" % (method, path, e.code, msg),
                                  retry_after(e.headers)) from None

    def _path(self, suffix=""):
        return "/v1/nodes/" + urllib.parse.quote(self.id, safe="") + suffix

    # ---- protocol ----

    def beat(self):
        """One heartbeat: tells the server what we hold, gets our assignment.

        Returns False when the node ID is in use by another live process
        (HTTP 409): the caller waits an interval and tries again."""
        body = {
            "ip": self.ip,
            "preferred": self.preferred,
            "held": [g["name"] for g in self.groups],
            "ack": self.epoch,
        }
        sent = time.monotonic()
        try:
            _, reply = self._request("POST", self._path("/heartbeat"), body)
        except HTTPStatusError as e:
            if e.status == 403 and self.session:
                # Our session is gone: we went silent past the TTL and another
                # process took the ID. Its groups are not ours: stop using
                # them, then join again with a new session.
                self._displaced(e)
                return self.beat()
            elif e.status == 409:
                if not self.waiting_logged:
                    print("waiting: %s" % e, file=sys.stderr, flush=True)
                    self.waiting_logged = True
                return False
            else:
                raise
        self.waiting_logged = False
        self.session = reply.get("session") or self.session
        if reply.get("interval_ms"):
            self.interval = reply["interval_ms"] / 1000.0
        if reply.get("ttl_ms"):
            self.ttl = reply["ttl_ms"] / 1000.0
        self.lease_until = sent + self.ttl
        self._apply(reply)
        return True

    def drop_capped_if_lapsed(self):
        """Stops using capped groups (max_nodes > 0) once no beat has
        succeeded for a TTL: the server may have handed them on. The next
        successful heartbeat's answer gives them back if they are still ours."""
        if time.monotonic() < self.lease_until:
            return
        kept = [g for g in self.groups if not g.get("max_nodes")]
        if len(kept) != len(self.groups):
            print("lease lapsed: capped groups dropped", file=sys.stderr, flush=True)
            self.groups = kept
            on_change(self)

    def _displaced(self, err):
        print("session lost (%s); re-joining" % err, file=sys.stderr, flush=True)
        self.session = ""
        self.epoch = 0
        if self.groups:
            self.groups = []
            on_change(self)

    def wait_for_change(self, seconds):
        """Long-polls for an assignment newer than ours, for at most `seconds`."""
        ms = max(1, int(seconds * 1000))
        path = self._path("/assignment?after=%d&wait=%dms" % (self.epoch, ms))
        try:
            status, reply = self._request("GET", path, timeout=seconds + 10.0)
        except HTTPStatusError as e:
            if e.status == 503 and e.retry_after is not None:
                # The server refused the long poll (its long polls are full,
                # or Redis is away): the next heartbeat brings the assignment
                # instead. Wait for it rather than poll again at once.
                if not self.polls_full_logged:
                    print("long poll refused: %s; waiting for the next heartbeat" % e, file=sys.stderr, flush=True)
                    self.polls_full_logged = True
                time.sleep(min(seconds, max(e.retry_after, 0.05)))
                return
            if e.status != 403:
                raise
            self._displaced(e)  # the next beat joins again
            return
        self.polls_full_logged = False
        if status == 200 and reply:
            self._apply(reply)

    def leave(self):
        if not self.session:
            return  # never joined, or the ID is another process's now
        try:
            self._request("DELETE", self._path(), timeout=5.0)
            print("left", flush=True)
        except (OSError, RuntimeError) as e:
            print("leave failed: %s" % e, file=sys.stderr, flush=True)

    def _apply(self, reply):
        epoch = int(reply.get("epoch") or 0)
        groups = reply.get("groups") or []
        old = [(g["name"], g.get("version")) for g in self.groups]
        new = [(g["name"], g.get("version")) for g in groups]
        if epoch < self.epoch:
            return  # an older answer overtaken by a newer one
        changed = epoch != self.epoch or old != new
        self.epoch, self.groups = epoch, groups
        if changed:
            on_change(self)

    # ---- main loop ----

    def run(self):
        """Beats every interval and long-polls in between, until Stop."""
        backoff = BACKOFF_FIRST
        next_beat = 0.0
        while True:
            try:
                if time.monotonic() >= next_beat:
                    joined = self.beat()
                    next_beat = time.monotonic() + self.interval
                    backoff = BACKOFF_FIRST
                    if not joined:
                        time.sleep(self.interval)  # the ID is taken: wait
                        continue
                remaining = next_beat - time.monotonic()
                if remaining > 0.05 and self.session:
                    self.wait_for_change(remaining)
            except (OSError, RuntimeError, ValueError) as e:
                # Keep serving the current assignment, but not capped groups
                # past the lease: the server moves our groups if we stay
                # silent past the TTL. A 429 (too many joins for our token)
                # says how long to wait.
                delay = backoff
                if isinstance(e, HTTPStatusError) and e.status == 429 and e.retry_after is not None:
                    delay = max(backoff, e.retry_after)
                print("error: %s (retrying in %.1fs)" % (e, delay), file=sys.stderr, flush=True)
                self.drop_capped_if_lapsed()
                time.sleep(delay)
                backoff = min(backoff * 2, BACKOFF_MAX)
                next_beat = 0.0


def report(node, group, outcome, retry_after_ms=None, reason=""):
    """Tells the pool what the upstream API answered to a call made with
    `group`'s key, so every holder reacts at once (POST /v1/nodes/{id}/report).

    outcome: "throttled" (HTTP 429; pass its Retry-After in ms, or None when
    it gave none: the pool cools 1 s, doubling on repeats up to 60 s),
    "failure" (401/403: counted towards the group's eject_after; at the
    threshold the group is suspended and its holders move), or "success"
    (2xx; three in a row bring a probing group back). Do not report 5xx or
    network errors: they say nothing about the key. `reason` is shown in
    events and the UI (at most 200 bytes): never put a secret in it.

    Returns the server's answer: {"group", "state", "cooling_until" (Unix ms;
    do not call the upstream with this key before then), "failures",
    "transition"}. Raises RuntimeError (HTTP 409) when the node no longer
    holds the group or its lease lapsed: such a report is ignored.
    """
    body = {"group": group, "outcome": outcome, "reason": reason}
    if retry_after_ms is not None:
        body["retry_after_ms"] = int(retry_after_ms)
    _, reply = node._request("POST", node._path("/report"), body, timeout=5.0)
    return reply


def on_change(node):
    """Called on every change of epoch or group version. Replace with your code."""
    names = ",".join("%s@v%s" % (g["name"], g.get("version")) for g in node.groups) or "-"
    # Each g["config"] holds the group's keys (real secret values: the node
    # role receives them) and g["share"] is this node's part of the quota.
    print("epoch=%d groups=%s" % (node.epoch, names), flush=True)


def local_ip(url):
    """The local address the OS would use to reach the server (no packet is sent)."""
    host = urllib.parse.urlsplit(url).hostname or "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def main():
    url = os.environ.get("ALLOT_URL") or DEFAULT_URL
    node = Node(
        url=url,
        node_id=os.environ.get("ALLOT_NODE_ID") or socket.gethostname(),
        ip=os.environ.get("ALLOT_NODE_IP") or local_ip(url),
        preferred=os.environ.get("ALLOT_GROUP", ""),
        token=os.environ.get("ALLOT_NODE_TOKEN", ""),
    )

    def stop(signum, frame):
        raise Stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print("node %s (%s) joining %s" % (node.id, node.ip, node.url), flush=True)
    try:
        node.run()
    except Stop:
        pass
    finally:
        # A second signal while leaving must not skip the leave.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        node.leave()
    return 0


if __name__ == "__main__":
    sys.exit(main())
