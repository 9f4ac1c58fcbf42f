"""The engine of ``tlsconnector crl fetch`` (spec section 11): download the CRLs named
by CRL distribution points and replace the policy's CRL files atomically.

An edge: it reads the clock, files and the network; the core only ever reads the files
this writes (``[trust] crl_files``), when a policy is loaded or reloaded.

Which URLs (docs/revocation.md, "Refreshing CRLs"):

* the distribution points of the certificates of ``[trust] ca_file``;
* the distribution points of the certificates on the path of every chain of a sessions
  file (``tls.peer_chain_pem``, leaf and intermediates up to the trust anchor) that the
  policy's trust anchors validate now. A chain they do not validate was not issued by a
  CA the policy trusts: its URLs are the presenter's choice and are never fetched.

What replaces a file (never fail open, never lose a good CRL): one complete, usable CRL
(PEM or DER, at most :data:`MAX_CRL_BYTES`), issued and signed by the issuer of a
certificate that names the URL, current now, and not older than the CRL it replaces
(thisUpdate, CRL number): an attacker on a plain-HTTP path can neither substitute
another CRL nor replay an old one from before a revocation. Anything else leaves the
file as it was. A file is replaced by writing a temporary file in the same directory,
fsync, ``os.replace`` and fsync of the directory: a reader (a reloading service) sees
the old CRL or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from tlsconnector._chains import PresentedChain, TrustStore
from tlsconnector._errors import InvalidValue, show
from tlsconnector._revocation import MAX_CRL_BYTES, Revocation, RevocationList, load_crls
from tlsconnector._validation import Purpose, validate_chain

if TYPE_CHECKING:
    import http.client

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_TIMEOUT",
    "MAX_CRL_URLS",
    "MAX_DEADLINE",
    "MAX_REDIRECTS",
    "MAX_SESSION_CHAINS",
    "MAX_TIMEOUT",
    "MAX_TOTAL_BYTES",
    "MAX_URL_CHARS",
    "FetchError",
    "Outcome",
    "Sources",
    "crl_file_name",
    "download",
    "fetch_all",
    "sources_from_chains",
    "sources_from_trust",
]

#: Bounds (docs/security.md). One download: at most MAX_CRL_BYTES (the core's bound on
#: a CRL file), DEFAULT_TIMEOUT seconds (at most MAX_TIMEOUT); one run: DEFAULT_DEADLINE
#: seconds in all (at most MAX_DEADLINE), at most MAX_CRL_URLS URLs and MAX_TOTAL_BYTES.
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 300.0
DEFAULT_DEADLINE = 600.0
MAX_DEADLINE = 3600.0
MAX_CRL_URLS = 1000
MAX_TOTAL_BYTES = 1024 * 1024 * 1024  # what the loader accepts of CRL files in all
MAX_REDIRECTS = 3
MAX_URL_CHARS = 2048
#: Distinct chains of a sessions file looked at (each is validated once).
MAX_SESSION_CHAINS = 10_000

_SCHEMES = ("http", "https")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


class FetchError(Exception):
    """Why one URL gave no CRL; ``str()`` is a message with attacker text escaped."""


def crl_file_name(url: str) -> str:
    """The stable file name of the CRL fetched from ``url``: its SHA-256, in hex, + .crl.

    Derived from the URL only, so a run replaces the file the last run wrote, and no
    character of the URL (attacker-influenced) reaches the file system."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest() + ".crl"


@attrs.define
class Sources:
    """The URLs to fetch: for each, the certificates whose distribution points name it,
    each with the certificate that signed it (None: not known), in first-seen order."""

    named_by: dict[str, list[tuple[x509.Certificate, x509.Certificate | None]]] = attrs.field(
        factory=dict
    )
    #: Every URL a certificate names, by certificate (DER): to tell whether a refused
    #: ``ldap:`` URL leaves that certificate without any http(s) one.
    urls_of: dict[bytes, list[str]] = attrs.field(factory=dict)
    #: Lines for standard error: chains not looked at, lines not read.
    notes: list[str] = attrs.field(factory=list)
    #: Problems that make the run's exit status 1 (a line that is not JSON...).
    problems: list[str] = attrs.field(factory=list)

    def add(self, cert: x509.Certificate, signer: x509.Certificate | None) -> None:
        urls = _distribution_urls(cert)
        if not urls:
            return
        der = cert.public_bytes(serialization.Encoding.DER)
        self.urls_of.setdefault(der, urls)
        for url in urls:
            pairs = self.named_by.setdefault(url, [])
            if all(c != cert or s != signer for c, s in pairs) and len(pairs) < 64:
                pairs.append((cert, signer))


def _distribution_urls(cert: x509.Certificate) -> list[str]:
    """The URIs of the certificate's CRL distribution points (full names), in order."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    except (ValueError, TypeError):  # an undecodable extension names nothing we can use
        return []
    urls: list[str] = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value not in urls:
                urls.append(name.value)
    return urls


def _signer(cert: x509.Certificate, pool: Iterable[x509.Certificate]) -> x509.Certificate | None:
    """The certificate of ``pool`` that issued and signed ``cert``, if any."""
    for candidate in pool:
        if candidate.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return candidate
    return None


def sources_from_trust(certificates: Sequence[x509.Certificate], sources: Sources) -> None:
    """The distribution points of the trust file's certificates, each signed by a
    certificate of the trust file (or by itself) when one is there."""
    for cert in certificates:
        sources.add(cert, _signer(cert, certificates))


def _chain_path(
    chain: PresentedChain, trust: TrustStore
) -> list[tuple[x509.Certificate, x509.Certificate | None]]:
    """The certificates of a validated chain's path before its trust anchor, each with
    the certificate that signed it (the next one of the path)."""
    anchors = {c.public_bytes(serialization.Encoding.DER) for c in trust.certificates}
    pool = [*chain.intermediates, *trust.certificates]
    path: list[tuple[x509.Certificate, x509.Certificate | None]] = []
    current: x509.Certificate | None = chain.leaf
    for _ in range(len(chain.certificates)):  # bounded: a path never repeats a certificate
        if current is None or current.public_bytes(serialization.Encoding.DER) in anchors:
            break
        signer = _signer(current, pool)
        path.append((current, signer))
        current = signer
    return path


def sources_from_chains(
    lines: Iterable[tuple[int, bytes | None]], trust: TrustStore, at: dt.datetime, sources: Sources
) -> None:
    """The distribution points along every chain of a sessions file that ``trust``
    (without CRLs, revocation off: a revoked certificate still needs its CRL
    refreshed) validates at ``at``; outbound lines (with ``recipient``) as server
    certificates, the others as client certificates."""
    plain = TrustStore(trust.certificates)
    seen: set[bytes] = set()
    untrusted = 0
    for number, line in lines:
        if line is None:
            sources.problems.append(f"sessions line {number}: longer than the line bound")
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            sources.problems.append(f"sessions line {number}: not a JSON object")
            continue
        if not isinstance(obj, dict):
            sources.problems.append(f"sessions line {number}: not a JSON object")
            continue
        tls = obj.get("tls")
        text = tls.get("peer_chain_pem") if isinstance(tls, dict) else None
        if not isinstance(text, str):
            continue  # no chain (no TLS, a CN an MTA verified, a recorded temporary failure)
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        if key in seen:
            continue
        if len(seen) >= MAX_SESSION_CHAINS:
            sources.problems.append(
                f"the sessions file holds more than {MAX_SESSION_CHAINS} different chains: "
                f"those from line {number} on were not looked at"
            )
            break
        seen.add(key)
        purpose = Purpose.OUTBOUND if "recipient" in obj else Purpose.INBOUND
        try:
            chain = PresentedChain.from_pem(text)
            verdict = validate_chain(
                chain, trust=plain, at=at, purpose=purpose, revocation=Revocation.OFF
            )
        except InvalidValue:
            untrusted += 1
            continue
        if not verdict.trusted:
            untrusted += 1
            continue
        for cert, signer in _chain_path(chain, plain):
            sources.add(cert, signer)
    if untrusted:
        sources.notes.append(
            f"{untrusted} chain(s) of the sessions file are not trusted by the policy's "
            "trust anchors now: their distribution points are not fetched"
        )


# --- downloading ---------------------------------------------------------------------


def _check_url(url: str) -> None:
    if len(url) > MAX_URL_CHARS:
        raise FetchError(f"longer than {MAX_URL_CHARS} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise FetchError("not a printable ASCII URL")
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        raise FetchError(f"only http and https URLs are fetched, not {show(scheme + ':')}")


def download(
    url: str,
    *,
    timeout: float,
    max_bytes: int = MAX_CRL_BYTES,
    context: ssl.SSLContext | None = None,
) -> bytes:
    """GET ``url`` (http or https, at most :data:`MAX_REDIRECTS` redirects to http or
    https URLs) and return the body of its 200 answer, at most ``max_bytes``.

    ``timeout`` bounds the whole download, redirects included: every socket operation
    waits at most what is left, and a watchdog shuts the socket at the end (name
    resolution is bounded only by the system resolver). https checks the server with
    ``context`` (default: the system CA bundle, host names checked). No proxy is used.
    Raises :class:`FetchError` saying why."""
    end = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        _check_url(url)
        status, location, body = _get(url, end=end, max_bytes=max_bytes, context=context)
        if status == 200:
            return body
        if status in _REDIRECTS and location:
            url = urljoin(url, location)
            continue
        raise FetchError(f"HTTP status {status}")
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def _get(
    url: str, *, end: float, max_bytes: int, context: ssl.SSLContext | None
) -> tuple[int, str | None, bytes]:
    import http.client  # here: building the command line must not import it

    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise FetchError(f"bad host or port: {show(str(exc))}") from None
    if not host:
        raise FetchError("no host")
    left = end - time.monotonic()
    if left <= 0:
        raise FetchError("timed out")
    connection: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        connection = http.client.HTTPSConnection(
            host, port, timeout=left, context=context or ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=left)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    watchdog = threading.Timer(left, _shut, (connection,))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request(
            "GET",
            target,
            headers={
                "Accept": "application/pkix-crl, application/x-pkcs7-crl, */*",
                "User-Agent": "tlsconnector-crl-fetch",
                "Connection": "close",
            },
        )
        response = connection.getresponse()
        if response.status != 200:
            return response.status, response.getheader("Location"), b""
        length = response.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > max_bytes:
            raise FetchError(f"larger than {max_bytes} bytes (Content-Length {int(length)})")
        chunks: list[bytes] = []
        size = 0
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise FetchError("timed out")
            if connection.sock is not None:
                connection.sock.settimeout(left)
            chunk = response.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"larger than {max_bytes} bytes")
            chunks.append(chunk)
        if time.monotonic() >= end:
            raise FetchError("timed out")
        return 200, None, b"".join(chunks)
    except FetchError:
        raise
    except TimeoutError:
        raise FetchError("timed out") from None
    except ssl.SSLError as exc:
        raise FetchError(f"TLS error: {show(str(exc), limit=200)}") from None
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() >= end:
            raise FetchError("timed out") from None
        raise FetchError(f"{type(exc).__name__}: {show(str(exc), limit=200)}") from None
    finally:
        watchdog.cancel()
        connection.close()


def _shut(connection: http.client.HTTPConnection) -> None:
    """The watchdog: end a download that outlived its time, whatever it is waiting on."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


# --- checking and replacing ----------------------------------------------------------


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, ValueError):
        return None


def check_crl(
    data: bytes,
    signers: Sequence[x509.Certificate],
    *,
    at: dt.datetime,
    kept: x509.CertificateRevocationList | None,
) -> RevocationList:
    """The downloaded CRL, when it may replace ``kept``; :class:`FetchError` otherwise."""
    try:
        crls = load_crls(data, "the download")
        if len(crls) != 1:
            raise FetchError(f"holds {len(crls)} CRLs; a distribution point serves one")
        (crl,) = crls
        revocation_list = RevocationList.from_crl(crl, "the download")
    except InvalidValue as exc:
        raise FetchError(exc.reason) from None
    if revocation_list.unusable is not None:
        raise FetchError(f"an unusable CRL: {revocation_list.unusable}")
    if not any(_signed_by(crl, signer) for signer in signers):
        issuer = show(_rfc4514(crl.issuer), limit=200)
        expected = ", ".join(sorted({show(_rfc4514(s.subject), limit=200) for s in signers}))
        raise FetchError(
            f"issued by {issuer}, not issued and signed by the issuer of the certificates "
            f"naming this URL ({expected})"
        )
    next_update = revocation_list.next_update
    if next_update is not None and next_update <= at:
        raise FetchError(f"stale: its nextUpdate {next_update.isoformat()} has passed")
    if kept is not None and kept.issuer == crl.issuer:
        kept_this = kept.last_update_utc.replace(microsecond=0)
        if revocation_list.this_update < kept_this:
            raise FetchError(
                f"older than the CRL kept (thisUpdate {revocation_list.this_update.isoformat()} "
                f"before {kept_this.isoformat()}): a replayed CRL never replaces a newer one"
            )
        old_number, new_number = _crl_number(kept), _crl_number(crl)
        if old_number is not None and new_number is not None and new_number < old_number:
            raise FetchError(
                f"older than the CRL kept (CRL number {new_number} below {old_number})"
            )
    return revocation_list


def _rfc4514(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except ValueError:
        return "(unrenderable name)"


def _signed_by(crl: x509.CertificateRevocationList, signer: x509.Certificate) -> bool:
    if crl.issuer != signer.subject:
        return False
    try:
        return crl.is_signature_valid(signer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _kept(path: Path) -> x509.CertificateRevocationList | None:
    """The CRL the file holds now, if it holds exactly one that decodes."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CRL_BYTES + 1)
        crls = load_crls(data, "the kept file")
    except (OSError, InvalidValue):
        return None
    return crls[0] if len(crls) == 1 else None


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``: a temporary file in the same directory, fsync,
    ``os.replace``, fsync of the directory (mode 0644: a CRL is public)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@attrs.frozen
class Outcome:
    """What happened to one URL.

    ``status``: ``fetched`` (the file written), ``unchanged`` (the same CRL as the
    file's), ``failed`` (the file, if any, kept as it was), ``refused`` (not http or
    https; ``failure`` says whether it leaves a certificate without a fetchable URL) or
    ``skipped`` (no certificate known to have signed a CRL for it: nothing to check
    a download against)."""

    url: str
    status: str
    path: Path | None
    message: str
    failure: bool


def fetch_all(
    sources: Sources,
    out: Path,
    *,
    at: dt.datetime,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    max_bytes: int = MAX_CRL_BYTES,
    context: ssl.SSLContext | None = None,
) -> list[Outcome]:
    """Fetch every URL of ``sources`` (sorted) into ``out``; one :class:`Outcome` each."""
    end = time.monotonic() + deadline
    outcomes: list[Outcome] = []
    fetchable: list[str] = []
    for url in sorted(sources.named_by):
        try:
            _check_url(url)
        except FetchError as exc:
            # A refused URL fails only a certificate that names no http(s) URL at all.
            stranded = any(
                not any(_fetchable(u) for u in sources.urls_of.get(_der(cert), ()))
                for cert, _ in sources.named_by[url]
            )
            outcomes.append(Outcome(url, "refused", None, str(exc), stranded))
            continue
        fetchable.append(url)
    total = 0
    for position, url in enumerate(fetchable):
        path = out / crl_file_name(url)
        signers = [s for _, s in sources.named_by[url] if s is not None]
        if not signers:
            outcomes.append(
                Outcome(
                    url,
                    "skipped",
                    None,
                    "no certificate that could sign its CRL is known (the issuer of the "
                    "certificates naming it is not in the trust file): a download could "
                    "not be checked",
                    False,
                )
            )
            continue
        if position >= MAX_CRL_URLS:
            outcomes.append(_failed(url, path, f"more than {MAX_CRL_URLS} URLs in one run"))
            continue
        left = end - time.monotonic()
        if left <= 0:
            outcomes.append(_failed(url, path, f"the run's deadline ({deadline:g} s) had passed"))
            continue
        try:
            data = download(url, timeout=min(timeout, left), max_bytes=max_bytes, context=context)
            total += len(data)
            if total > MAX_TOTAL_BYTES:
                raise FetchError(f"the run's downloads exceed {MAX_TOTAL_BYTES} bytes")
            kept = _kept(path)
            checked = check_crl(data, signers, at=at, kept=kept)
            der = checked.crl.public_bytes(serialization.Encoding.DER)
            summary = (
                f"{len(checked.revoked)} revoked, nextUpdate "
                f"{checked.next_update.isoformat() if checked.next_update else '-'}"
            )
            if kept is not None and kept.public_bytes(serialization.Encoding.DER) == der:
                outcomes.append(Outcome(url, "unchanged", path, summary, False))
                continue
            replace_atomically(path, der)
        except FetchError as exc:
            outcomes.append(_failed(url, path, str(exc)))
            continue
        except OSError as exc:
            outcomes.append(_failed(url, path, f"cannot write {path}: {exc.strerror or exc}"))
            continue
        outcomes.append(Outcome(url, "fetched", path, summary, False))
    return sorted(outcomes, key=lambda o: o.url)


def _failed(url: str, path: Path, message: str) -> Outcome:
    kept = "; kept the file as it was" if path.exists() else "; no file written"
    return Outcome(url, "failed", path, message + kept, True)


def _fetchable(url: str) -> bool:
    try:
        _check_url(url)
    except FetchError:
        return False
    return True


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
