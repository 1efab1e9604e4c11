"""allot: a node of an allot pool, over the HTTP node protocol of ``allot serve``.

Standard library only. The node joins, beats, follows its assignment and
leaves on its own threads; the application reads its group's config, hears
of changes, and takes a lease from the pool-wide limits for each upstream
call::

    import allot

    with allot.Node("http://allot:7070", token, node_id="api-1") as node:
        print(node.config("api_key") is not None)
        with node.acquire(tokens=1200) as lease:
            ...  # call the upstream with lease.config["api_key"]
            lease.settle(used)

See clients/python/README.md for the whole story.
"""

import logging as _logging

from .assignment import Assignment, Group
from .errors import (
    AllotError,
    APIError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    NotJoined,
    RateLimited,
    SessionLost,
    Unauthorized,
    Unavailable,
)
from .lease import Lease
from ._version import __version__
from .node import Node

# A library logs only where the application asks it to.
_logging.getLogger("allot").addHandler(_logging.NullHandler())

__all__ = [
    "Node",
    "Lease",
    "Assignment",
    "Group",
    "AllotError",
    "APIError",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "NotFound",
    "NotJoined",
    "RateLimited",
    "SessionLost",
    "Unauthorized",
    "Unavailable",
    "__version__",
]
