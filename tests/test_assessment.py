"""Cached certificate work answers exactly what uncached work would (issue: speed).

The cache may only save time: a validity result is never reused at a time where
the answer could differ, nor across trust stores or directions.
"""

from __future__ import annotations

import datetime as dt

from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given
from hypothesis import strategies as st

from tlsconnector import PresentedChain, Purpose, TrustStore, validate_chain
from tlsconnector._assessment import ChainVerdictCache

from certmint import CA, NOW, self_signed

ROOT = CA("Cache Root")
OTHER = CA("Other Root")
INTER = ROOT.intermediate("Cache Issuing CA")
TRUST = TrustStore.from_pem(ROOT.cert_pem())
OTHER_TRUST = TrustStore.from_pem(OTHER.cert_pem())
START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
END = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
LEAF = INTER.issue("server1.fabrikam.com", not_before=START, not_after=END)
CHAIN = PresentedChain.from_pem(LEAF.chain_pem())


def test_a_trusted_verdict_is_not_reused_after_the_leaf_expires() -> None:
    cache = ChainVerdictCache()
    assert cache.validate(CHAIN, trust=TRUST, at=START, purpose=Purpose.INBOUND).trusted
    later = END + dt.timedelta(seconds=1)
    verdict = cache.validate(CHAIN, trust=TRUST, at=later, purpose=Purpose.INBOUND)
    assert "certificate-expired" == verdict.code


def test_a_not_yet_valid_verdict_is_not_reused_once_valid() -> None:
    cache = ChainVerdictCache()
    early = START - dt.timedelta(seconds=1)
    assert not cache.validate(CHAIN, trust=TRUST, at=early, purpose=Purpose.INBOUND).trusted
    assert cache.validate(CHAIN, trust=TRUST, at=START, purpose=Purpose.INBOUND).trusted


def test_a_trusted_verdict_is_reused_inside_its_window() -> None:
    cache = ChainVerdictCache()
    first = cache.validate(CHAIN, trust=TRUST, at=START, purpose=Purpose.INBOUND)
    again = cache.validate(CHAIN, trust=TRUST, at=END, purpose=Purpose.INBOUND)
    assert first is again
    assert 1 == len(cache)


def test_trust_stores_and_directions_never_share_answers() -> None:
    cache = ChainVerdictCache()
    assert cache.validate(CHAIN, trust=TRUST, at=NOW - dt.timedelta(days=90), purpose=Purpose.INBOUND).trusted
    assert not cache.validate(
        CHAIN, trust=OTHER_TRUST, at=NOW - dt.timedelta(days=90), purpose=Purpose.INBOUND
    ).trusted
    client_only = PresentedChain.from_pem(
        INTER.issue("server1.fabrikam.com", eku=[ExtendedKeyUsageOID.CLIENT_AUTH]).chain_pem()
    )
    assert cache.validate(client_only, trust=TRUST, at=NOW, purpose=Purpose.INBOUND).trusted
    assert not cache.validate(client_only, trust=TRUST, at=NOW, purpose=Purpose.OUTBOUND).trusted


def test_the_cache_is_bounded() -> None:
    cache = ChainVerdictCache(maxsize=3)
    stranger = PresentedChain.from_pem(self_signed("x.fabrikam.com").chain_pem())
    for seconds in range(10):
        at = NOW + dt.timedelta(seconds=seconds)
        cache.validate(stranger, trust=TRUST, at=at, purpose=Purpose.INBOUND)
    assert 3 == len(cache)


@given(st.datetimes(min_value=dt.datetime(2025, 12, 1), max_value=dt.datetime(2026, 10, 1)))
def test_cached_answers_equal_fresh_ones_at_any_time(moment: dt.datetime) -> None:
    """Whatever was cached before, the answer at any time is validate_chain's."""
    at = moment.replace(tzinfo=dt.UTC)
    cache = ChainVerdictCache()
    cache.validate(CHAIN, trust=TRUST, at=START + dt.timedelta(days=30), purpose=Purpose.INBOUND)
    cached = cache.validate(CHAIN, trust=TRUST, at=at, purpose=Purpose.INBOUND)
    fresh = validate_chain(CHAIN, trust=TRUST, at=at, purpose=Purpose.INBOUND)
    assert (fresh.trusted, fresh.code) == (cached.trusted, cached.code)
