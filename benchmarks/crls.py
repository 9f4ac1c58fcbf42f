"""Real CRLs for the revocation benchmark, minted with ``cryptography``'s CRL builder.

A set of ``count`` complete CRLs (spec section 11) of ``per_crl`` revoked serials
each: first the CRLs of the CAs the caller names (the issuers of the chains a
decision validates, signed with their own keys, listing the serials the caller
wants revoked and random ones up to ``per_crl``), then CRLs of other issuers
(``tlsconnector Bench CRL Issuer N``, each with its own EC P-256 key), which no
chain of the benchmark meets but which the set indexes all the same.

Every serial is drawn from a seeded generator (the same set on every run), 120
bits long like the serials of public CAs, and distinct within a CRL. Every CRL is
current at :data:`benchmarks.generate.NOW`: thisUpdate a day before, nextUpdate a
week after, each revocation thirty days before.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchmarks.generate import NOW
from tlsconnector.testing._pki import CA

__all__ = [
    "MAX_MINTED_SERIALS",
    "REVOKED_AT",
    "THIS_UPDATE",
    "crl_policy_toml",
    "filler_issuer",
    "mint_crls",
    "write_crl_files",
]

THIS_UPDATE = NOW - dt.timedelta(days=1)
NEXT_UPDATE = NOW + dt.timedelta(days=7)
REVOKED_AT = NOW - dt.timedelta(days=30)
#: A bound on what one call mints (the core accepts 4,000,000 serials in a set).
MAX_MINTED_SERIALS = 4_000_000
_SERIAL_BITS = 120


def filler_issuer(n: int) -> x509.Name:
    """The name of the ``n``-th issuer no chain of the benchmark meets."""
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"tlsconnector Bench CRL Issuer {n}")]
    )


def _serials(rng: random.Random, count: int, listed: Sequence[int]) -> list[int]:
    """``listed`` then random serials, ``count`` in all, all distinct."""
    chosen = list(dict.fromkeys(listed))
    seen = set(chosen)
    while len(chosen) < count:
        serial = rng.getrandbits(_SERIAL_BITS) | (1 << (_SERIAL_BITS - 1))
        if serial not in seen:
            seen.add(serial)
            chosen.append(serial)
    return chosen


def _crl(
    issuer: x509.Name,
    key: object,
    serials: Sequence[int],
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(THIS_UPDATE)
        .next_update(NEXT_UPDATE)
    )
    for serial in serials:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(REVOKED_AT)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.DER)


def mint_crls(
    count: int,
    per_crl: int,
    *,
    issuers: Sequence[CA] = (),
    listed: Mapping[int, Sequence[int]] | None = None,
    seed: int = 16,
) -> list[bytes]:
    """``count`` CRLs (DER) of ``per_crl`` revoked serials each; the first ones are
    those of ``issuers`` (in order, signed by each CA's key), listing the serials
    ``listed[i]`` gives for ``issuers[i]`` among their ``per_crl``.

    Raises ValueError when the sizes are out of bounds (``count`` below the number of
    issuers, a CA asked to list more than ``per_crl`` serials, more than
    :data:`MAX_MINTED_SERIALS` in all).
    """
    listed = listed or {}
    if count < len(issuers) or per_crl < 0 or count * per_crl > MAX_MINTED_SERIALS:
        raise ValueError(
            f"mint_crls: count={count}, per_crl={per_crl} for {len(issuers)} issuers "
            f"(at most {MAX_MINTED_SERIALS} serials in all)"
        )
    for position, wanted in listed.items():
        if not 0 <= position < len(issuers) or len(set(wanted)) > per_crl:
            raise ValueError(
                f"mint_crls: listed[{position}] holds {len(wanted)} serials for "
                f"{len(issuers)} issuers of {per_crl} serials each"
            )
    rng = random.Random(seed)  # noqa: S311 - reproducible serials, not secrets
    out: list[bytes] = []
    for position, ca in enumerate(issuers):
        out.append(_crl(ca.subject, ca.key, _serials(rng, per_crl, listed.get(position, ()))))
    for n in range(count - len(issuers)):
        key = ec.generate_private_key(ec.SECP256R1())
        out.append(_crl(filler_issuer(n), key, _serials(rng, per_crl, ())))
    return out


def write_crl_files(directory: Path, ders: Sequence[bytes]) -> list[str]:
    """Each CRL in its own DER file under ``directory``; the names, relative to it."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for position, der in enumerate(ders):
        name = f"crl-{position:05d}.der"
        (directory / name).write_bytes(der)
        names.append(name)
    return names


def crl_policy_toml(policy_text: str, ca_file: str, crl_files: Sequence[str]) -> str:
    """``policy_text`` (from :func:`benchmarks.generate.policy_toml` with ``ca_file``)
    with ``[trust] crl_files`` naming ``crl_files``."""
    line = f"ca_file = {json.dumps(ca_file)}\n"
    if line not in policy_text:
        raise ValueError(f"crl_policy_toml: no {line.strip()!r} line in the policy text")
    listed = ", ".join(json.dumps(name) for name in crl_files)
    return policy_text.replace(line, f"{line}crl_files = [{listed}]\n", 1)
