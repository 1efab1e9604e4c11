"""What a node holds: its assignment and the groups in it. Both are
immutable: a change replaces the whole Assignment, so a reader never sees
half of one."""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple

from ._http import mask

__all__ = ["Group", "Assignment"]

_EMPTY: Mapping[str, str] = types.MappingProxyType({})


@dataclass(frozen=True)
class Group:
    """One group of a node's assignment.

    config holds the group's values in clear (the node needs its keys): it
    is read-only, and repr() masks every value. share is the fraction of the
    group's quota this node may use (1 / number of holders); quota is the
    group's whole quota ("600/m", "" when it has none) and quota_share this
    node's part of it ("200/m"); max_nodes is the group's cap (0 = none, 1 =
    exclusive).
    """

    name: str
    version: int = 0
    config: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    share: float = 1.0
    quota: str = ""
    quota_share: str = ""
    max_nodes: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.config, types.MappingProxyType):
            object.__setattr__(self, "config", types.MappingProxyType(dict(self.config)))

    def __repr__(self) -> str:
        cfg = ", ".join("%s=%s" % (k, mask(v)) for k, v in sorted(self.config.items()))
        return "Group(name=%r, version=%d, config={%s}, share=%g, quota=%r, max_nodes=%d)" % (
            self.name,
            self.version,
            cfg,
            self.share,
            self.quota,
            self.max_nodes,
        )

    @classmethod
    def from_json(cls, g: Mapping[str, Any]) -> "Group":
        """A Group from its node protocol JSON; raises ValueError when a field
        has the wrong type."""
        name = g.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("allot: group without a name in the assignment")
        raw = g.get("config") or {}
        if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
            raise ValueError("allot: group %r: config is not an object of strings" % name)
        share = g.get("share") or 0.0
        if isinstance(share, bool) or not isinstance(share, (int, float)):
            raise ValueError("allot: group %r: share %r is not a number" % (name, share))
        for k in ("quota", "quota_share"):
            if not isinstance(g.get(k) or "", str):
                raise ValueError("allot: group %r: %s is not a string" % (name, k))
        return cls(
            name=name,
            version=_int(g.get("version"), "version"),
            config=types.MappingProxyType(dict(raw)),
            share=float(share),
            quota=g.get("quota") or "",
            quota_share=g.get("quota_share") or "",
            max_nodes=_int(g.get("max_nodes"), "max_nodes"),
        )


@dataclass(frozen=True)
class Assignment:
    """The groups a node holds at an epoch of the pool, sorted by name."""

    epoch: int = 0
    groups: Tuple[Group, ...] = ()

    @property
    def names(self) -> Tuple[str, ...]:
        """The names of the groups held."""
        return tuple(g.name for g in self.groups)

    def group(self, name: str) -> Optional[Group]:
        """The held group called name, or None."""
        for g in self.groups:
            if g.name == name:
                return g
        return None

    def holds(self, name: str) -> bool:
        """Whether the group called name is held."""
        return self.group(name) is not None

    def same_groups(self, other: "Assignment") -> bool:
        """Whether other holds the same groups at the same versions, shares,
        quotas and caps (the epoch aside)."""
        return self.groups == other.groups

    @classmethod
    def from_json(cls, reply: Mapping[str, Any]) -> "Assignment":
        """An Assignment from a heartbeat or assignment answer."""
        raw = reply.get("groups") or []
        if not isinstance(raw, list) or not all(isinstance(g, dict) for g in raw):
            raise ValueError("allot: assignment groups is not a list of objects")
        groups = sorted((Group.from_json(g) for g in raw), key=lambda g: g.name)
        return cls(epoch=_int(reply.get("epoch"), "epoch"), groups=tuple(groups))


def _int(v: Any, what: str) -> int:
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("allot: %s %r is not a number" % (what, v))
    return int(v)
