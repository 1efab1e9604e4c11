"""An in-tree PEP 517 build backend, standard library only.

`pip install ./clients/python` needs no network with it: pip builds in an
isolated environment into which it installs the backend's requirements, and
this backend has none (a setuptools backend would have pip download
setuptools first). It builds a pure-Python wheel of src/allot, an sdist, and
an editable wheel (PEP 660: a .pth file pointing at src/).

Metadata comes from pyproject.toml's [project] table (read with tomllib on
Python 3.11+, else with a reader of the simple `key = "value"` lines that
table uses) and the version from src/allot/_version.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "allot"
SRC = os.path.join(ROOT, "src")

# Reproducible archives: SOURCE_DATE_EPOCH when set, else 1980-01-01 (the
# earliest time a zip file can hold).
_EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))


def _project() -> Dict[str, Any]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        raw = f.read()
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        return _simple_toml_project(raw.decode("utf-8"))
    return dict(tomllib.loads(raw.decode("utf-8")).get("project", {}))


def _simple_toml_project(text: str) -> Dict[str, Any]:
    """The string values of [project] (`key = "value"` lines): all this
    backend reads from it."""
    out: Dict[str, Any] = {}
    in_project = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("["):
            in_project = s == "[project]"
            continue
        m = re.match(r'^([A-Za-z0-9_-]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(#.*)?$', s)
        if in_project and m:
            out[m.group(1)] = m.group(2).replace('\\"', '"').replace("\\\\", "\\")
    return out


def _version() -> str:
    with open(os.path.join(SRC, PACKAGE, "_version.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__\s*=\s*"([^"]+)"', f.read(), re.M)
    if not m:
        raise RuntimeError("allot_build: no __version__ in src/allot/_version.py")
    return m.group(1)


def _metadata() -> str:
    p = _project()
    name, version = p.get("name", PACKAGE), _version()
    lines = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version]
    if p.get("description"):
        lines.append("Summary: " + p["description"])
    if p.get("requires-python"):
        lines.append("Requires-Python: " + p["requires-python"])
    readme = p.get("readme")
    body = ""
    if isinstance(readme, str):
        with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
            body = f.read()
        lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + body


def _names() -> Tuple[str, str]:
    name = re.sub(r"[-_.]+", "_", _project().get("name", PACKAGE)).lower()
    return name, _version()


def _package_files() -> List[Tuple[str, str]]:
    """(archive name, path) of every file of the package, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(SRC, PACKAGE)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if fn.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(dirpath, fn)
            out.append((os.path.relpath(path, SRC).replace(os.sep, "/"), path))
    return out


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def _write_wheel(directory: str, files: List[Tuple[str, bytes]]) -> str:
    name, version = _names()
    dist_info = "%s-%s.dist-info" % (name, version)
    wheel = "%s-%s-py3-none-any.whl" % (name, version)
    meta = [
        (dist_info + "/METADATA", _metadata().encode("utf-8")),
        (dist_info + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: allot_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
    ]
    entries = files + meta
    record = "".join(_record_line(n, d) + "\n" for n, d in entries) + dist_info + "/RECORD,,\n"
    entries.append((dist_info + "/RECORD", record.encode("utf-8")))
    stamp = time.gmtime(max(_EPOCH, 315532800))[:6]
    with zipfile.ZipFile(os.path.join(directory, wheel), "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in entries:
            info = zipfile.ZipInfo(n, date_time=stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, d)
    return wheel


# ---- PEP 517 ----


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def build_wheel(
    wheel_directory: str, config_settings: Optional[Dict[str, Any]] = None, metadata_directory: Optional[str] = None
) -> str:
    files = []
    for arc, path in _package_files():
        with open(path, "rb") as f:
            files.append((arc, f.read()))
    return _write_wheel(wheel_directory, files)


def build_editable(
    wheel_directory: str, config_settings: Optional[Dict[str, Any]] = None, metadata_directory: Optional[str] = None
) -> str:
    """A wheel holding only a .pth file that puts src/ on sys.path (PEP 660)."""
    name, _ = _names()
    return _write_wheel(wheel_directory, [("_%s_editable.pth" % name, (SRC + "\n").encode("utf-8"))])


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    name, version = _names()
    base = "%s-%s" % (name, version)
    members = ["pyproject.toml", "README.md", "_build/allot_build.py"]
    members += [os.path.relpath(p, ROOT).replace(os.sep, "/") for _, p in _package_files()]
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, "tests")):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        members += [
            os.path.relpath(os.path.join(dirpath, fn), ROOT).replace(os.sep, "/")
            for fn in sorted(filenames)
            if fn.endswith(".py")
        ]
    out = base + ".tar.gz"

    def add(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
        info = tarfile.TarInfo(base + "/" + arcname)
        info.size, info.mtime, info.mode = len(data), _EPOCH, 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(os.path.join(sdist_directory, out), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            with open(os.path.join(ROOT, m), "rb") as f:
                add(tar, m, f.read())
        add(tar, "PKG-INFO", _metadata().encode("utf-8"))
    return out
