"""The package installs offline: the in-tree build backend (_build/) makes a
correct wheel, and `pip install --no-index` of the source folder works with
pip's build isolation (the backend needs nothing from an index)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest
import zipfile

import support

ROOT = os.path.dirname(support.SRC)
sys.path.insert(0, os.path.join(ROOT, "_build"))

import allot_build  # noqa: E402

from allot import __version__  # noqa: E402


def tree(root: str) -> list:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        out += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames if not f.endswith(".pyc")]
    return sorted(out)


class BuildTest(unittest.TestCase):
    def test_wheel_holds_the_package_typed_and_a_valid_record(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            name = allot_build.build_wheel(d)
            self.assertEqual("allot-%s-py3-none-any.whl" % __version__, name)
            with zipfile.ZipFile(os.path.join(d, name)) as z:
                names = z.namelist()
                want = ["allot/" + f for f in tree(os.path.join(support.SRC, "allot"))]
                self.assertEqual(sorted(want), sorted(n for n in names if n.startswith("allot/")))
                self.assertIn("allot/py.typed", names)
                self.assertFalse([n for n in names if "__pycache__" in n or n.endswith(".pyc")])
                dist = "allot-%s.dist-info/" % __version__
                meta = z.read(dist + "METADATA").decode()
                self.assertIn("Name: allot\n", meta)
                self.assertIn("Version: %s\n" % __version__, meta)
                self.assertIn("Requires-Python: >=3.8\n", meta)
                self.assertIn("Tag: py3-none-any", z.read(dist + "WHEEL").decode())
                rows = list(csv.reader(io.StringIO(z.read(dist + "RECORD").decode())))
                self.assertEqual(sorted(names), sorted(r[0] for r in rows))
                for path, digest, size in rows:
                    if path == dist + "RECORD":
                        self.assertEqual(("", ""), (digest, size))
                        continue
                    data = z.read(path)
                    h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                    self.assertEqual("sha256=" + h, digest, path)
                    self.assertEqual(str(len(data)), size, path)

    def test_sdist_holds_what_a_build_needs(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            name = allot_build.build_sdist(d)
            with tarfile.open(os.path.join(d, name)) as t:
                names = t.getnames()
        base = "allot-%s/" % __version__
        for f in ("pyproject.toml", "README.md", "PKG-INFO", "_build/allot_build.py", "src/allot/py.typed", "src/allot/node.py"):
            self.assertIn(base + f, names)

    def test_older_pythons_read_the_project_table_without_tomllib(self) -> None:
        with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
            text = f.read()
        got = allot_build._simple_toml_project(text)
        self.assertEqual("allot", got["name"])
        self.assertEqual(">=3.8", got["requires-python"])
        self.assertEqual("README.md", got["readme"])
        try:
            import tomllib
        except ImportError:
            return
        full = tomllib.loads(text)["project"]
        self.assertEqual({k: v for k, v in full.items() if isinstance(v, str)}, got)


class PipInstallTest(unittest.TestCase):
    def test_pip_installs_offline_from_the_source_folder(self) -> None:
        before = tree(ROOT)
        with tempfile.TemporaryDirectory() as target:
            env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
            env.pop("PYTHONPATH", None)
            r = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--target", target, ROOT],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            self.assertEqual(0, r.returncode, r.stdout + r.stderr)
            self.assertTrue(os.path.exists(os.path.join(target, "allot", "py.typed")))
            # -I: neither PYTHONPATH nor the working folder; only the install.
            code = "import sys; sys.path.insert(0, %r); import allot; print(allot.__file__, allot.__version__)" % target
            r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, cwd=target)
            self.assertEqual(0, r.returncode, r.stderr)
            self.assertTrue(r.stdout.startswith(os.path.join(target, "allot")), r.stdout)
            self.assertIn(__version__, r.stdout)
            env["PYTHONPATH"] = target
            r = subprocess.run([sys.executable, "-m", "allot", "--help"], env=env, capture_output=True, text=True, timeout=60, cwd=target)
            self.assertEqual(0, r.returncode, r.stderr)
            self.assertIn("usage: python -m allot", r.stdout)
        self.assertEqual(before, tree(ROOT), "the build wrote into the source folder")


if __name__ == "__main__":
    unittest.main()
