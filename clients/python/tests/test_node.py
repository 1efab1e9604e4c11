"""Unit tests of Node against the fake server (tests/fakeserver.py): the
requests it sends, how it follows its assignment and its session, and what
it shows."""

from __future__ import annotations

import logging
import socket
import threading
import time
import unittest
from typing import Any, List, Tuple

import support  # noqa: F401  (puts src/ on sys.path)
from fakeserver import FakeAllot, Request, error
from support import LogCapture, eventually

import allot
from allot import Assignment

SECRET = "sk-live-0123456789abcdef"
TOKEN = "node-token-never-shown"


def group(name: str, version: int = 1, **kw: Any) -> dict:
    g = {"name": name, "version": version, "config": {"api_key": SECRET}, "share": 1.0, "quota": "600/m"}
    g.update(kw)
    return g


class NodeTest(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeAllot()
        self.addCleanup(self.fake.close)
        self.nodes: List[allot.Node] = []

    def node(self, **kw: Any) -> allot.Node:
        kw.setdefault("node_id", "py-1")
        kw.setdefault("ip", "10.0.0.1")
        n = allot.Node(self.fake.url, kw.pop("token", TOKEN), **kw)
        self.nodes.append(n)
        self.addCleanup(n.close)
        return n

    def test_join_sends_token_and_reads_config(self) -> None:
        self.fake.set_groups([group("alpha")])
        n = self.node()
        self.assertTrue(n.joined)
        self.assertEqual(SECRET, n.config("api_key"))
        self.assertEqual(SECRET, n.config("api_key", group="alpha"))
        self.assertIsNone(n.config("missing"))
        self.assertEqual("d", n.config("missing", "d"))
        self.assertIsNone(n.config("api_key", group="beta"))
        self.assertEqual(("alpha",), n.assignment.names)
        self.assertEqual(0.2, n.interval)
        self.assertEqual(5.0, n.ttl)
        join = self.fake.seen("POST heartbeat")[0]
        self.assertEqual("Bearer " + TOKEN, join.headers["authorization"])
        self.assertEqual("", join.session, "the join sends no session")
        self.assertEqual({"ip": "10.0.0.1", "preferred": "", "held": [], "ack": 0}, join.body)
        self.assertEqual("/v1/nodes/py-1/heartbeat", join.path)

    def test_beats_every_interval_with_session_held_and_ack(self) -> None:
        self.fake.set_groups([group("alpha")])
        n = self.node()
        eventually(lambda: len(self.fake.seen("POST heartbeat")) >= 4, what="4 beats")
        beats = self.fake.seen("POST heartbeat")
        later = beats[3]
        self.assertEqual(n.session, later.session)
        self.assertEqual(["alpha"], later.body["held"])
        self.assertEqual(n.epoch, later.body["ack"])
        polls = self.fake.seen("GET assignment")
        self.assertTrue(polls, "long polls between beats")
        self.assertEqual(n.session, polls[0].session)

    def test_beats_and_polls_keep_their_connections_alive(self) -> None:
        self.fake.set_groups([group("alpha")])
        self.node()
        eventually(
            lambda: len(self.fake.seen("POST heartbeat")) >= 4 and len(self.fake.seen("GET assignment")) >= 4,
            what="4 beats and 4 polls",
        )
        beat_ports = {r.port for r in self.fake.seen("POST heartbeat")}
        poll_ports = {r.port for r in self.fake.seen("GET assignment")}
        self.assertEqual(1, len(beat_ports), "one connection for every beat")
        self.assertEqual(1, len(poll_ports), "one connection for every poll")
        self.assertFalse(beat_ports & poll_ports, "a poll has its own connection, so close can cut it")

    def test_a_malformed_answer_is_an_error_and_the_node_goes_on(self) -> None:
        self.fake.set_groups([group("alpha")])
        n = self.node()
        session = n.session
        with LogCapture("allot") as logs:
            self.fake.set_groups([group("alpha", 2, share=[1])])
            eventually(lambda: "share [1] is not a number" in logs.text, what="the error logged")
            self.fake.set_groups([group("alpha", 3)])
            eventually(lambda: n.assignment.group("alpha").version == 3, what="the node goes on")
        self.assertEqual(session, n.session, "the session survived the bad answer")
        self.assertNotIn("in use by another process", logs.text)

    def test_an_unexpected_error_does_not_stop_the_heartbeat_thread(self) -> None:
        from unittest import mock

        self.fake.set_groups([group("alpha")])
        n = self.node()
        with LogCapture("allot") as logs:
            with mock.patch.object(allot.Assignment, "from_json", side_effect=KeyError("a bug")):
                eventually(lambda: "unexpected error in the heartbeat thread" in logs.text, what="the error logged")
            self.fake.set_groups([group("alpha", 2)])
            eventually(lambda: n.assignment.group("alpha").version == 2, what="the node goes on")
        self.assertIn("KeyError", logs.text)

    def test_on_change_hears_a_poll_answer_on_its_own_thread_in_order(self) -> None:
        self.fake.set_groups([group("alpha")])
        calls: List[Tuple[int, int, str]] = []
        running = []
        overlap = []
        gate = threading.Event()

        def slow(old: Assignment, new: Assignment) -> None:
            running.append(1)
            if len(running) > 1:
                overlap.append(1)
            g = new.group("alpha")
            calls.append((g.version if g else 0, len(old.groups), threading.current_thread().name))
            if len(calls) == 1:
                gate.wait(5)  # the first call is slow: later changes queue
            running.pop()

        n = self.node(on_change=slow)
        eventually(lambda: len(calls) == 1, what="the first assignment")
        for v in (2, 3):
            self.fake.set_groups([group("alpha", v)])
            eventually(lambda v=v: n.assignment.group("alpha").version == v, what="v%d adopted" % v)
        gate.set()
        eventually(lambda: len(calls) == 3, what="three calls")
        self.assertEqual([1, 2, 3], [c[0] for c in calls], "in order")
        self.assertEqual([0, 1, 1], [c[1] for c in calls], "old assignments")
        self.assertEqual({"allot-callbacks-py-1"}, {c[2] for c in calls})
        self.assertEqual([], overlap, "never concurrent")

    def test_epoch_alone_calls_nobody(self) -> None:
        self.fake.set_groups([group("alpha")])
        calls = []
        n = self.node(on_change=lambda o, nw: calls.append(nw.epoch))
        eventually(lambda: len(calls) == 1)
        before = n.epoch
        self.fake.bump()
        eventually(lambda: n.epoch == before + 1, what="the new epoch")
        self.fake.set_groups([group("alpha", 2)])
        eventually(lambda: len(calls) == 2, what="the version change")
        self.assertEqual([before, before + 2], calls)

    def test_late_on_change_is_called_with_the_current_assignment(self) -> None:
        self.fake.set_groups([group("alpha")])
        n = self.node()
        got = []
        fn = n.on_change(lambda old, new: got.append((old.names, new.names)))
        self.assertTrue(callable(fn))
        eventually(lambda: got == [((), ("alpha",))], what=lambda: "the initial call, got %r" % (got,))

    def test_callback_exception_is_logged_and_later_calls_run(self) -> None:
        self.fake.set_groups([group("alpha")])
        got = []

        def bad(old: Assignment, new: Assignment) -> None:
            got.append(new.group("alpha").version if new.groups else 0)
            raise RuntimeError("boom")

        with LogCapture("allot") as logs:
            self.node(on_change=bad)
            eventually(lambda: got == [1])
            self.fake.set_groups([group("alpha", 2)])
            eventually(lambda: got == [1, 2])
            self.assertIn("on_change callback raised", logs.text)

    def test_session_lost_stops_using_groups_and_rejoins(self) -> None:
        self.fake.set_groups([group("alpha")])
        seen = []
        n = self.node(on_change=lambda o, nw: seen.append(nw.names))
        eventually(lambda: seen == [("alpha",)])
        first = n.session
        with LogCapture("allot") as logs:
            with self.fake.mu:
                self.fake.sessions["py-1"] = "someone-else"  # another process took the ID
                self.fake.mu.notify_all()
            eventually(lambda: () in seen, what="the groups dropped")
            self.fake.forget("py-1")  # ... and left
            eventually(lambda: seen[-1] == ("alpha",) and n.joined, what="the re-join")
            self.assertIn("session lost", logs.text)
        self.assertNotEqual(first, n.session)
        rejoin = [r for r in self.fake.seen("POST heartbeat") if r.session == "" and r.at > 0][1:]
        self.assertTrue(rejoin, "joined again without the old session")

    def test_waits_while_the_id_is_taken_and_says_so_once(self) -> None:
        self.fake.in_use["py-1"] = True
        with LogCapture("allot") as logs:
            n = self.node(start_timeout=0)
            eventually(lambda: len(self.fake.seen("POST heartbeat")) >= 2, what="two refused joins")
            self.assertFalse(n.joined)
            self.assertIsInstance(n.last_error, allot.Conflict)
            with self.assertRaises(allot.NotJoined):
                n.acquire(1)
            self.fake.in_use["py-1"] = False
            self.assertTrue(n.wait_joined(5))
        self.assertEqual(1, logs.text.count("HTTP 409"), logs.text)
        self.assertIn("in use by another process", logs.text)

    def test_bad_token_fails_the_start(self) -> None:
        self.fake.script("POST heartbeat", lambda r: error(401, "unauthorized", "unknown token"))
        t0 = time.monotonic()
        with self.assertRaises(allot.Unauthorized) as cm:
            self.node(start_timeout=10)
        self.assertLess(time.monotonic() - t0, 5, "a refused token is not retried until the timeout")
        self.assertIn("HTTP 401", str(cm.exception))
        self.assertNotIn(TOKEN, str(cm.exception))

    def test_token_not_allowed_this_id_fails_the_start(self) -> None:
        self.fake.script("POST heartbeat", lambda r: error(403, "forbidden", "token may not act for node py-1"))
        with self.assertRaises(allot.Forbidden) as cm:
            self.node(start_timeout=10)
        self.assertNotIsInstance(cm.exception, allot.SessionLost)

    def test_start_timeout_names_the_last_error(self) -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        with self.assertRaises(allot.NotJoined) as cm:
            allot.Node("http://127.0.0.1:%d" % port, TOKEN, node_id="py-1", start_timeout=0.3)
        self.assertIn("did not join", str(cm.exception))
        self.assertIn("last error", str(cm.exception))

    def test_close_tells_callbacks_then_leaves(self) -> None:
        self.fake.set_groups([group("alpha")])
        order: List[str] = []
        n = self.node(on_change=lambda o, nw: order.append("callback %s" % (nw.names,)))
        eventually(lambda: order == ["callback ('alpha',)"])
        session = n.session
        self.fake.script("DELETE node", lambda r: order.append("leave") and None)
        self.assertTrue(n.close())
        self.assertEqual(["callback ('alpha',)", "callback ()", "leave"], order)
        leave = self.fake.seen("DELETE node")[-1]
        self.assertEqual(session, leave.session)
        self.assertEqual("/v1/nodes/py-1", leave.path)
        self.assertFalse(n.joined)
        self.assertEqual((), n.groups)
        self.assertFalse(n.close(), "a second close does nothing")
        self.assertEqual(1, len(self.fake.seen("DELETE node")))
        self.assertFalse(n._loop.is_alive())
        self.assertFalse(n._dispatcher.is_alive())
        with self.assertRaises(allot.NotJoined):
            n.acquire(1)

    def test_close_interrupts_a_long_poll(self) -> None:
        self.fake.interval_ms = 30000  # polls last up to 30 s
        self.fake.set_groups([group("alpha")])
        n = self.node()
        eventually(lambda: len(self.fake.seen("GET assignment")) >= 1, what="a long poll")
        t0 = time.monotonic()
        n.close()
        self.assertLess(time.monotonic() - t0, 3.0, "close waited for the long poll")

    def test_close_from_a_callback_is_refused(self) -> None:
        self.fake.set_groups([group("alpha")])
        errs = []
        holder: List[allot.Node] = []

        def cb(old: Assignment, new: Assignment) -> None:
            try:
                holder[0].close()
            except allot.AllotError as e:
                errs.append(e)

        n = self.node(start_timeout=0)
        holder.append(n)
        n.on_change(cb)
        eventually(lambda: len(errs) == 1, what="the refusal")
        self.assertIn("on_change callback", str(errs[0]))

    def test_context_manager_leaves(self) -> None:
        self.fake.set_groups([group("alpha")])
        with allot.Node(self.fake.url, TOKEN, node_id="py-ctx", ip="10.0.0.2") as n:
            self.assertEqual(SECRET, n.config("api_key"))
        self.assertEqual(1, len(self.fake.seen("DELETE node")))
        self.assertFalse(n.joined)

    def test_dropped_group_stays_held_until_callbacks_return(self) -> None:
        self.fake.set_groups([group("alpha"), group("solo", max_nodes=1)])
        gate = threading.Event()
        calls = []

        def cb(old: Assignment, new: Assignment) -> None:
            calls.append(new.names)
            if not new.holds("solo"):
                gate.wait(10)

        n = self.node(on_change=cb)
        eventually(lambda: calls == [("alpha", "solo")])
        self.fake.set_groups([group("alpha")])
        eventually(lambda: len(calls) == 2, what="the drop reaches the callback")
        mark = time.monotonic()
        eventually(lambda: any(r.at > mark for r in self.fake.seen("POST heartbeat")), what="a beat during the callback")
        during = [r for r in self.fake.seen("POST heartbeat") if r.at > mark]
        self.assertIn("solo", during[0].body["held"], "still in use while the callback runs")
        released = time.monotonic()
        gate.set()
        eventually(
            lambda: any(r.at > released and r.body["held"] == ["alpha"] for r in self.fake.seen("POST heartbeat")),
            what="a beat without solo",
        )
        self.assertEqual(("alpha",), n.assignment.names)

    def test_capped_groups_dropped_when_no_beat_succeeds_for_a_ttl(self) -> None:
        self.fake.ttl_ms = 300
        self.fake.set_groups([group("alpha"), group("solo", max_nodes=1)])
        seen = []
        with LogCapture("allot") as logs:
            n = self.node(on_change=lambda o, nw: seen.append(nw.names))
            eventually(lambda: seen == [("alpha", "solo")])
            self.fake.script("POST heartbeat", lambda r: error(503, "unavailable", "redis unavailable"))
            self.fake.script("GET assignment", lambda r: error(503, "unavailable", "redis unavailable"))
            eventually(lambda: seen[-1] == ("alpha",), what="solo dropped")
            self.assertIn("lease lapsed: capped groups dropped", logs.text)
            self.assertIn("retrying in", logs.text)
            mark = time.monotonic()
            eventually(lambda: any(r.at > mark for r in self.fake.seen("POST heartbeat")), what="a beat after the lapse")
            after = [r for r in self.fake.seen("POST heartbeat") if r.at > mark][0]
            self.assertEqual(["alpha"], after.body["held"], "a voided group is not reported as held")
            # The server comes back: its answer gives solo back.
            self.fake.scripts.clear()
            eventually(lambda: seen[-1] == ("alpha", "solo"), what="solo back")
        self.assertTrue(n.joined)

    def test_refused_long_poll_waits_for_the_beat_and_says_so_once(self) -> None:
        self.fake.set_groups([group("alpha")])
        self.fake.script("GET assignment", lambda r: error(503, "unavailable", "long polls full", {"Retry-After": "1"}))
        with LogCapture("allot") as logs:
            n = self.node()
            eventually(lambda: len(self.fake.seen("GET assignment")) >= 3, what="three refused polls")
            self.fake.set_groups([group("alpha"), group("late")], bump=True)
            eventually(lambda: n.assignment.holds("late"), what="the beat brings the change")
        self.assertEqual(1, logs.text.count("long poll refused"), logs.text)
        polls = self.fake.seen("GET assignment")
        beats = self.fake.seen("POST heartbeat")
        self.assertLessEqual(len(polls), len(beats) + 1, "no poll spin: one poll per beat at most")

    def test_nothing_secret_in_repr_errors_or_logs(self) -> None:
        self.fake.set_groups([group("alpha")])
        self.fake.script("POST report", lambda r: error(409, "conflict", "node does not hold group"))
        with LogCapture("allot") as logs:
            n = self.node()
            self.assertNotIn(TOKEN, repr(n))
            self.assertIn("****", repr(n))
            self.assertNotIn(n.session, repr(n))
            g = n.groups[0]
            self.assertNotIn(SECRET, repr(g))
            self.assertIn("****cdef", repr(g))
            self.assertNotIn(SECRET, repr(n.assignment))
            with self.assertRaises(allot.Conflict) as cm:
                n.report("alpha", "failure")
            self.assertNotIn(TOKEN, str(cm.exception))
            n.close()
        self.assertNotIn(TOKEN, logs.text)
        self.assertNotIn(SECRET, logs.text)

    def test_https_with_a_ca_bundle(self) -> None:
        import ssl

        from fakeserver import CERT

        tls = FakeAllot(tls=True)
        self.addCleanup(tls.close)
        tls.set_groups([group("alpha")])
        self.assertTrue(tls.url.startswith("https://"))
        with self.assertRaises(allot.NotJoined) as cm:
            allot.Node(tls.url, TOKEN, node_id="py-tls", start_timeout=0.5)
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(cm.exception), "the system's CAs do not know the fake")
        with allot.Node(tls.url, TOKEN, node_id="py-tls", cafile=CERT) as n:
            self.assertEqual(SECRET, n.config("api_key"))
        with allot.Node(tls.url, TOKEN, node_id="py-tls", ssl_context=ssl.create_default_context(cafile=CERT)) as n:
            self.assertEqual(SECRET, n.config("api_key"))
        for kw in ({"cafile": CERT}, {"ssl_context": ssl.create_default_context()}):
            with self.assertRaises(ValueError, msg="https options on an http url"):
                allot.Node(self.fake.url, TOKEN, node_id="x", **kw)
        with self.assertRaises(ValueError, msg="both"):
            allot.Node(tls.url, TOKEN, node_id="x", cafile=CERT, ssl_context=ssl.create_default_context())

    def test_bad_arguments(self) -> None:
        for url in ("ftp://x", "127.0.0.1:7070", "http://user:pw@host:1", "http://h:1/?q=1"):
            with self.assertRaises(ValueError, msg=url) as cm:
                allot.Node(url, TOKEN, node_id="x")
            self.assertNotIn("pw", str(cm.exception))
        with self.assertRaises(ValueError):
            allot.Node(self.fake.url, TOKEN, node_id="")
        with self.assertRaises(ValueError):
            allot.Node(self.fake.url, "tok\nen", node_id="x")
        self.assertEqual([], self.fake.seen(), "nothing was sent")


class FromEnvTest(unittest.TestCase):
    def test_reads_the_allot_variables(self) -> None:
        import os
        from unittest import mock

        fake = FakeAllot()
        self.addCleanup(fake.close)
        fake.set_groups([group("alpha")])
        env = {
            "ALLOT_URL": fake.url,
            "ALLOT_NODE_ID": "py-env",
            "ALLOT_NODE_IP": "10.9.8.7",
            "ALLOT_GROUP": "alpha",
            "ALLOT_NODE_TOKEN": " env-token\n",
        }
        with mock.patch.dict(os.environ, env):
            n = allot.Node.from_env()
        self.addCleanup(n.close)
        join: Request = fake.seen("POST heartbeat")[0]
        self.assertEqual("/v1/nodes/py-env/heartbeat", join.path)
        self.assertEqual({"ip": "10.9.8.7", "preferred": "alpha", "held": [], "ack": 0}, join.body)
        self.assertEqual("Bearer env-token", join.headers["authorization"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    unittest.main()
