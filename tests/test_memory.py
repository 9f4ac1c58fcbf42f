"""Every memory of the library is bounded in entries and in bytes (section 8)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from tlsconnector import TLSFacts
from tlsconnector._assessment import ChainVerdictCache
from tlsconnector._chains import CHECKED_CERTIFICATES, PresentedChain, TrustStore
from tlsconnector._chains import _CheckedCertificates as CheckedCertificates
from tlsconnector._facts import MAX_PEM_CHAIN_BYTES, _chain_from_pem
from tlsconnector._memory import BoundedMemory
from tlsconnector._validation import Purpose

from certmint import CA, NOW, self_signed

ROOT = CA("Memory Root")
INTER = ROOT.intermediate("Memory Issuing CA")


def test_a_bounded_memory_forgets_the_least_recently_used_by_entries() -> None:
    memory: BoundedMemory[str, int] = BoundedMemory(max_entries=2, max_bytes=100)
    memory.put("a", 1, 1)
    memory.put("b", 2, 1)
    assert 1 == memory.get("a")  # "a" is now the most recently used
    memory.put("c", 3, 1)
    assert (1, None, 3) == (memory.get("a"), memory.get("b"), memory.get("c"))
    assert 2 == len(memory)


def test_a_bounded_memory_forgets_until_its_bytes_fit() -> None:
    memory: BoundedMemory[str, str] = BoundedMemory(max_entries=100, max_bytes=10)
    memory.put("a", "x", 4)
    memory.put("b", "y", 4)
    memory.put("c", "z", 4)
    assert (None, "y", "z") == (memory.get("a"), memory.get("b"), memory.get("c"))
    assert 8 == memory.nbytes
    memory.put("b", "y2", 7)  # replacing an entry counts its new size only
    assert (None, "y2") == (memory.get("c"), memory.get("b"))
    assert 7 == memory.nbytes


def test_a_value_larger_than_the_whole_memory_is_not_remembered() -> None:
    memory: BoundedMemory[str, str] = BoundedMemory(max_entries=10, max_bytes=10)
    memory.put("a", "x", 4)
    memory.put("huge", "y", 11)
    assert (None, "x") == (memory.get("huge"), memory.get("a"))


def test_a_memory_needs_room() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BoundedMemory(max_entries=0, max_bytes=1)


def test_hostile_batches_of_huge_distinct_pem_texts_stay_within_the_byte_bound() -> None:
    """The review's attack: every session a new 1 MiB PEM text (one certificate and
    text outside the PEM block, which is ignored). Before, 2,048 such texts were kept
    whole (about 2 GiB); now the memory holds digests and at most its byte bound."""
    _chain_from_pem.cache_clear()
    leaf_pem = INTER.issue("server1.fabrikam.com").chain_pem()
    padding = "x" * (1024 * 1024 - len(leaf_pem) - 16)
    for n in range(48):
        TLSFacts.from_json({"peer_chain_pem": f"{leaf_pem}{n:08d}{padding}"})
    assert _chain_from_pem.memory.nbytes <= MAX_PEM_CHAIN_BYTES
    assert len(_chain_from_pem.memory) < 48
    assert all(isinstance(key, bytes) and len(key) == 32 for key in _chain_from_pem.memory._entries)


def test_identical_certificates_are_held_once_across_chains() -> None:
    """Two different PEM texts presenting the same intermediate share one object."""
    first = TLSFacts.from_json({"peer_chain_pem": INTER.issue("a.fabrikam.com").chain_pem()})
    second = TLSFacts.from_json({"peer_chain_pem": INTER.issue("b.fabrikam.com").chain_pem()})
    assert isinstance(first.certificate, PresentedChain)
    assert isinstance(second.certificate, PresentedChain)
    assert first.certificate.certificates[1] is second.certificate.certificates[1]
    assert CHECKED_CERTIFICATES.nbytes <= 16 * 1024 * 1024


def test_the_memory_of_checked_certificates_is_bounded_in_bytes() -> None:
    memory = CheckedCertificates(maxsize=1000, max_bytes=8 * 1024)
    for n in range(20):
        chain = PresentedChain.from_pem(self_signed(f"s{n}.fabrikam.com").chain_pem())
        memory.add(chain.leaf, chain.leaf.public_bytes(serialization.Encoding.DER))
    assert memory.nbytes <= 8 * 1024
    assert 0 < len(memory) < 20


def test_the_memory_of_chain_verdicts_is_bounded_in_bytes() -> None:
    cache = ChainVerdictCache(maxsize=1000, max_bytes=4 * 1024)
    trust = TrustStore.from_pem(ROOT.cert_pem())
    for n in range(20):
        chain = PresentedChain.from_pem(self_signed(f"v{n}.fabrikam.com").chain_pem())
        cache.validate(chain, trust=trust, at=NOW, purpose=Purpose.INBOUND)
    assert cache.nbytes <= 4 * 1024
    assert 0 < len(cache) < 20
