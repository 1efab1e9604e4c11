"""Integration tests of Node against a real `allot serve` and redis-server
(started by server/python_client_test.go; see realserver.py): join,
heartbeat, config, on_change after a group update, session loss and
re-join, reports, close."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import unittest
from typing import Any, List

import support
from realserver import Admin, env, parse_time, unique
from support import eventually

import allot
from allot import Assignment

SECRET = "sk-int-0123456789abcdef"


class NodeIntegrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.env = env()
        cls.url = cls.env["ALLOT_TEST_URL"]
        cls.admin = Admin(cls.url, cls.env["ALLOT_TEST_ADMIN_TOKEN"])

    def setUp(self) -> None:
        self.group = unique("pyg")
        self.admin.add_group(self.group, {"api_key": SECRET, "region": "us"}, secret=("api_key",))
        self.addCleanup(self.admin.delete_group, self.group)

    def start(self, **kw: Any) -> allot.Node:
        kw.setdefault("node_id", unique("py-n"))
        token = kw.pop("token", self.env["ALLOT_TEST_NODE_TOKEN"])
        node = allot.Node(self.url, token, **kw)
        self.addCleanup(node.close)
        return node

    def test_join_heartbeat_config_and_leave(self) -> None:
        node = self.start(ip="10.20.30.40")
        eventually(lambda: node.assignment.holds(self.group), what="the group")
        self.assertEqual(SECRET, node.config("api_key", group=self.group))
        self.assertEqual("us", node.config("region", group=self.group))
        self.assertEqual(0.2, node.interval, "the server's interval")
        self.assertEqual(60.0, node.ttl)
        listed = self.admin.nodes()[node.id]
        self.assertEqual("10.20.30.40", listed["ip"])
        self.assertIn(self.group, listed["groups"])

        # The beats go on: the server sees the node again and again.
        first = parse_time(listed["last_seen"])
        eventually(
            lambda: parse_time(self.admin.nodes()[node.id]["last_seen"]) >= first + 3 * node.interval,
            what="three more beats",
        )

        self.assertTrue(node.close())
        self.assertNotIn(node.id, self.admin.nodes(), "gone at once, not after the TTL")
        self.assertFalse(node.joined)
        self.assertEqual((), node.groups)

    def test_on_change_after_a_group_update(self) -> None:
        calls: List[Any] = []

        def cb(old: Assignment, new: Assignment) -> None:
            g = new.group(self.group)
            calls.append((g.version if g else 0, dict(g.config) if g else {}, threading.current_thread().name))

        node = self.start(on_change=cb)
        eventually(lambda: any(c[0] == 1 for c in calls), what="version 1")
        self.admin.update_group(self.group, set={"region": "eu"})
        eventually(lambda: any(c[0] == 2 for c in calls), what=lambda: "version 2 in %r" % ([c[0] for c in calls],))
        v2 = [c for c in calls if c[0] == 2][0]
        self.assertEqual("eu", v2[1]["region"])
        self.assertEqual(SECRET, v2[1]["api_key"])
        self.assertEqual("allot-callbacks-" + node.id, v2[2])
        self.assertEqual("eu", node.config("region", group=self.group))

    def test_session_lost_and_rejoin(self) -> None:
        seen: List[bool] = []
        node = self.start(on_change=lambda old, new: seen.append(new.holds(self.group)))
        eventually(lambda: node.assignment.holds(self.group), what="the group")
        old = node.session
        # An operator evicts the node and, at once, another process takes its ID.
        intruder = ""
        deadline = time.monotonic() + 10
        while not intruder:
            self.assertLess(time.monotonic(), deadline, "the intruder never got the ID")
            self.admin.evict(node.id)
            status, out = self.admin.call(
                "POST", "/v1/nodes/%s/heartbeat" % node.id, {"ip": "10.9.9.9"}, token=self.env["ALLOT_TEST_NODE_TOKEN"]
            )
            if status == 200:
                intruder = out["session"]  # else the node re-joined first: evict again
        eventually(lambda: node.session != old, what="the session dropped")
        eventually(lambda: seen and seen[-1] is False, what="the node stops using its groups")
        status, _ = self.admin.call(
            "DELETE", "/v1/nodes/" + node.id, token=self.env["ALLOT_TEST_NODE_TOKEN"], session=intruder
        )
        self.assertEqual(204, status)
        eventually(lambda: node.joined and node.assignment.holds(self.group), what="the re-join")
        self.assertNotEqual(old, node.session)
        self.assertTrue(seen[-1])
        self.assertEqual(node.ip, self.admin.nodes()[node.id]["ip"], "the ID is the node's again, not the intruder's")

    def test_a_token_bound_to_other_ids_is_refused(self) -> None:
        token = self.env["ALLOT_TEST_PY_TOKEN"]
        with self.assertRaises(allot.Forbidden) as cm:
            allot.Node(self.url, token, node_id=unique("other"))
        self.assertIn("HTTP 403", str(cm.exception))
        self.assertNotIn(token, str(cm.exception))
        node = self.start(token=token, node_id=unique("py-bound"))
        self.assertTrue(node.joined)

    def test_an_unknown_token_is_refused(self) -> None:
        with self.assertRaises(allot.Unauthorized) as cm:
            allot.Node(self.url, "not-a-token-0123456789", node_id=unique("py-x"))
        self.assertIn("HTTP 401", str(cm.exception))

    def test_report_cools_the_group_for_everyone(self) -> None:
        node = self.start()
        eventually(lambda: node.assignment.holds(self.group), what="the group")
        answer = node.report(self.group, "throttled", retry_after=30)
        self.assertEqual(self.group, answer["group"])
        self.assertAlmostEqual(time.time() + 30, answer["cooling_until"] / 1000.0, delta=3)
        with self.assertRaises(allot.NotFound) as cm:
            node.report(unique("nope"), "failure")
        self.assertIn("HTTP 404", str(cm.exception))

    def test_cli_node(self) -> None:
        node_id = unique("py-cli")
        e = dict(os.environ, PYTHONPATH=support.SRC, PYTHONDONTWRITEBYTECODE="1", ALLOT_NODE_TOKEN=self.env["ALLOT_TEST_NODE_TOKEN"])
        r = subprocess.run(
            [sys.executable, "-m", "allot", "node", self.url, "--id", node_id, "--wait", "20"],
            env=e,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(0, r.returncode, r.stdout + r.stderr)
        self.assertIn("node %s" % node_id, r.stdout)
        self.assertIn("api_key=****cdef", r.stdout)
        self.assertNotIn(SECRET, r.stdout + r.stderr)
        self.assertTrue(r.stdout.rstrip().endswith("left"), r.stdout)
        self.assertNotIn(node_id, self.admin.nodes())


if __name__ == "__main__":
    unittest.main()
