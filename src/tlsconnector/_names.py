"""Domain names, domain scope patterns and certificate-name matching (spec sections 2 and 3).

Everything here is pure: strings in, canonical values or booleans out. Raw text enters
through :func:`canonical_domain`, :meth:`DomainPattern.parse` and
:meth:`CertificateName.parse`; the rest of the library compares only canonical forms.

Canonical form (section 2): ASCII lower case (never Unicode ``lower()``), one trailing
dot removed, U-labels converted to A-labels with IDNA 2008 (the ``idna`` package),
existing ``xn--`` labels validated.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from collections.abc import Container, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import attrs

from ._errors import InvalidValue, show

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = [
    "CertificateName",
    "DomainPattern",
    "PatternKind",
    "canonical_domain",
    "is_public_suffix",
    "match_certificate_name",
    "usable_cn",
]

# RFC 1035 2.3.4: 63 octets per label, 253 octets per name (without the trailing dot).
_MAX_LABEL = 63
_MAX_NAME = 253
# Section 3 rule 2: the X.509 upper bound for a CN (ub-common-name, RFC 5280 appendix A).
_MAX_CN = 64

# Only A-Z are folded: section 2 forbids Unicode lower() (it would turn e.g. the Kelvin
# sign into "k" and make two different names compare equal).
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# Section 2: domain labels are letters, digits, hyphens and underscores (underscores
# occur in real domains, e.g. _dmarc; the hostname rules are for certificate names).
_DOMAIN_LABEL = re.compile(r"[a-z0-9_-]+")
# Section 3 rule 3: certificate-name labels are LDH only (RFC 1123 2.1), no underscore.
_LDH_LABEL = re.compile(r"[A-Za-z0-9-]+")
# Section 3 rule 6 / section 2: a last label made only of digits is IP-like. The hex
# spelling ("0x7f") is included because inet_aton() and WHATWG URL parsers read it as a
# number too (a deliberate, documented extension; no real TLD looks like that).
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
# The fast path of canonical_domain(): lower-case ASCII labels of 1-63 letters, digits,
# '-' and '_', not starting or ending with '-', not starting with "xn--" (A-labels are
# validated by the full path), the last one not numeric (_NUMERIC_LABEL on lower case).
_FAST_LABEL = r"(?!xn--)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_FAST_DOMAIN = re.compile(rf"(?:{_FAST_LABEL}\.)*(?![0-9]+\Z|0x[0-9a-f]*\Z){_FAST_LABEL}")
# Section 3 rule 3 for a whole name at once (speed: one match, not one per label):
# every label is an LDH label as _is_ldh_label() says.
_LDH = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LDH_NAME = re.compile(rf"{_LDH}(?:\.{_LDH})*")


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def _looks_like_ip(text: str) -> str | None:
    """Why ``text`` reads as an IP literal (sections 2 and 3 rule 6), or None."""
    if text.startswith("[") or text.endswith("]"):
        return "an IP literal is not a domain name"
    if ":" in text:
        return "':' is not allowed in a name (an IPv6 address or a port is not a domain name)"
    last = text.rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL.fullmatch(last):
        # Speed: without ':' only IPv4 could parse, and an IPv4 address always ends in
        # a numeric label, so ip_address() (two failed parses) cannot succeed here.
        return None
    try:
        ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return "an IP address is not a domain name"
    return "the last label is numeric, so the name looks like an IP address"


def _idna_reason(err: UnicodeError) -> str:
    # idna's messages quote the label with repr(); escape to ASCII so that no bidi or
    # control character from untrusted input reaches a log unescaped.
    return str(err).encode("ascii", "backslashreplace").decode("ascii")


def _canonical_label(label: str) -> str:
    """One label of a domain in canonical form (section 2), or InvalidValue."""
    if not label:
        raise InvalidValue(label, "empty label")
    if not label.isascii():
        # Section 2: U-label -> A-label with IDNA 2008 (no UTS 46 mapping, so no case
        # folding of non-ASCII letters: "BÜCHER" is refused rather than guessed at).
        import idna  # speed: only names with U-labels or A-labels need it

        try:
            return idna.alabel(_ascii_lower(label)).decode("ascii")
        except (idna.IDNAError, UnicodeError) as err:
            reason = f"not a valid IDNA 2008 label: {_idna_reason(err)}"
            if label != label.lower():  # Unicode lower() only to word a hint, never to fold
                reason += " (non-ASCII letters must be given in lower case)"
            raise InvalidValue(label, reason) from err
    lowered = _ascii_lower(label)
    if len(lowered) > _MAX_LABEL:
        raise InvalidValue(label, f"label longer than {_MAX_LABEL} octets")
    if not _DOMAIN_LABEL.fullmatch(lowered):
        raise InvalidValue(label, "label may contain only letters, digits, '-' and '_'")
    if lowered.startswith("-") or lowered.endswith("-"):
        raise InvalidValue(label, "label must not start or end with '-'")
    if lowered.startswith("xn--"):
        # Section 2: an existing A-label must decode (idna also refuses non-canonical
        # Punycode, RFC 5891 5.3).
        import idna

        try:
            idna.ulabel(lowered)
        except (idna.IDNAError, UnicodeError) as err:
            raise InvalidValue(label, "not a valid A-label (xn-- label does not decode)") from err
    return lowered


def canonical_domain(text: str) -> str:
    """Normalise and validate a plain domain name (no wildcard), section 2.

    Returns the canonical form: ASCII lower case, one trailing dot removed, A-labels.
    Raises :class:`InvalidValue` with the reason when ``text`` is not a domain name.
    Idempotent: ``canonical_domain(canonical_domain(x)) == canonical_domain(x)``.
    """
    if not isinstance(text, str):
        raise InvalidValue(text, "a domain name must be a string")
    if text.isascii():
        # Speed: the common case, an ASCII name of valid letter-digit-hyphen-underscore
        # labels with no xn-- label and a non-numeric last label, passes every check
        # below unchanged but for ASCII lower case (str.lower() on ASCII text folds
        # exactly A-Z); anything else takes the full path.
        lowered = (text[:-1] if text.endswith(".") else text).lower()
        if len(lowered) <= _MAX_NAME and _FAST_DOMAIN.fullmatch(lowered) is not None:
            return lowered
    return _canonical_domain_full(text)


def _canonical_domain_full(text: str) -> str:
    """:func:`canonical_domain` without its fast path (the reference it must agree with)."""
    # Section 2: exactly one trailing dot is removed.
    name = text[:-1] if text.endswith(".") else text
    if not name:
        raise InvalidValue(text, "empty domain name")
    # Bound the work on hostile input before IDNA: an A-label is never shorter than its
    # U-label in code points, so a longer text cannot fit in 253 octets.
    if len(name) > _MAX_NAME:
        raise InvalidValue(text, f"domain name longer than {_MAX_NAME} octets")
    if name.startswith("."):
        raise InvalidValue(text, "domain name must not start with a dot")
    if "*" in name:
        raise InvalidValue(text, "'*' is not allowed in a domain name")
    ip_reason = _looks_like_ip(name)
    if ip_reason is not None:
        raise InvalidValue(text, ip_reason)
    labels = []
    for label in name.split("."):
        if not label:
            raise InvalidValue(text, "domain name contains an empty label")
        try:
            labels.append(_canonical_label(label))
        except InvalidValue as err:
            raise InvalidValue(text, f"label {show(label, 70)}: {err.reason}") from err
    result = ".".join(labels)
    if len(result) > _MAX_NAME:
        raise InvalidValue(text, f"domain name longer than {_MAX_NAME} octets")
    # Checked again on the A-label form (section 2: IP literals are never domains).
    ip_reason = _looks_like_ip(result)
    if ip_reason is not None:  # pragma: no cover - an A-label is never numeric
        raise InvalidValue(text, ip_reason)
    return result


# --------------------------------------------------------------------------------------
# Section 2: domain scope patterns (sender_domains, recipient_domains)


class PatternKind(enum.Enum):
    """The three forms of a domain scope pattern (section 2)."""

    EXACT = "exact"  # "fabrikam.com": exactly that domain
    SUBTREE = "subtree"  # "*.fabrikam.com": the domain and all its subdomains
    ANY = "any"  # "*": every domain and the null sender


def _check_pattern_domain(
    instance: DomainPattern, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    # A programming-error guard only: raw text goes through DomainPattern.parse.
    if (instance.kind is PatternKind.ANY) != (value is None):
        raise ValueError("DomainPattern: domain must be None exactly when kind is ANY")


@attrs.frozen
class DomainPattern:
    """A domain scope pattern (section 2). Build it with :meth:`parse`."""

    kind: PatternKind
    domain: str | None = attrs.field(validator=_check_pattern_domain)

    @classmethod
    def parse(cls, text: str) -> DomainPattern:
        """Parse ``"fabrikam.com"``, ``"*.fabrikam.com"`` or ``"*"``; InvalidValue otherwise."""
        if not isinstance(text, str):
            raise InvalidValue(text, "a domain pattern must be a string")
        if text == "*":
            return cls(PatternKind.ANY, None)
        if text.startswith("*."):
            kind, domain = PatternKind.SUBTREE, text[2:]
            if "*" in domain:
                # Section 2: '*' only as the whole first label ("*.*.com" is invalid).
                raise InvalidValue(text, "'*' is allowed only once, as the whole first label")
        elif "*" in text:
            # Section 2: a.*.com, *x.com, f*.x.com, ** are all invalid.
            raise InvalidValue(text, "'*' is allowed only as the whole first label ('*.domain')")
        else:
            kind, domain = PatternKind.EXACT, text
        try:
            return cls(kind, canonical_domain(domain))
        except InvalidValue as err:
            raise InvalidValue(text, err.reason) from err

    def matches(self, domain: str | None) -> bool:
        """Whether the canonical ``domain`` is in scope; None is the null sender."""
        if self.kind is PatternKind.ANY:
            return True  # section 2 / 5.1: '*' also matches the null sender
        if domain is None or self.domain is None:
            return False  # section 5.1: the null sender has no domain
        if self.kind is PatternKind.EXACT:
            return domain == self.domain
        # Section 2: "*.fabrikam.com" is the domain and every subdomain at any depth.
        return domain == self.domain or domain.endswith("." + self.domain)

    @property
    def specificity(self) -> tuple[int, int]:
        """Sort key, larger is more specific: exact > longest ``*.suffix`` > ``*`` (section 2)."""
        if self.domain is None:
            return (0, 0)
        labels = self.domain.count(".") + 1
        return (2, labels) if self.kind is PatternKind.EXACT else (1, labels)

    def __str__(self) -> str:
        if self.kind is PatternKind.ANY:
            return "*"
        if self.kind is PatternKind.SUBTREE:
            return f"*.{self.domain}"
        return f"{self.domain}"


# --------------------------------------------------------------------------------------
# Section 3 rule 4: the Public Suffix List comes from a maintained package.
#
# Speed: building the package's PublicSuffixList parses the whole list and runs Python's
# IDNA codec on every one of its ~10,000 rules (about 0.06 CPU seconds, more than the
# rest of `tlsconnector check` on a small policy). Every name asked about here is ASCII
# (canonical domains and usable CNs are), so the ASCII names take a fast path: the
# same rules read from the package's own list file, looked up exactly as
# PublicSuffixList.is_public does (its algorithm, accept_unknown=True, below). Any
# other name goes to the package's own object. tests/test_startup.py checks that both
# give the same answer for every rule of the list, its wildcard children and
# exceptions, and their parents.
#
# The codec runs only where it can change an answer. A name with an ``xn--`` label
# meets the few hundred non-ASCII rules in their encoded form, so for it they are all
# encoded (once). A name without one can meet a non-ASCII rule only if the codec
# turns every label of that rule into plain ASCII, never into an ``xn--`` A-label:
# that happens only when each character of the label is mapped to nothing or to
# ASCII by nameprep (RFC 3491: table B.1, table B.2, then NFKC: if NFKC of the mapped
# label is ASCII, then so is NFKC of each mapped character, because NFKD of an ASCII
# string is itself and no ASCII characters compose). Only rules passing that
# per-character test, normally none, are encoded for such names; the characters that
# pass it are a constant computed from the codec's own tables (_PLAIN_NON_ASCII).


@functools.cache
def _psl() -> PublicSuffixList:
    from publicsuffixlist import PublicSuffixList  # imported and built once, lazily

    # ICANN and private sections both count (s3.amazonaws.com, github.io); unknown
    # top-level labels count as public (the PSL's implicit "*" rule).
    return PublicSuffixList(only_icann=False)


def _idna_rule(rule: str) -> str:
    """publicsuffixlist's ``encode_idn`` of one rule (without its ``!``)."""
    if rule.isascii():
        # Python's idna codec returns ASCII text unchanged once it has checked that no
        # label but the last is empty and none has 64 octets or more; the same checks.
        if rule and (
            rule.startswith(".")
            or ".." in rule
            or (len(rule) >= 64 and max(map(len, rule.split("."))) >= 64)
        ):
            raise UnicodeError(f"public suffix rule {rule!r}: label empty or too long")
        return rule
    return rule.encode("idna").decode("ascii")


def _encoded(rule: str) -> str:
    """A rule as PublicSuffixList holds it: the codec on its body, ``!`` kept."""
    encoded = _idna_rule(rule.lstrip("!"))
    return "!" + encoded if rule[0] == "!" else encoded


def _read_rules(text: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """The rules of a list file's text, as the package's ``_parse`` reads them line by
    line: (the ASCII rules, checked and as written; the non-ASCII rules, not encoded)."""
    ascii_rules: set[str] = set()
    other: list[str] = []
    for line in text.lower().split("\n"):  # the file's lines, as iterating it in binary mode
        rule = line.split(" ")[0].rstrip()
        if rule == "" or rule.startswith("//"):
            continue
        if rule.isascii():
            ascii_rules.add(_encoded(rule))
        else:
            other.append(rule)
    return frozenset(ascii_rules), tuple(other)


#: How publicsuffixlist decodes its list file's lines (its ``ENCODING`` and
#: ``ERRORMODE``), and the file's name beside its ``__init__`` (its ``PSLFILE``): read
#: here without importing the package, which start-up pays for (tests/test_startup.py
#: checks all three against the installed package).
_PSL_ENCODING, _PSL_ERRORS = "utf8", "surrogateescape"
_PSL_FILE_NAME = "public_suffix_list.dat"


def _psl_file() -> str:
    """The package's list file (its ``PSLFILE``), found without importing it."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("publicsuffixlist")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("publicsuffixlist is not installed", name="publicsuffixlist")
    return os.path.join(os.path.dirname(spec.origin), _PSL_FILE_NAME)


@functools.cache
def _psl_data() -> bytes:
    """The package's list file, as bytes."""
    with open(_psl_file(), "rb") as source:
        return source.read()


def _psl_text() -> str:
    """The package's list file decoded as its parser decodes each line."""
    return _psl_data().decode(_PSL_ENCODING, _PSL_ERRORS)


#: Every non-ASCII character that nameprep (RFC 3491, as Python's idna codec applies
#: it: stringprep's tables B.1 and B.2, then NFKC of Unicode 3.2) maps to nothing or
#: to ASCII, and the three full stops the codec splits labels at: a constant, because
#: Unicode 3.2 never changes. tests/test_startup.py recomputes it from the codec's own
#: tables over every code point.
_PLAIN_NON_ASCII = (
    "\u00a0\u00aa\u00ad\u00b2-\u00b3\u00b9-\u00ba\u00df\u0132-\u0133\u017f\u01c7-\u01cc"
    "\u01f1-\u01f3\u02b0\u02b2-\u02b3\u02b7-\u02b8\u02e1-\u02e3\u034f\u037e\u1806"
    "\u180b-\u180d\u1e9e\u1fef\u2000-\u200d\u2024-\u2026\u202f\u203c\u2047-\u2049"
    "\u205f-\u2060\u2070-\u2071\u2074-\u207a\u207c-\u208a\u208c-\u208e\u20a8\u2100-\u2102"
    "\u2105-\u2106\u210a-\u210e\u2110-\u2113\u2115-\u2116\u2119-\u211d\u2120-\u2122\u2124"
    "\u2128\u212a\u212c-\u212d\u212f-\u2131\u2133-\u2134\u2139\u2145-\u2149\u2160-\u217f"
    "\u2460-\u24ea\u2a74-\u2a76\u3000\u3002\u3251-\u325f\u32b1-\u32bf\u3371-\u3376"
    "\u3380-\u3381\u3383-\u338b\u338e-\u3394\u3396-\u339a\u339c-\u33a6\u33a9-\u33ad"
    "\u33b0-\u33b1\u33b3-\u33b5\u33b7-\u33bb\u33bd-\u33bf\u33c2-\u33c5\u33c7-\u33dd"
    "\ufb00-\ufb06\ufb29\ufe00-\ufe0f\ufe30\ufe33-\ufe38\ufe4d-\ufe50\ufe52\ufe54-\ufe57"
    "\ufe59-\ufe5c\ufe5f-\ufe66\ufe68-\ufe6b\ufeff\uff01-\uff5e\uff61\U0001d400-\U0001d454"
    "\U0001d456-\U0001d49c\U0001d49e-\U0001d49f\U0001d4a2\U0001d4a5-\U0001d4a6"
    "\U0001d4a9-\U0001d4ac\U0001d4ae-\U0001d4b9\U0001d4bb\U0001d4bd-\U0001d4c0"
    "\U0001d4c2-\U0001d4c3\U0001d4c5-\U0001d505\U0001d507-\U0001d50a\U0001d50d-\U0001d514"
    "\U0001d516-\U0001d51c\U0001d51e-\U0001d539\U0001d53b-\U0001d53e\U0001d540-\U0001d544"
    "\U0001d546\U0001d54a-\U0001d550\U0001d552-\U0001d6a3\U0001d7ce-\U0001d7ff"
)


@functools.cache
def _plain_characters() -> frozenset[str]:
    """ASCII and :data:`_PLAIN_NON_ASCII` (its ``a-b`` ranges spelled out): a set,
    because compiling the constant into a character class costs start-up more than
    the few hundred lines it is asked about."""
    characters = {chr(code) for code in range(0x80)}
    text, at = _PLAIN_NON_ASCII, 0
    while at < len(text):
        first = last = text[at]
        at += 1
        if text[at : at + 1] == "-":
            last, at = text[at + 1], at + 2
        characters.update(map(chr, range(ord(first), ord(last) + 1)))
    return frozenset(characters)


def _may_encode_plain(rule: str) -> bool:
    """Whether the codec could turn every label of a non-ASCII ``rule`` into ASCII
    without ``xn--``: every character is ASCII or in :data:`_PLAIN_NON_ASCII` (the
    test in the comment above; True is only a maybe)."""
    return _plain_characters().issuperset(rule)


def _rules_for(ascii_rules: frozenset[str], other: Sequence[str], *, idn: bool) -> frozenset[str]:
    """The rules a name can meet: every rule encoded (``idn``: the name has an
    ``xn--`` label), or the ASCII rules and those non-ASCII ones the codec may turn
    into plain ASCII."""
    return ascii_rules | {_encoded(rule) for rule in other if idn or _may_encode_plain(rule)}


class _ListedRules:
    """The rules of a list file that a name without an ``xn--`` label can meet, read
    from the file's bytes as the package's ``_parse`` reads its lines: a rule is
    listed when a line's first word, lower-cased and less trailing white space, is
    the rule. ASCII lines are read with their ASCII letters lower-cased (all that
    ``str.lower`` changes in ASCII); the few lines with other bytes are read as the
    package reads them, once: their ASCII rules, and the encoded forms of the
    non-ASCII rules that :func:`_may_encode_plain` keeps (normally none), are held
    beside.

    Speed: a start-up asks about one or two names, a large policy about many. The
    first :attr:`SEARCHES` rules asked about are searched for in the file's bytes
    (a few hundred microseconds each); after that, the first words of every line are
    taken into a set once (a few milliseconds) and asked."""

    SEARCHES = 24

    def __init__(self, data: bytes, encoding: str = "utf-8", errors: str = "strict") -> None:
        self._data = b"\n" + data.lower()
        self._encoding, self._errors = encoding, errors
        self._searches = 0
        self._absent: set[bytes] = set()
        self._words: frozenset[bytes] | None = None
        extra: set[str] = set()
        for line in self._non_ascii_lines():
            if line.startswith(b"//"):
                continue
            # Lower-casing the ASCII letters first changes nothing str.lower() does.
            rule = line.decode(encoding, errors).lower().split(" ")[0].rstrip()
            if not rule or rule.startswith("//"):
                continue
            if rule.isascii():  # a character lower-cased to ASCII (the Kelvin sign)
                extra.add(rule)
            elif _may_encode_plain(rule):
                extra.add(_encoded(rule))
        self._extra = frozenset(extra)

    def _non_ascii_lines(self) -> Iterator[bytes]:
        """The lines holding a byte over 0x7F, in file order (split in C, filtered in
        C: no Python step per line of the ~16,000)."""
        from itertools import filterfalse

        return filterfalse(bytes.isascii, self._data.split(b"\n"))

    def __contains__(self, rule: object) -> bool:
        if not isinstance(rule, str) or not rule.isascii() or not rule or rule[:2] == "//":
            return False  # never a rule: the package skips empty words and comments
        if rule in self._extra:
            return True
        if self._words is None:
            self._searches += 1
            if self._searches <= self.SEARCHES:
                # "!x", "*.x" and "x" all hold x: when x is nowhere in the file, one
                # search answers all three forms.
                body = rule.removeprefix("!").removeprefix("*.").encode("ascii")
                if body in self._absent:
                    return False
                if body not in self._data:
                    self._absent.add(body)
                    return False
                return self._search(rule.encode("ascii"))
            self._words = self._first_words()
        return rule.encode("ascii") in self._words

    def _first_words(self) -> frozenset[bytes]:
        data = self._data
        # bytes.rstrip() strips ASCII white space but not the four separators
        # U+001C-U+001F that str.rstrip() also strips: a file with any is read exactly.
        if any(separator in data for separator in (b"\x1c", b"\x1d", b"\x1e", b"\x1f")):
            text = data.decode(self._encoding, self._errors)
            return frozenset(rule.encode() for rule in _read_rules(text)[0])
        return frozenset(line.partition(b" ")[0].rstrip() for line in data.split(b"\n"))

    def _search(self, rule: bytes) -> bool:
        data = self._data
        needle = b"\n" + rule
        at = data.find(needle)
        while at >= 0:
            # The line's first word is the rule if it ends here or only trailing white
            # space follows before it ends (at a space or the line's end). A tail
            # with other bytes is on a line read into ``_extra`` already.
            stop = end = at + len(needle)
            if end == len(data) or data[end] in b" \n":
                return True
            if data[end : end + 1].isspace() or 0x1C <= data[end] <= 0x1F:
                while stop < len(data) and data[stop] not in b" \n":
                    stop += 1
                tail = data[end:stop]
                if tail.isascii() and tail.decode("ascii").isspace():
                    return True
            at = data.find(needle, at + 1)
        return False


@functools.cache
def _psl_rules(idn: bool) -> frozenset[str] | _ListedRules:
    """The rules of PublicSuffixList(only_icann=False) a name can meet: all of them,
    encoded, for a name with an ``xn--`` label (``idn``); else :class:`_ListedRules`."""
    if idn:
        return _rules_for(*_read_rules(_psl_text()), idn=True)
    return _ListedRules(_psl_data(), _PSL_ENCODING, _PSL_ERRORS)


def _is_public_ascii(name: str, rules: Container[str] | None = None) -> bool:
    """PublicSuffixList.is_public for an ASCII lower-case ``name`` (its
    ``_preparedomain`` and ``_countpublic`` with accept_unknown=True); ``rules``: the
    list's rules (:func:`_rules_for`, :class:`_ListedRules`), by default the package's."""
    if name.endswith("."):
        name = name[:-1]  # the PSL ignores one trailing dot
    labels = name.split(".")
    if "" in labels:
        return False  # not a domain name
    count = len(labels)
    if count == 1:
        return True  # a top-level label: listed or unknown, it is public
    if rules is None:
        rules = _psl_rules("xn--" in name)
    public = 1  # the implicit "*" rule
    # From the longest candidate suffix to the shortest; per suffix the order is
    # exception, wildcard, exact (publicsuffixlist's order). The package starts at
    # the longest rule's length; a longer suffix can match no rule, so starting at the
    # whole name gives the same answer.
    for start in range(count):
        depth = count - start
        suffix = ".".join(labels[start:])
        if "!" + suffix in rules:
            public = depth - 1
            break
        if "*." + suffix in rules:
            public = depth + 1 if start > 0 else depth
            break
        if suffix in rules:
            public = depth
            break
    return public == count


def is_public_suffix(name: str) -> bool:
    """Whether the canonical ``name`` is a public suffix (ICANN or private section)."""
    if not isinstance(name, str) or not name:
        return False
    lowered = _ascii_lower(name)
    if lowered.isascii():
        return _is_public_ascii(lowered)
    return bool(_psl().is_public(lowered))


# --------------------------------------------------------------------------------------
# Section 3: certificate names (CN only, single-level wildcards, no SAN)


def _is_ldh_label(label: str) -> bool:
    # Section 3 rule 3: LDH, 1-63 octets, no leading/trailing hyphen, no underscore.
    return (
        0 < len(label) <= _MAX_LABEL
        and _LDH_LABEL.fullmatch(label) is not None
        and not label.startswith("-")
        and not label.endswith("-")
    )


def _is_printable_ascii(text: str) -> bool:
    # Section 3 rule 1: 0x21-0x7E only; NUL, space, controls, DEL, non-ASCII refused.
    return all("\x21" <= char <= "\x7e" for char in text)


def usable_cn(cn: str) -> bool:
    """Whether a presented CN may match anything at all (section 3, rules 1-6)."""
    if not isinstance(cn, str):
        return False
    # Rule 2: at most 64 characters (checked first to bound the work).
    if not cn or len(cn) > _MAX_CN:
        return False
    return _usable_cn(cn)


@functools.lru_cache(maxsize=8192)
def _usable_cn(cn: str) -> bool:
    """Rules 1-6 for a CN of 1-64 characters; memoised (the same partner CNs recur)."""
    # Rule 1: printable ASCII only; nothing is trimmed.
    if not _is_printable_ascii(cn):
        return False
    labels = cn.split(".")
    # Rule 2: no empty label, no leading or trailing dot.
    if "" in labels:
        return False
    literal = labels
    wildcard = labels[0] == "*"
    if wildcard:
        literal = labels[1:]
        # Rule 4: the wildcard is followed by at least two labels.
        if len(literal) < 2:
            return False
    # Rules 3 and 4: every other label is a literal LDH label (this also refuses
    # partial "f*", double "**" / "*.*.x", inner "a.*.com" and bare "*" wildcards).
    if not all(_is_ldh_label(label) for label in literal):
        return False
    # Rule 6: nothing IP-like is ever a name.
    if _looks_like_ip(".".join(literal)) is not None:
        return False
    # Rule 4: no wildcard directly over a public suffix (*.co.uk, *.s3.amazonaws.com).
    return not (wildcard and is_public_suffix(_ascii_lower(".".join(literal))))


def _wildcard_covers(suffix: str, name: str) -> bool:
    """Whether ``*.suffix`` covers the literal canonical ``name`` (section 3 table)."""
    label, dot, rest = name.partition(".")
    # Exactly one more non-empty label; rule 5: never a label starting with xn--.
    return bool(dot) and rest == suffix and label != "" and not label.startswith("xn--")


@functools.lru_cache(maxsize=16384)
def _cn_matches(expected: str, cn: str) -> bool:
    """Section 3's table for a canonical setting and a CN of 1-64 characters.

    Memoised (speed: the same partner names and CNs recur); a pure function of two
    strings, so a remembered answer is always the answer.
    """
    if not _usable_cn(cn):
        return False
    # Rule 7: ASCII case-insensitive. A usable CN is printable ASCII, where lower()
    # folds exactly A-Z.
    presented = cn.lower()
    if presented == expected:
        return True  # equal names, or equal wildcard patterns
    wildcard = expected.startswith("*.")
    cn_wildcard = presented.startswith("*.")
    if wildcard and not cn_wildcard:
        return _wildcard_covers(expected[2:], presented)
    if cn_wildcard and not wildcard:
        return _wildcard_covers(presented[2:], expected)
    return False


@attrs.frozen
class CertificateName:
    """A configured certificate name (``tls_sender_certificate_name``, ``tls_domain``).

    ``text`` is canonical: ``"mail.partner.com"`` or ``"*.partner.com"``. Build it with
    :meth:`parse`. Only the subject CN is ever matched (section 3: the SAN is never read).
    """

    text: str

    @classmethod
    def parse(cls, text: str) -> CertificateName:
        """Validate and normalise a certificate-name setting (section 3, expected side)."""
        if not isinstance(text, str):
            raise InvalidValue(text, "a certificate name must be a string")
        wildcard = text.startswith("*.")
        body = text[2:] if wildcard else text
        if "*" in body:
            raise InvalidValue(
                text,
                "a wildcard must be exactly '*' as the whole left-most label ('*.partner.com')",
            )
        # Section 3: the expected side follows section 2's normalisation.
        try:
            name = canonical_domain(body)
        except InvalidValue as err:
            raise InvalidValue(text, err.reason) from err
        labels = name.split(".")
        # Section 3 rule 3: LDH labels only (no underscore) in certificate names.
        if _LDH_NAME.fullmatch(name) is None:
            raise InvalidValue(
                text, "certificate names allow only letters, digits and '-' (no '_')"
            )
        if wildcard:
            # Section 3 rule 4: followed by at least two labels...
            if len(labels) < 2:
                raise InvalidValue(text, "a wildcard must be followed by at least two labels")
            # ...and not directly over a public suffix.
            if is_public_suffix(name):
                raise InvalidValue(
                    text, f"a wildcard directly over the public suffix {name!r} is not allowed"
                )
            return cls(f"*.{name}")
        return cls(name)

    @property
    def is_wildcard(self) -> bool:
        return self.text.startswith("*.")

    def matches_cn(self, cn: str) -> bool:
        """Whether one presented CN matches this name (section 3 table). Never raises."""
        # Rule 2 first (bounds the work and the memo's keys), then the memoised rest.
        if not isinstance(cn, str) or not cn or len(cn) > _MAX_CN:
            return False
        return _cn_matches(self.text, cn)

    def matches_any(self, cns: Iterable[str]) -> bool:
        """Several CN attributes: any usable CN that matches is a match (section 3)."""
        return any(map(self.matches_cn, cns))  # map(): no generator frame (speed)

    def __str__(self) -> str:
        return self.text


def match_certificate_name(expected: str, presented_cn: str) -> bool:
    """Apply section 3 to one setting and one presented CN.

    Returns False, never raises, when either side is invalid (section 9).
    """
    try:
        name = CertificateName.parse(expected)
    except InvalidValue:
        return False
    return name.matches_cn(presented_cn)
