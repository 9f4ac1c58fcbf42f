"""The policy file (TOML, section 9): an edge that reads files, then hands a
mapping and a parsed trust store to the pure :meth:`Policy.from_mapping`."""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import attrs
import tomli

from tlsconnector._errors import InvalidValue, PolicyError, Problem
from tlsconnector._gc import gc_paused
from tlsconnector._model import Policy
from tlsconnector._reading import _INBOUND_KEYS, _OUTBOUND_KEYS, policy_from_mapping
from tlsconnector._revocation_settings import MAX_CRL_BYTES, MAX_CRLS

# Speed: cryptography (the trust store, CRLs) and ssl (the system's CA paths) are
# imported when a policy needs them, so that `tlsconnector check` on a policy without
# [trust] files starts without them (docs/performance.md, "Start-up").
if TYPE_CHECKING:
    from cryptography import x509

    from tlsconnector._chains import TrustStore
    from tlsconnector._revocation import CrlSet, RevocationList

__all__ = ["load_policy", "load_policy_for_lint", "system_trust_store"]

_Path = str | os.PathLike[str]

#: A policy file larger than this is refused before parsing (section 8 bounds).
MAX_POLICY_BYTES = 16 * 1024 * 1024
MAX_CA_FILE_BYTES = 16 * 1024 * 1024
#: ``[trust] crl_files``: at most this many files, each at most MAX_CRL_BYTES, and
#: at most MAX_CRL_TOTAL_BYTES in all (section 11; the CRL count and revoked serials
#: are bounded by the core's CrlSet).
MAX_CRL_FILES = MAX_CRLS
MAX_CRL_TOTAL_BYTES = 1024 * 1024 * 1024


def load_policy(
    path: str | os.PathLike[str],
    *,
    use_system_trust: bool = True,
    reuse: Policy | None = None,
    keep_tables: bool = False,
) -> Policy:
    """Read, validate and return the policy at ``path``.

    ``[trust] ca_file`` is read relative to the policy file. Without it, the
    system's CA bundle is used (when ``use_system_trust``); with neither, no
    certificate chain validates and certificate checks fail closed.

    A second policy loaded beside a first (``tlsconnector diff``) can reuse the
    first's connectors: load the first with ``keep_tables=True`` (it then keeps its
    decoded connector tables, about as much memory again as its connectors), and the
    second with ``reuse=first``. Each connector table of the second file equal to one
    of the first (same keys, values and types) then gives the first's connector
    object instead of reading it again; the file is parsed and every other part read
    and checked as without ``reuse``, and the result is equal (``==``) to a load
    without it, with the same problems. A ``reuse`` policy that kept no tables
    changes nothing.

    Raises :class:`PolicyError` listing every problem, including unreadable files.
    """
    # Speed: a load allocates millions of objects that all stay alive (the decoded
    # TOML, then the connectors); collection is paused meanwhile (tlsconnector._gc).
    with gc_paused():
        return _load_policy(
            path,
            system_trust="always" if use_system_trust else "never",
            reuse=reuse,
            keep_tables=keep_tables,
        )


def load_policy_for_lint(path: str | os.PathLike[str]) -> Policy:
    """:func:`load_policy` for validating and linting the file (``tlsconnector check``),
    not for deciding: the system's CA bundle, which no lint reads, is read only when
    the file has ``[trust] crl_files`` and no ``ca_file`` (the CRLs ride on the trust
    store the decisions would use, and the lint reads them). Every problem of the file
    is reported as by :func:`load_policy`."""
    with gc_paused():
        return _load_policy(path, system_trust="for-crls")


def _load_policy(
    path: str | os.PathLike[str],
    *,
    system_trust: Literal["always", "never", "for-crls"],
    reuse: Policy | None = None,
    keep_tables: bool = False,
) -> Policy:
    # os.path, not pathlib: importing pathlib alone costs a few milliseconds of a
    # command's start-up (docs/performance.md, "Start-up").
    policy_path = os.fspath(path)
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
        raise PolicyError([_toml_error(str(path), exc)]) from None
    except RecursionError:
        # The parser recurses per nesting level; a hostile file must not crash us (section 8).
        raise PolicyError([Problem(None, "(file)", str(path), "nested too deeply")]) from None
    except InvalidValue as exc:
        raise PolicyError([Problem(None, "(file)", str(path), exc.reason)]) from None
    problems: list[Problem] = []
    table = data.get("trust")
    use_system_trust = system_trust == "always" or (
        system_trust == "for-crls" and isinstance(table, Mapping) and bool(table.get("crl_files"))
    )
    base = os.path.dirname(policy_path)
    trust = _load_trust(data, base, problems, use_system_trust=use_system_trust)
    crls = _load_crls(data, base, problems)
    if trust is not None and crls is not None:
        trust = trust.with_crls(crls)
    try:
        # The decoded file is ours alone: its tables may be kept for a later reuse.
        policy = policy_from_mapping(data, trust=trust, reuse=reuse, keep_tables=keep_tables)
    except PolicyError as exc:
        problems += exc.problems
    if problems:
        lines = _Lines(raw.decode("utf-8"), data)
        raise PolicyError([attrs.evolve(p, line=lines.of(p)) for p in problems]) from None
    return policy


def _toml_error(path: str, exc: tomli.TOMLDecodeError) -> Problem:
    """A syntax error, on the line the TOML parser names."""
    line = getattr(exc, "lineno", None)
    return Problem(
        None,
        "(file)",
        path,
        f"not valid TOML: {exc}",
        line=line if isinstance(line, int) and line > 0 else None,
    )


# --- Lines of problems (the file's, for messages) ------------------------------------

_MULTILINE_QUOTES = ('"""', "'''")
_DIRECTION_KEYS = {"inbound": frozenset(_INBOUND_KEYS), "outbound": frozenset(_OUTBOUND_KEYS)}


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """A table header, a key, a numbered connector (compiled when a problem is named)."""
    return (
        re.compile(r"\s*(\[\[?)\s*([^\]]*?)\s*(\]\]?)\s*(#.*)?$"),
        re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*[.=]"""),
        re.compile(r"(inbound|outbound)\[(\d+)\]$"),
    )


class _Lines:
    """Where each table and key of a policy file is: the header line of ``[trust]``,
    ``[inbound]`` and each ``[[inbound]]``/``[[outbound]]``, and the line of each key.

    Only where the file's own layout says so for certain: a direction whose headers do
    not number its decoded tables (tables written inline, say), a key given twice or
    a connector name two tables share gives no line. A line inside a multi-line string
    is never read as a header or a key.
    """

    def __init__(self, text: str, data: Mapping[str, Any]) -> None:
        #: (table, index) -> (header line, {key: line}); ("", None) the top level.
        self.tables: dict[tuple[str, int | None], tuple[int, dict[str, int]]] = {}
        self.data = data
        counts = {"inbound": 0, "outbound": 0}
        current: dict[str, int] = {}
        self.tables[("", None)] = (0, current)
        in_string: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            header = _patterns()[0].match(line)
            if header is not None and header.group(1) == "[[" and header.group(3) == "]]":
                name = header.group(2)
                index = counts.get(name)
                if index is not None:
                    counts[name] = index + 1
                current = {}
                self.tables[(name, index)] = (number, current)
                continue
            if header is not None and header.group(1) == "[" and header.group(3) == "]":
                name = header.group(2)
                owner, dot, sub = name.partition(".")
                if dot and counts.get(owner):
                    # [inbound.extra]: a key (a sub-table) of the last [[inbound]]; its
                    # problem is on this header's line.
                    keys = self.tables[(owner, counts[owner] - 1)][1]
                    sub_key = _unquote(sub.partition(".")[0].strip())
                    keys[sub_key] = -1 if sub_key in keys else number
                elif dot and owner == "trust" and ("trust", None) in self.tables:
                    keys = self.tables[("trust", None)][1]
                    sub_key = _unquote(sub.partition(".")[0].strip())
                    keys[sub_key] = -1 if sub_key in keys else number
                current = {}
                self.tables.setdefault((name, None), (number, current))
                continue
            key = _patterns()[1].match(line)
            if key is not None:
                name = _unquote(key.group(1))
                # A key given twice (TOML refuses that; dotted keys) keeps no line.
                current[name] = -1 if name in current else number
            for quotes in _MULTILINE_QUOTES:
                if line.count(quotes) % 2 == 1:
                    in_string = quotes
                    break
        for direction, count in counts.items():
            tables = data.get(direction)
            if not isinstance(tables, list) or len(tables) != count:
                for index in range(count):
                    self.tables.pop((direction, index), None)

    def of(self, problem: Problem) -> int | None:
        """The line ``problem`` is on, or None when the file's layout does not say."""
        if problem.line is not None:
            return problem.line
        first = problem.field.partition(", ")[0]
        key = re.split(r"[\[.]", first, maxsplit=1)[0]
        if problem.connector is None:
            numbered = _patterns()[2].match(first)
            if numbered is not None:
                return self._line((numbered.group(1), int(numbered.group(2))), None)
            if first.startswith("trust.") and ("trust", None) in self.tables:
                return self._line(("trust", None), re.split(r"[\[.]", first[6:])[0])
            if (key, None) in self.tables:  # [inbound], [trust], [other]
                return self.tables[(key, None)][0]
            return self._line(("", None), key)
        places = self._connector_tables(problem.connector)
        if len({place[0] for place in places}) > 1:
            # The same name inbound and outbound: the direction's key.
            places = [place for place in places if key in _DIRECTION_KEYS[place[0]]]
        if len(places) > 1:  # a key both directions have: the table that has it
            places = [place for place in places if key in self.tables[place][1]]
        if len(places) > 1 and key == "name" and len({p[0] for p in places}) == 1:
            # A name two tables of one direction share: the duplicate is reported for
            # the later table (the earlier one holds the name), so its line is that one's.
            places = places[-1:]
        return self._line(places[0], key) if len(places) == 1 else None

    def _connector_tables(self, connector: str) -> list[tuple[str, int]]:
        numbered = _patterns()[2].match(connector)
        if numbered is not None:  # a connector without a valid name
            place = (numbered.group(1), int(numbered.group(2)))
            return [place] if place in self.tables else []
        places = []
        for direction in ("inbound", "outbound"):
            tables = self.data.get(direction)
            if not isinstance(tables, list):
                continue
            for index, table in enumerate(tables):
                if isinstance(table, Mapping) and table.get("name") == connector:
                    places.append((direction, index))
        return [place for place in places if place in self.tables]

    def _line(self, place: tuple[str, int | None], key: str | None) -> int | None:
        """The key's line in the table at ``place``, else the table's header line."""
        if place not in self.tables:
            return None
        header, keys = self.tables[place]
        line = keys.get(key, header) if key is not None else header
        return line if line > 0 else None


def _unquote(key: str) -> str:
    if key.startswith("'"):
        return key[1:-1]
    if key.startswith('"'):
        try:
            import json  # only to name the line of a problem

            text = json.loads(key)
        except ValueError:
            return key
        return text if isinstance(text, str) else key
    return key


def _read_bounded(path: _Path, limit: int) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InvalidValue(str(path), f"larger than {limit} bytes")
    return data


def _os_message(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or exc}"


def _load_trust(
    data: Mapping[str, Any], base: _Path, problems: list[Problem], *, use_system_trust: bool
) -> TrustStore | None:
    table = data.get("trust", {})
    ca_file = table.get("ca_file") if isinstance(table, Mapping) else None
    if not isinstance(ca_file, str):
        # A wrong type is reported by Policy.from_mapping; fall back to the system.
        return system_trust_store() if use_system_trust and ca_file is None else None
    path = os.path.join(base, ca_file)
    from tlsconnector._chains import TrustStore

    try:
        return TrustStore.from_pem(_read_bounded(path, MAX_CA_FILE_BYTES), ca_file=ca_file)
    except OSError as exc:
        problems.append(Problem(None, "trust.ca_file", ca_file, _os_message(exc)))
    except InvalidValue as exc:
        problems.append(Problem(None, "trust.ca_file", ca_file, exc.reason))
    return None


def _load_crls(data: Mapping[str, Any], base: _Path, problems: list[Problem]) -> CrlSet | None:
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
    from tlsconnector._revocation import CrlSet, RevocationList, load_crls

    lists: list[RevocationList] = []
    total = 0
    for position, name in enumerate(files):
        if not isinstance(name, str) or not name:
            continue
        field = f"trust.crl_files[{position}]"
        try:
            raw = _read_bounded(os.path.join(base, name), MAX_CRL_BYTES)
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
    import ssl

    from tlsconnector._chains import TrustStore

    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if not candidate or not os.path.isfile(candidate):
            continue
        try:
            text = _read_bounded(candidate, MAX_CA_FILE_BYTES).decode("ascii", "replace")
        except (OSError, InvalidValue):
            continue
        anchors: list[x509.Certificate] = []
        for block in re.findall(_PEM_BLOCK, text):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    anchors.extend(TrustStore.from_pem(block).certificates)
                except InvalidValue:
                    continue
        if anchors:
            return TrustStore(tuple(anchors))
    return None


_PEM_BLOCK = r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----"
