"""Unit tests of acquire, settle and observe against the fake server: the
requests they send (the contract of issue 24's HTTP leases) and how they
read the answers, refusals included."""

from __future__ import annotations

import email.utils
import threading
import time
import unittest
from typing import Any, List

import support  # noqa: F401  (puts src/ on sys.path)
from fakeserver import FakeAllot, Request, error
from support import LogCapture, eventually

import allot
from allot._http import parse_retry_after

SECRET = "sk-live-0123456789abcdef"
TOKEN = "node-token-never-shown"


class LeaseTest(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeAllot()
        self.addCleanup(self.fake.close)
        self.fake.set_groups([{"name": "alpha", "version": 1, "config": {"api_key": SECRET}}])
        self.node = allot.Node(self.fake.url, TOKEN, node_id="py-l", ip="10.0.0.3")
        self.addCleanup(self.node.close)

    def answer(self, **kw: Any) -> None:
        body = {
            "lease": "L/1+abc=",
            "group": "beta",
            "config": {"api_key": SECRET, "base": "https://up"},
            "borrowed": True,
            "expires_ms": 1_900_000_000_000,
        }
        body.update(kw)
        self.fake.script("POST acquire", lambda r: (200, {}, body))

    def test_acquire_sends_tokens_with_the_session_and_reads_the_lease(self) -> None:
        self.answer()
        lease = self.node.acquire(tokens=1200)
        req = self.fake.seen("POST acquire")[0]
        self.assertEqual("/v1/nodes/py-l/acquire", req.path)
        self.assertEqual({"tokens": 1200}, req.body)
        self.assertEqual(self.node.session, req.session)
        self.assertEqual("Bearer " + TOKEN, req.headers["authorization"])
        self.assertEqual("application/json", req.headers["content-type"])
        self.assertEqual("L/1+abc=", lease.id)
        self.assertEqual("beta", lease.group)
        self.assertEqual(SECRET, lease.config["api_key"])
        self.assertEqual("https://up", lease.config["base"])
        self.assertTrue(lease.borrowed)
        self.assertEqual(1200, lease.tokens)
        self.assertEqual(1_900_000_000.0, lease.expires_at)
        self.assertIsNone(lease.settled)
        with self.assertRaises(TypeError):
            lease.config["api_key"] = "x"  # type: ignore[index]
        self.assertEqual(0, self.node.acquire().tokens, "a plain call reserves no tokens")
        self.assertEqual({"tokens": 0}, self.fake.seen("POST acquire")[1].body)

    def test_refusal_raises_rate_limited_with_the_exact_wait_and_the_limit(self) -> None:
        cases = [
            # (headers, body, want retry_after, want limit)
            (
                {"Retry-After": "1", "retry-after-ms": "250"},
                {"error": {"code": "too_many_requests", "message": "over 90000 tokens/m", "limit": "90000 tokens/m"}},
                0.25,
                "90000 tokens/m",
            ),
            ({"Retry-After": "3"}, {"error": {"code": "too_many_requests", "message": "m"}}, 3.0, None),
            ({}, {"error": {"code": "too_many_requests", "message": "m"}, "limit": "600/m"}, 1.0, "600/m"),
            ({}, {"error": {"message": "m", "retry_after_ms": 1500}}, 1.5, None),
            ({"retry-after-ms": "junk", "Retry-After": "2"}, None, 2.0, None),
        ]
        for headers, body, wait, limit in cases:
            self.fake.script("POST acquire", lambda r, h=headers, b=body: (429, h, b))
            with self.assertRaises(allot.RateLimited, msg=repr(headers)) as cm:
                self.node.acquire(tokens=5)
            e = cm.exception
            self.assertAlmostEqual(wait, e.retry_after, msg=repr(headers))
            self.assertEqual(limit, e.limit, msg=repr(body))
            self.assertEqual(429, e.status)
            self.assertIsInstance(e, allot.APIError)
            self.assertIsInstance(e, allot.AllotError)
            self.assertIn("HTTP 429", str(e))

    def test_rate_limited_takes_retry_after_and_limit_positionally(self) -> None:
        e = allot.RateLimited(0.5, "600/m")
        self.assertEqual((0.5, "600/m"), (e.retry_after, e.limit))
        self.assertIn("600/m", str(e))

    def test_acquire_with_wait_retries_after_the_refusal(self) -> None:
        calls: List[float] = []

        def script(r: Request) -> Any:
            calls.append(time.monotonic())
            if len(calls) < 3:
                return 429, {"retry-after-ms": "40"}, {"error": {"code": "too_many_requests", "message": "m", "limit": "2/s"}}
            return None  # the default: a lease

        self.fake.script("POST acquire", script)
        lease = self.node.acquire(7, wait=5)
        self.assertEqual("alpha", lease.group)
        self.assertEqual(3, len(calls))
        self.assertGreaterEqual(calls[1] - calls[0], 0.035, "waited retry-after-ms between tries")

    def test_acquire_with_a_short_wait_raises_without_sleeping_past_it(self) -> None:
        self.fake.script("POST acquire", lambda r: (429, {"retry-after-ms": "5000"}, {"error": {"message": "m"}}))
        t0 = time.monotonic()
        with self.assertRaises(allot.RateLimited) as cm:
            self.node.acquire(1, wait=0.5)
        self.assertLess(time.monotonic() - t0, 0.4, "a retry past the deadline is not waited for")
        self.assertEqual(5.0, cm.exception.retry_after)
        self.assertEqual(1, len(self.fake.seen("POST acquire")))

    def test_settle_posts_the_tokens_used_once(self) -> None:
        self.answer()
        lease = self.node.acquire(1200)
        self.assertEqual({"ok": True}, lease.settle(830))
        req = self.fake.seen("POST settle")[0]
        self.assertEqual("/v1/nodes/py-l/leases/L%2F1%2Babc%3D/settle", req.path, "the lease is one path segment")
        self.assertEqual({"tokens": 830}, req.body)
        self.assertEqual(self.node.session, req.session)
        self.assertEqual(830, lease.settled)
        with self.assertRaises(allot.Conflict) as cm:
            lease.settle(10)
        self.assertIn("already settled", str(cm.exception))
        self.assertEqual(1, len(self.fake.seen("POST settle")), "the second settle sent nothing")

    def test_leaving_the_block_settles_with_the_estimate(self) -> None:
        with self.node.acquire(1200) as lease:
            self.assertEqual("alpha", lease.group)
        self.assertEqual({"tokens": 1200}, self.fake.seen("POST settle")[0].body)
        self.assertEqual(1200, lease.settled)

    def test_an_explicit_settle_is_not_repeated_on_leaving(self) -> None:
        with self.node.acquire(1200) as lease:
            lease.settle(17)
        self.assertEqual([{"tokens": 17}], [r.body for r in self.fake.seen("POST settle")])

    def test_an_exception_in_the_block_still_settles_and_propagates(self) -> None:
        with self.assertRaises(KeyError):
            with self.node.acquire(50):
                raise KeyError("upstream broke")
        self.assertEqual([{"tokens": 50}], [r.body for r in self.fake.seen("POST settle")])

    def test_a_failed_settle_on_leaving_is_logged_not_raised(self) -> None:
        self.fake.script("POST settle", lambda r: error(409, "conflict", "lease expired"))
        with LogCapture("allot") as logs:
            with self.node.acquire(50) as lease:
                pass
        self.assertIn("lease expired", logs.text)
        self.assertIsNone(lease.settled)
        with self.assertRaises(allot.Conflict):
            lease.settle(1)  # called by hand, the refusal is raised

    def test_a_settle_that_failed_by_hand_is_not_redone_with_the_estimate(self) -> None:
        self.fake.script("POST settle", lambda r: error(503, "unavailable", "redis unavailable"))
        with self.node.acquire(50) as lease:
            with self.assertRaises(allot.Unavailable):
                lease.settle(10)
        self.assertEqual([{"tokens": 10}], [r.body for r in self.fake.seen("POST settle")])

    def test_observe_posts_status_and_retry_after_in_ms(self) -> None:
        lease = self.node.acquire(1)
        date = email.utils.formatdate(time.time() + 30, usegmt=True)
        for status, ra, want in [
            (429, 2, {"status": 429, "retry_after_ms": 2000}),
            (429, 0.25, {"status": 429, "retry_after_ms": 250}),
            (429, "7", {"status": 429, "retry_after_ms": 7000}),
            (429, None, {"status": 429}),
            (401, None, {"status": 401}),
            (200, None, {"status": 200}),
            (429, "nonsense", {"status": 429}),
        ]:
            lease.observe(status, ra)
            req = self.fake.seen("POST observe")[-1]
            self.assertEqual(want, req.body, msg=repr(ra))
            self.assertTrue(req.path.endswith("/observe"))
            self.assertEqual(self.node.session, req.session)
        lease.observe(429, date)
        ms = self.fake.seen("POST observe")[-1].body["retry_after_ms"]
        self.assertTrue(28000 <= ms <= 30000, ms)

    def test_bad_arguments_send_nothing(self) -> None:
        lease = self.node.acquire(1)

        def sent() -> int:
            return len([r for r in self.fake.seen() if r.route not in ("POST heartbeat", "GET assignment")])

        before = sent()
        for bad in (-1, 1.5, True, "10", None):
            with self.assertRaises(ValueError, msg=repr(bad)):
                self.node.acquire(bad)  # type: ignore[arg-type]
            with self.assertRaises(ValueError, msg=repr(bad)):
                lease.settle(bad)  # type: ignore[arg-type]
        for bad in (99, 600, "429", True):
            with self.assertRaises(ValueError, msg=repr(bad)):
                lease.observe(bad)  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            self.node.report("alpha", "maybe")
        self.assertEqual(before, sent())

    def test_a_403_on_acquire_is_session_lost_and_the_node_joins_again(self) -> None:
        old = self.node.session
        with self.fake.mu:
            self.fake.sessions["py-l"] = "another"  # the server ended our session
        self.fake.script("POST acquire", lambda r: None if r.session == self.fake.sessions.get("py-l") else error(403, "forbidden", "wrong Allot-Session"))
        with self.assertRaises(allot.SessionLost) as cm:
            self.node.acquire(1)
        self.assertIsInstance(cm.exception, allot.Forbidden)
        self.fake.forget("py-l")
        eventually(lambda: self.node.joined and self.node.session != old, what="the re-join")
        self.assertEqual("alpha", self.node.acquire(1).group)

    def test_a_lease_refused_on_settle_is_forbidden(self) -> None:
        lease = self.node.acquire(1)
        self.fake.script("POST settle", lambda r: error(403, "forbidden", "lease forged"))
        with self.assertRaises(allot.Forbidden) as cm:
            lease.settle(1)
        self.assertIn("lease forged", str(cm.exception))
        self.assertIsNone(lease.settled)

    def test_acquire_waits_for_the_join_only_with_wait(self) -> None:
        fake = FakeAllot()
        self.addCleanup(fake.close)
        fake.in_use["py-w"] = True
        n = allot.Node(fake.url, TOKEN, node_id="py-w", start_timeout=0)
        self.addCleanup(n.close)
        with self.assertRaises(allot.NotJoined):
            n.acquire(1)
        threading.Timer(0.1, lambda: fake.in_use.update({"py-w": False})).start()
        self.assertEqual("", n.acquire(1, wait=10).group, "the fake holds no group: an empty one")

    def test_nothing_secret_in_a_lease_repr_or_error(self) -> None:
        self.answer()
        lease = self.node.acquire(3)
        self.assertNotIn(SECRET, repr(lease))
        self.assertNotIn("L/1+abc=", repr(lease))
        self.fake.script("POST settle", lambda r: error(409, "conflict", "already settled"))
        with self.assertRaises(allot.Conflict) as cm:
            lease.settle(1)
        self.assertNotIn("L%2F1", str(cm.exception), "the lease is not in the error")
        self.assertNotIn(TOKEN, str(cm.exception))

    def test_malformed_answers_are_errors(self) -> None:
        for body in ({"group": "a"}, {"lease": "", "group": "a"}, {"lease": "l", "group": "a", "config": {"k": 1}}, [1]):
            self.fake.script("POST acquire", lambda r, b=body: (200, {}, b))
            with self.assertRaises(allot.AllotError, msg=repr(body)):
                self.node.acquire(1)


class RetryAfterTest(unittest.TestCase):
    def test_parse(self) -> None:
        now = 1_000_000.0
        date = email.utils.formatdate(now + 12, usegmt=True)
        for v, want in [
            (None, None),
            ("", None),
            ("3", 3.0),
            ("0.5", 0.5),
            (" 2 ", 2.0),
            (4, 4.0),
            (-1, 0.0),
            ("-5", 0.0),
            ("nan", None),
            ("inf", None),
            (True, None),
            ("soon", None),
            (date, 12.0),
        ]:
            got = parse_retry_after(v, now=now)
            if want is None:
                self.assertIsNone(got, msg=repr(v))
            else:
                self.assertAlmostEqual(want, got, places=3, msg=repr(v))


if __name__ == "__main__":
    unittest.main()
