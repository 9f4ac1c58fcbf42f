"""Connectors indexed by domain pattern: selection cost independent of policy size.

For one domain the most specific level (section 2: exact, then the longest
``*.suffix``, then ``*``) is found with at most one dictionary lookup per label of
the domain, whatever the number of connectors. Pure and immutable once built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from ._names import DomainPattern, PatternKind

__all__ = ["DomainIndex"]

C = TypeVar("C")


class DomainIndex(Generic[C]):
    """Maps a canonical domain to the connectors matching it at the most specific level.

    Connectors are given in the order answers must keep (by name); each appears at
    most once per level.
    """

    __slots__ = ("_any", "_exact", "_subtree")

    def __init__(
        self, connectors: Iterable[C], patterns: Callable[[C], Sequence[DomainPattern]]
    ) -> None:
        # Speed: most domains have one connector, whose answer is built once as a
        # 1-tuple; only a domain a second connector adds to grows a list, made a tuple
        # at the end (before, every domain's list was).
        exact: dict[str, tuple[C, ...]] = {}
        subtree: dict[str, tuple[C, ...]] = {}
        grown: dict[tuple[bool, str], list[C]] = {}
        anywhere: list[C] = []
        for connector in connectors:
            for pattern in patterns(connector):
                kind = pattern.kind
                if kind is PatternKind.ANY:
                    # A connector's patterns are added one after another, so a repeated
                    # pattern finds the connector last in its bucket: once per level.
                    if not anywhere or anywhere[-1] is not connector:
                        anywhere.append(connector)
                    continue
                is_exact = kind is PatternKind.EXACT
                table = exact if is_exact else subtree
                # Not None for EXACT and SUBTREE (a DomainPattern invariant).
                domain: str = pattern.domain  # type: ignore[assignment]
                found = table.get(domain)
                if found is None:
                    table[domain] = (connector,)
                    continue
                bucket = grown.get((is_exact, domain))
                if bucket is None:
                    bucket = grown[(is_exact, domain)] = list(found)
                if bucket[-1] is not connector:
                    bucket.append(connector)
        for (is_exact, domain), bucket in grown.items():
            (exact if is_exact else subtree)[domain] = tuple(bucket)
        self._exact = exact
        self._subtree = subtree
        self._any = tuple(anywhere)

    def best(self, domain: str | None) -> tuple[C, ...]:
        """The connectors matching ``domain`` at the most specific level, in order.

        ``domain`` is canonical; None (the null sender) is matched only by ``*``.
        """
        if domain is None:
            return self._any
        found = self._exact.get(domain)
        if found is not None:
            return found
        # "*.suffix" covers the suffix itself and every subdomain: walk up the labels,
        # longest suffix first.
        suffix = domain
        while True:
            found = self._subtree.get(suffix)
            if found is not None:
                return found
            dot = suffix.find(".")
            if dot < 0:
                return self._any
            suffix = suffix[dot + 1 :]
