"""Real certificates for the benchmarks, minted with tlsconnector's own minting toolkit.

A root CA (the trust anchor), an issuing intermediate, and distinct leaves for the
certificate-name connectors of :mod:`benchmarks.generate` (inbound connector ``i``
with ``i % 4 == 0`` expects the CN ``mail.partner{i}.com``; none of them is
disabled). Every presented chain is the leaf, then the intermediate, as a partner's
MTA presents it; validation checks two signatures.
"""

from __future__ import annotations

from collections.abc import Iterator

from tlsconnector.testing._pki import CA, Leaf

__all__ = ["BenchPKI", "connector_for_leaf"]


def connector_for_leaf(n: int, connectors: int) -> int:
    """The inbound connector (one with a certificate name, ``i % 4 == 0``, below
    ``connectors``) whose name leaf ``n`` carries; leaves cycle over them."""
    return 4 * (n % max(1, connectors // 4))


class BenchPKI:
    """A root, an intermediate, and leaves minted on demand (each one distinct: its own
    serial number and signature, even when its CN repeats). ``key_type``: the CAs'
    keys, ``"ec-p256"`` or ``"rsa-2048"`` (what signs, and so what validation checks,
    every certificate of a chain)."""

    def __init__(self, key_type: str = "ec-p256") -> None:
        self.key_type = key_type
        self.root = CA("tlsconnector Bench Root", key_type=key_type)
        self.intermediate = self.root.intermediate(
            "tlsconnector Bench Issuing CA", key_type=key_type
        )

    def trust_pem(self) -> str:
        """The trust anchor, as the policy's ``[trust] ca_file`` holds it."""
        return self.root.cert_pem()

    def leaf(self, connector: int, *, san: bool = False, by_root: bool = False) -> Leaf:
        """A leaf with CN ``mail.partner{connector}.com`` (and that SAN if asked),
        issued by the intermediate, or by the root itself when ``by_root``."""
        name = f"mail.partner{connector}.com"
        issuer = self.root if by_root else self.intermediate
        return issuer.issue(name, san=[name] if san else None)

    def chains(
        self, count: int, *, connectors: int, by_root: bool = False
    ) -> Iterator[tuple[int, str]]:
        """``(connector, chain PEM)`` for ``count`` distinct leaves, leaf first, each
        carrying the certificate name of an enabled connector below ``connectors``.
        ``by_root``: leaves issued by the anchor itself (a one-signature chain)."""
        for n in range(count):
            connector = connector_for_leaf(n, connectors)
            yield connector, self.leaf(connector, by_root=by_root).chain_pem()
