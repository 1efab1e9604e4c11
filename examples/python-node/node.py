#!/usr/bin/env python3
"""A node in Python: the allot package (clients/python) speaks the protocol.

    pip install ./clients/python        # standard library only, works offline
    ALLOT_NODE_ID=py-1 python3 examples/python-node/node.py

Environment (read by allot.Node.from_env):
  ALLOT_URL         server URL (default http://127.0.0.1:7070)
  ALLOT_NODE_ID     node ID (default: host name)
  ALLOT_NODE_IP     IP used for the allocation hash (default: the local address that reaches the server)
  ALLOT_GROUP       preferred group (optional)
  ALLOT_NODE_TOKEN  bearer token of the node role (optional)
  ALLOT_CA_FILE     CA bundle for an https:// server (optional)

It prints one line per change, e.g. `epoch=12 groups=alpha@v3`, logs what the
node does to stderr, and leaves the pool on SIGINT or SIGTERM. Copy it and
replace on_change with your own code.
"""

import logging
import os
import signal
import sys
import threading

try:
    import allot
except ImportError:  # run from a clone without `pip install ./clients/python`
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "..", "clients", "python", "src"))
    import allot


def on_change(old, new):
    """Called on the node's callback thread after every change of its groups
    (never concurrently). Each g.config holds the group's keys (real secret
    values: never log them) and g.share is this node's part of the quota."""
    names = ",".join("%s@v%d" % (g.name, g.version) for g in new.groups) or "-"
    print("epoch=%d groups=%s" % (new.epoch, names), flush=True)


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

    # start_timeout=0: return at once and keep trying in the background (the
    # ID may be another live process's for now; the server may be down).
    node = allot.Node.from_env(on_change=on_change, start_timeout=0)
    print("node %s (%s) joining %s" % (node.id, node.ip, node.url), flush=True)
    while not stop.wait(3600):
        pass
    if node.close():  # the groups move at once
        print("left", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
