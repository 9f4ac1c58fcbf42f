"""The straightforward evaluator tlsconnector is measured against.

The same rules, with connector selection by a linear scan over every connector (what
a first implementation does). Kept here, not in the package: the benchmarks compare
its cost with the indexed policy, and tests/test_index.py checks that both decide
identically on randomised policies.
"""

from __future__ import annotations

import attrs

from tlsconnector import InboundConnector, OutboundConnector, Policy
from tlsconnector._model import ConnectorType


@attrs.frozen
class LinearPolicy(Policy):
    """A :class:`Policy` whose candidate selection scans every connector."""

    @classmethod
    def of(cls, policy: Policy) -> LinearPolicy:
        return cls(inbound=policy.inbound, outbound=policy.outbound, trust=policy.trust)

    def inbound_candidates(self, domain: str | None) -> tuple[InboundConnector, ...]:
        best: tuple[int, int] | None = None
        matched: list[tuple[tuple[int, int], InboundConnector]] = []
        for connector in self.inbound:
            if not connector.enabled or connector.type is not ConnectorType.PARTNER:
                continue
            level = connector.specificity_for(domain)
            if level is None:
                continue
            matched.append((level, connector))
            if best is None or level > best:
                best = level
        return tuple(c for level, c in matched if level == best)

    def outbound_candidates(self, domain: str) -> tuple[OutboundConnector, ...]:
        best: tuple[int, int] | None = None
        matched: list[tuple[tuple[int, int], OutboundConnector]] = []
        for connector in self.outbound:
            if not connector.selectable_by_domain:
                continue
            level = connector.specificity_for(domain)
            if level is None:
                continue
            matched.append((level, connector))
            if best is None or level > best:
                best = level
        return tuple(c for level, c in matched if level == best)
