"""python -m allot: a quick check of a server from Python.

    python -m allot node [URL] --id ID      join, print the assignment, leave
    python -m allot node [URL] --follow     ... and print every change until Ctrl-C

The token comes from ALLOT_NODE_TOKEN (never from the command line, where
other users of the machine could read it). Config values are masked.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import List, Optional, TextIO

from . import errors
from ._http import mask
from ._version import __version__
from .assignment import Assignment
from .node import Node

# Exit codes: 0 done, 1 the server refused or could not be reached, 2 usage.
EXIT_OK = 0
EXIT_FAILED = 1


def describe(a: Assignment) -> List[str]:
    """The lines that show an assignment, config values masked."""
    if not a.groups:
        return ["epoch=%d groups=-" % a.epoch]
    lines = ["epoch=%d groups=%s" % (a.epoch, ",".join("%s@v%d" % (g.name, g.version) for g in a.groups))]
    for g in a.groups:
        parts = ["  %s v%d share=%g" % (g.name, g.version, g.share)]
        if g.quota:
            parts.append("quota=%s" % g.quota + (" (%s here)" % g.quota_share if g.quota_share else ""))
        if g.max_nodes:
            parts.append("max_nodes=%d" % g.max_nodes)
        parts.extend("%s=%s" % (k, mask(v)) for k, v in sorted(g.config.items()))
        lines.append(" ".join(parts))
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m allot",
        description="allot's Python client: a quick check of an allot server's HTTP node protocol.",
        epilog="The token comes from ALLOT_NODE_TOKEN. See clients/python/README.md.",
    )
    p.add_argument("--version", action="version", version="allot-python " + __version__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    n = sub.add_parser(
        "node",
        help="join the pool as a node, print the assignment (config masked), leave",
        description="Join the pool as a node, print the assignment (config values masked) and leave. "
        "The token comes from ALLOT_NODE_TOKEN.",
    )
    n.add_argument("url", nargs="?", default=None, help="server URL (default: $ALLOT_URL or http://127.0.0.1:7070)")
    n.add_argument("--id", dest="node_id", default=None, help="node ID (default: $ALLOT_NODE_ID or the host name)")
    n.add_argument("--ip", default=None, help="IP for the allocation hash (default: the local address that reaches the server)")
    n.add_argument("--group", default=None, help="preferred group (default: $ALLOT_GROUP)")
    n.add_argument("--cafile", default=None, help="CA bundle to verify an https server (default: $ALLOT_CA_FILE or the system's)")
    n.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the join (default: 30)")
    n.add_argument("--wait", type=float, default=2.0, help="seconds to wait after the join for the pool to give the node groups (default: 2)")
    n.add_argument("--follow", action="store_true", help="stay in the pool and print every change until Ctrl-C or SIGTERM")
    n.add_argument("-v", "--verbose", action="store_true", help="log what the node does to stderr")
    return p


def run_node(args: argparse.Namespace, out: TextIO) -> int:
    """The node command."""
    kwargs = {"start_timeout": args.timeout}
    for name, value in (("url", args.url), ("node_id", args.node_id), ("ip", args.ip), ("preferred", args.group), ("cafile", args.cafile)):
        if value is not None:
            kwargs[name] = value
    stop = threading.Event()
    printed = threading.Lock()

    def show(old: Assignment, new: Assignment) -> None:
        with printed:
            for line in describe(new):
                print(line, file=out, flush=True)

    changed = threading.Event()
    if args.follow:
        kwargs["on_change"] = show
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stop.set())
    else:
        kwargs["on_change"] = lambda old, new: changed.set()
    node = Node.from_env(**kwargs)
    try:
        print("node %s (%s) joined %s (interval %.1fs, ttl %.1fs)" % (node.id, node.ip, node.url, node.interval, node.ttl), file=out, flush=True)
        if args.follow:
            while not stop.wait(3600):
                pass
        else:
            # A join is planned just after it is answered: give the plan
            # time to bring the node its groups.
            if not node.groups:
                changed.wait(args.wait)
            show(Assignment(), node.assignment)
    finally:
        left = node.close()
    print("left" if left else "leave failed (the server reaps the node after its TTL)", file=out, flush=True)
    return EXIT_OK if left else EXIT_FAILED


def main(argv: Optional[List[str]] = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Runs the CLI; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help(out)
        return EXIT_OK
    if getattr(args, "verbose", False):
        logging.basicConfig(stream=err, level=logging.INFO, format="%(message)s")
    try:
        return run_node(args, out)
    except (errors.AllotError, ValueError) as e:
        print("python -m allot: %s" % e, file=err)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
