"""Tests of `python -m allot`, run as a child process against the fake server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import unittest
from typing import Dict, List, Optional

import support
from fakeserver import FakeAllot
from support import eventually

from allot import Assignment, Group
from allot.__main__ import describe

SECRET = "sk-live-0123456789abcdef"


def run(*args: str, env: Optional[Dict[str, str]] = None, timeout: float = 30) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=support.SRC, PYTHONDONTWRITEBYTECODE="1")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "allot", *args], env=e, capture_output=True, text=True, timeout=timeout)


class CLITest(unittest.TestCase):
    def test_help(self) -> None:
        r = run("--help")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertIn("usage: python -m allot", r.stdout)
        self.assertIn("node", r.stdout)
        r = run("node", "--help")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertIn("ALLOT_NODE_TOKEN", r.stdout)
        r = run("--version")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertRegex(r.stdout, r"^allot-python \d+\.\d+\.\d+")

    def test_node_joins_prints_masked_and_leaves(self) -> None:
        fake = FakeAllot()
        self.addCleanup(fake.close)
        fake.set_groups([{"name": "alpha", "version": 3, "config": {"api_key": SECRET}, "share": 0.5, "quota": "600/m", "quota_share": "300/m"}])
        r = run("node", fake.url, "--id", "py-cli", "--ip", "10.1.1.1", env={"ALLOT_NODE_TOKEN": "cli-token-0123"})
        self.assertEqual(0, r.returncode, r.stdout + r.stderr)
        self.assertIn("node py-cli (10.1.1.1) joined " + fake.url, r.stdout)
        self.assertIn("groups=alpha@v3", r.stdout)
        self.assertIn("api_key=****cdef", r.stdout)
        self.assertIn("quota=600/m (300/m here)", r.stdout)
        self.assertTrue(r.stdout.rstrip().endswith("left"), r.stdout)
        self.assertNotIn(SECRET, r.stdout + r.stderr)
        self.assertNotIn("cli-token-0123", r.stdout + r.stderr)
        self.assertEqual("Bearer cli-token-0123", fake.seen("POST heartbeat")[0].headers["authorization"])
        self.assertEqual(1, len(fake.seen("DELETE node")))

    def test_node_unreachable_fails(self) -> None:
        r = run("node", "http://127.0.0.1:1", "--id", "py-cli", "--timeout", "0.3")
        self.assertEqual(1, r.returncode)
        self.assertIn("did not join", r.stderr)

    def test_bad_url_fails(self) -> None:
        r = run("node", "ftp://x", "--id", "py-cli")
        self.assertEqual(1, r.returncode)
        self.assertIn("want http://", r.stderr)

    def test_follow_prints_changes_and_leaves_on_sigterm(self) -> None:
        fake = FakeAllot()
        self.addCleanup(fake.close)
        fake.set_groups([{"name": "alpha", "version": 1, "config": {}}])
        e = dict(os.environ, PYTHONPATH=support.SRC, PYTHONDONTWRITEBYTECODE="1")
        p = subprocess.Popen(
            [sys.executable, "-m", "allot", "node", fake.url, "--id", "py-f", "--follow"],
            env=e,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.addCleanup(p.stdout.close)
        self.addCleanup(p.kill)
        out: List[str] = []
        reader = threading.Thread(target=lambda: out.extend(iter(p.stdout.readline, "")), daemon=True)
        reader.start()
        eventually(lambda: any("groups=alpha@v1" in l for l in out), what=lambda: "alpha@v1 in %r" % out)
        fake.set_groups([{"name": "alpha", "version": 2, "config": {}}])
        eventually(lambda: any("groups=alpha@v2" in l for l in out), what=lambda: "alpha@v2 in %r" % out)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(0, p.wait(timeout=15), "".join(out))
        reader.join(5)
        self.assertEqual("left", out[-1].strip())
        self.assertEqual(1, len(fake.seen("DELETE node")))

    def test_describe(self) -> None:
        a = Assignment(
            epoch=7,
            groups=(Group("a", 2, {"k": "short", "key": SECRET}, 1.0, "", "", 1), Group("b", 1, {}, 0.25, "10/s", "2.5/s")),
        )
        self.assertEqual(
            [
                "epoch=7 groups=a@v2,b@v1",
                "  a v2 share=1 max_nodes=1 k=**** key=****cdef",
                "  b v1 share=0.25 quota=10/s (2.5/s here)",
            ],
            describe(a),
        )
        self.assertEqual(["epoch=0 groups=-"], describe(Assignment()))


if __name__ == "__main__":
    unittest.main()
