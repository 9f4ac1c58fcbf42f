"""The test suite's certificate minting: the package's own minting toolkit.

Real X.509 certificates minted with ``cryptography`` (never mocks); see
``tlsconnector.testing._pki`` for the API::

    root = CA()
    leaf = root.intermediate().issue("server1.fabrikam.com")
"""

from tlsconnector.testing._pki import (
    CA,
    DEFAULT_EKU,
    DEFAULT_NOT_AFTER,
    DEFAULT_NOT_BEFORE,
    NOW,
    Leaf,
    pem,
    self_signed,
)

__all__ = [
    "CA",
    "DEFAULT_EKU",
    "DEFAULT_NOT_AFTER",
    "DEFAULT_NOT_BEFORE",
    "NOW",
    "Leaf",
    "pem",
    "self_signed",
]
