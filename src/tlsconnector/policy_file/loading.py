"""The policy file (TOML, section 9): an edge that reads files, then hands a
mapping and a parsed trust store to the pure :meth:`Policy.from_mapping`."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import ssl
import threading
import warnings
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli
from cryptography import x509

from tlsconnector._chains import TrustStore
from tlsconnector._errors import InvalidValue, PolicyError, Problem
from tlsconnector._model import Policy
from tlsconnector._revocation import (
    MAX_CRL_BYTES,
    MAX_CRLS,
    CrlSet,
    RevocationList,
    load_crls,
)

__all__ = ["load_policy", "system_trust_store"]

#: A policy file larger than this is refused before parsing (section 8 bounds).
MAX_POLICY_BYTES = 16 * 1024 * 1024
MAX_CA_FILE_BYTES = 16 * 1024 * 1024
#: ``[trust] crl_files``: at most this many files, each at most MAX_CRL_BYTES, and
#: at most MAX_CRL_TOTAL_BYTES in all (section 11; the CRL count and revoked serials
#: are bounded by the core's CrlSet).
MAX_CRL_FILES = MAX_CRLS
MAX_CRL_TOTAL_BYTES = 1024 * 1024 * 1024


def load_policy(path: str | os.PathLike[str], *, use_system_trust: bool = True) -> Policy:
    """Read, validate and return the policy at ``path``.

    ``[trust] ca_file`` is read relative to the policy file. Without it, the
    system's CA bundle is used (when ``use_system_trust``); with neither, no
    certificate chain validates and certificate checks fail closed.

    Raises :class:`PolicyError` listing every problem, including unreadable files.
    """
    with _gc_paused():
        return _load_policy(path, use_system_trust=use_system_trust)


# Speed: loading a large policy allocates millions of objects that all stay alive (the
# decoded TOML, then the connectors), and CPython's cyclic garbage collector would walk
# them again and again while they are being built (about a third of the load time at
# 100,000 connectors). Nothing here creates reference cycles worth collecting early, so
# automatic collection is paused for the load and resumed after, exactly as it was. A
# depth count under a lock keeps concurrent loads from leaving it paused.
_gc_lock = threading.Lock()
_gc_depth = 0
_gc_resume = False


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    global _gc_depth, _gc_resume  # process-wide, like the collector it pauses
    with _gc_lock:
        if _gc_depth == 0:
            _gc_resume = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_resume:
                gc.enable()


def _load_policy(path: str | os.PathLike[str], *, use_system_trust: bool) -> Policy:
    policy_path = Path(path)
    try:
        raw = _read_bounded(policy_path, MAX_POLICY_BYTES)
        # tomli is the parser the standard library's tomllib was made from; its
        # compiled wheels read a large policy about 1.6 times faster.
        data = tomli.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise PolicyError([Problem(None, "(file)", str(path), _os_message(exc))]) from None
    except UnicodeDecodeError as exc:
        raise PolicyError(
            [Problem(None, "(file)", str(path), f"not UTF-8 text (byte {exc.start})")]
        ) from None
    except tomli.TOMLDecodeError as exc:
        raise PolicyError([Problem(None, "(file)", str(path), f"not valid TOML: {exc}")]) from None
    except RecursionError:
        # The parser recurses per nesting level; a hostile file must not crash us (section 8).
        raise PolicyError([Problem(None, "(file)", str(path), "nested too deeply")]) from None
    except InvalidValue as exc:
        raise PolicyError([Problem(None, "(file)", str(path), exc.reason)]) from None
    problems: list[Problem] = []
    trust = _load_trust(data, policy_path.parent, problems, use_system_trust=use_system_trust)
    crls = _load_crls(data, policy_path.parent, problems)
    if trust is not None and crls is not None:
        trust = trust.with_crls(crls)
    try:
        policy = Policy.from_mapping(data, trust=trust)
    except PolicyError as exc:
        raise PolicyError(problems + list(exc.problems)) from None
    if problems:
        raise PolicyError(problems)
    return policy


def _read_bounded(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InvalidValue(str(path), f"larger than {limit} bytes")
    return data


def _os_message(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or exc}"


def _load_trust(
    data: Mapping[str, Any], base: Path, problems: list[Problem], *, use_system_trust: bool
) -> TrustStore | None:
    table = data.get("trust", {})
    ca_file = table.get("ca_file") if isinstance(table, Mapping) else None
    if not isinstance(ca_file, str):
        # A wrong type is reported by Policy.from_mapping; fall back to the system.
        return system_trust_store() if use_system_trust and ca_file is None else None
    path = base / ca_file
    try:
        return TrustStore.from_pem(_read_bounded(path, MAX_CA_FILE_BYTES))
    except OSError as exc:
        problems.append(Problem(None, "trust.ca_file", ca_file, _os_message(exc)))
    except InvalidValue as exc:
        problems.append(Problem(None, "trust.ca_file", ca_file, exc.reason))
    return None


def _load_crls(data: Mapping[str, Any], base: Path, problems: list[Problem]) -> CrlSet | None:
    """``[trust] crl_files`` (section 11): PEM or DER files, relative to the policy file,
    every problem reported. A wrong shape is reported by Policy.from_mapping."""
    table = data.get("trust", {})
    files = table.get("crl_files") if isinstance(table, Mapping) else None
    if not isinstance(files, list) or not files:
        return None
    if len(files) > MAX_CRL_FILES:
        problems.append(
            Problem(None, "trust.crl_files", f"<{len(files)} files>", f"more than {MAX_CRL_FILES}")
        )
        return None
    lists: list[RevocationList] = []
    total = 0
    for position, name in enumerate(files):
        if not isinstance(name, str) or not name:
            continue
        field = f"trust.crl_files[{position}]"
        try:
            raw = _read_bounded(base / name, MAX_CRL_BYTES)
            total += len(raw)
            if total > MAX_CRL_TOTAL_BYTES:
                problems.append(
                    Problem(None, field, name, f"the CRL files exceed {MAX_CRL_TOTAL_BYTES} bytes")
                )
                return None
            for crl in load_crls(raw, "CRL file"):
                lists.append(RevocationList.from_crl(crl, "CRL file"))
        except OSError as exc:
            problems.append(Problem(None, field, name, _os_message(exc)))
        except InvalidValue as exc:
            problems.append(Problem(None, field, name, exc.reason))
    try:
        # The load time, for the lint's "nextUpdate has passed" (an edge may read the clock).
        return CrlSet(lists, loaded_at=datetime.now(UTC))
    except InvalidValue as exc:
        problems.append(Problem(None, "trust.crl_files", f"<{len(files)} files>", exc.reason))
    return None


def system_trust_store() -> TrustStore | None:
    """The host's CA bundle, or None when there is none (an edge: reads files).

    Certificates are decoded one by one and the few a system bundle may hold that
    ``cryptography`` refuses are skipped, so one odd root cannot empty the store.
    """
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if not candidate or not os.path.isfile(candidate):
            continue
        try:
            text = _read_bounded(Path(candidate), MAX_CA_FILE_BYTES).decode("ascii", "replace")
        except (OSError, InvalidValue):
            continue
        anchors: list[x509.Certificate] = []
        for block in _PEM_BLOCK.findall(text):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    anchors.extend(TrustStore.from_pem(block).certificates)
                except InvalidValue:
                    continue
        if anchors:
            return TrustStore(tuple(anchors))
    return None


_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")
