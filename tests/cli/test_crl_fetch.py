"""``tlsconnector crl fetch`` (spec section 11; docs/revocation.md, "Refreshing CRLs"):
the CRLs named by distribution points are downloaded from a real HTTP server on
127.0.0.1, checked, and replace their files atomically; a failed download never
replaces nor deletes a good CRL; the exit status says what failed; a reload picks the
new CRL up."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import json
import os
import signal
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_postfix_server import PolicyService

from tlsconnector.cli import main
from tlsconnector.policy_file import crl_fetch

from certmint import CA, Leaf

WAIT = 15.0  # seconds: the bound on every wait (a blocked handler, a service event)
DER = serialization.Encoding.DER

POLICY = """
[trust]
ca_file = "partners-ca.pem"
{crl_files}

[[inbound]]
name = "Fabrikam Bank inbound"
sender_domains = ["fabrikam.com"]
require_tls = true
tls_sender_certificate_name = "*.fabrikam.com"
restrict_domains_to_certificate = true
"""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@attrs.define
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = attrs.field(factory=dict)
    block: threading.Event | None = None  # answer only once it is set (a timeout test)


class CrlServer:
    """http.server in a thread on 127.0.0.1, port 0: path -> Route; records requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requested: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requested.append(self.path)
                route = server.routes.get(self.path, Route(404))
                if route.block is not None:
                    route.block.wait(WAIT)
                try:
                    self.send_response(route.status)
                    headers = {"Content-Length": str(len(route.body)), **route.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(route.body)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, crl: x509.CertificateRevocationList | bytes) -> bytes:
        body = crl if isinstance(crl, bytes) else crl.public_bytes(DER)
        self.routes[path] = Route(200, body)
        return body

    def close(self) -> None:
        for route in self.routes.values():
            if route.block is not None:
                route.block.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(WAIT)


@pytest.fixture
def server() -> Iterator[CrlServer]:
    running = CrlServer()
    yield running
    running.close()


@attrs.define
class Pki:
    root: CA
    issuing: CA
    leaf: Leaf


@pytest.fixture
def pki(server: CrlServer) -> Pki:
    """A root (the trust file), an issuing CA whose certificate names the root's CRL,
    and a partner leaf naming the issuing CA's CRL."""
    root = CA("Fabrikam Root CA")
    issuing = root.intermediate(
        "Fabrikam Issuing CA", crl_distribution_points=[server.url("/root.crl")]
    )
    leaf = issuing.issue(
        "server1.fabrikam.com", crl_distribution_points=[server.url("/issuing.crl")]
    )
    return Pki(root, issuing, leaf)


def current_crl(
    ca: CA, revoked: list[Any] | None = None, *, age: int = 1
) -> x509.CertificateRevocationList:
    """A CRL current now (the test PKI's defaults are current at its fixed NOW)."""
    return ca.crl(
        [(c, now() - dt.timedelta(hours=age + 1)) for c in revoked or []],
        this_update=now() - dt.timedelta(hours=age),
        next_update=now() + dt.timedelta(days=7),
    )


def session_line(leaf: Leaf, **extra: Any) -> str:
    return json.dumps(
        {
            "peer_ip": "198.51.100.7",
            "mail_from": "payments@fabrikam.com",
            "rcpt_to": ["finance@contoso.com"],
            "tls": {"peer_chain_pem": leaf.chain_pem()},
            **extra,
        }
    )


def write_setup(
    directory: Path, pki: Pki, *, crl_files: list[str] | None = None, anchors: str | None = None
) -> tuple[Path, Path]:
    (directory / "partners-ca.pem").write_text(anchors or pki.root.cert_pem())
    listed = "" if crl_files is None else f"crl_files = {json.dumps(crl_files)}"
    policy = directory / "policy.toml"
    policy.write_text(POLICY.format(crl_files=listed))
    sessions = directory / "sessions.jsonl"
    sessions.write_text(session_line(pki.leaf) + "\n")
    return policy, sessions


def name(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest() + ".crl"


def fetch(policy: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["crl", "fetch", "--policy", str(policy), *extra])
    out, err = capsys.readouterr()
    return status, out, err


# --- which URLs, where the files go ----------------------------------------------------


def test_the_crls_along_a_trusted_session_chain_are_fetched_and_the_crl_files_line_printed(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    issuing_der = server.serve("/issuing.crl", current_crl(pki.issuing))
    root_der = server.serve("/root.crl", current_crl(pki.root))
    policy, sessions = write_setup(tmp_path, pki)

    status, out, err = fetch(policy, "--sessions", str(sessions), capsys=capsys)

    assert (0, "") == (status, err)
    issuing_file = tmp_path / name(server.url("/issuing.crl"))
    root_file = tmp_path / name(server.url("/root.crl"))
    assert issuing_der == issuing_file.read_bytes()
    assert root_der == root_file.read_bytes()
    assert f'crl_files = ["{root_file.name}", "{issuing_file.name}"]' in out.splitlines() or (
        f'crl_files = ["{issuing_file.name}", "{root_file.name}"]' in out.splitlines()
    )
    assert "never edits the policy" in out
    assert sorted(["/issuing.crl", "/root.crl"]) == sorted(server.requested)
    # The printed line makes a policy that loads, with both CRLs.
    crl_line = next(line for line in out.splitlines() if line.startswith("crl_files = "))
    policy.write_text(POLICY.format(crl_files=crl_line))
    assert 0 == main(["check", str(policy)])


def test_the_trust_files_certificates_name_urls_too(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """An issuing CA in the trust file names its root's CRL; the root (also in the
    trust file) signs it. Without --sessions only the trust file is read."""
    root_der = server.serve("/root.crl", current_crl(pki.root))
    anchors = pki.root.cert_pem() + pki.issuing.cert_pem()
    policy, _ = write_setup(tmp_path, pki, anchors=anchors)

    status, _, err = fetch(policy, capsys=capsys)

    assert 0 == status, err
    assert root_der == (tmp_path / name(server.url("/root.crl"))).read_bytes()
    assert ["/root.crl"] == server.requested


def test_files_go_to_the_directory_of_the_first_crl_files_entry_and_a_missing_one_is_repaired(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy whose only problem is a missing CRL file still gets it fetched (that is
    how it is repaired); once listed, no crl_files line is printed."""
    server.serve("/issuing.crl", current_crl(pki.issuing))
    server.serve("/root.crl", current_crl(pki.root))
    listed = [f"crls/{name(server.url('/issuing.crl'))}", f"crls/{name(server.url('/root.crl'))}"]
    policy, sessions = write_setup(tmp_path, pki, crl_files=listed)
    assert 1 == main(["check", str(policy)])  # invalid: the files do not exist yet
    capsys.readouterr()

    status, out, err = fetch(policy, "--sessions", str(sessions), capsys=capsys)

    assert 0 == status, err
    assert "until its CRL files are repaired" in err
    assert all((tmp_path / entry).is_file() for entry in listed)
    assert "crl_files =" not in out
    assert 0 == main(["check", str(policy)])


def test_out_names_the_directory(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    server.serve("/issuing.crl", current_crl(pki.issuing))
    server.serve("/root.crl", current_crl(pki.root))
    policy, sessions = write_setup(tmp_path, pki)
    out_dir = tmp_path / "elsewhere" / "crls"

    status, out, _ = fetch(
        policy, "--sessions", str(sessions), "--out", str(out_dir), capsys=capsys
    )

    assert 0 == status
    assert {name(server.url("/issuing.crl")), name(server.url("/root.crl"))} == {
        p.name for p in out_dir.iterdir()
    }
    assert "elsewhere/crls/" in out


def test_an_untrusted_chains_urls_are_never_fetched(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client's certificate from a CA the policy does not trust names whatever URL its
    presenter chose: nothing is fetched for it."""
    stranger = CA("Stranger CA").issue(
        "mail.contoso-evil.com", crl_distribution_points=[server.url("/internal-admin")]
    )
    policy, sessions = write_setup(tmp_path, pki)
    sessions.write_text(session_line(stranger) + "\n")

    status, _, err = fetch(policy, "--sessions", str(sessions), capsys=capsys)

    assert 0 == status
    assert [] == server.requested
    assert "1 chain(s) of the sessions file are not trusted" in err


def test_outbound_lines_and_duplicate_chains(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outbound attempts' server chains count too; a chain seen twice is fetched for once."""
    server.serve("/issuing.crl", current_crl(pki.issuing))
    server.serve("/root.crl", current_crl(pki.root))
    policy, sessions = write_setup(tmp_path, pki)
    outbound = json.dumps(
        {"recipient": "b@fabrikam.com", "tls": {"peer_chain_pem": pki.leaf.chain_pem()}}
    )
    sessions.write_text(f"{outbound}\n{outbound}\n")

    status, _, err = fetch(policy, "--sessions", str(sessions), capsys=capsys)

    assert (0, "") == (status, err)
    assert 2 == len(server.requested)


# --- failures keep the good file -------------------------------------------------------


def _other_issuing(pki: Pki) -> CA:
    """A CA with the issuing CA's name but another key: its CRL is not the issuer's."""
    return pki.root.intermediate("Fabrikam Issuing CA")


FAILURES: dict[str, tuple[Any, str]] = {
    "404": (lambda pki: Route(404), "HTTP status 404"),
    "garbage": (lambda pki: Route(200, b"<html>not a CRL</html>"), "not a decodable CRL"),
    "oversize": (
        lambda pki: Route(200, b"", {"Content-Length": str(crl_fetch.MAX_CRL_BYTES + 1)}),
        f"larger than {crl_fetch.MAX_CRL_BYTES} bytes",
    ),
    "another key": (
        lambda pki: Route(200, current_crl(_other_issuing(pki)).public_bytes(DER)),
        "not issued and signed by the issuer",
    ),
    "another issuer": (
        lambda pki: Route(200, current_crl(pki.root).public_bytes(DER)),
        "not issued and signed by the issuer",
    ),
    "stale": (
        lambda pki: Route(
            200,
            pki.issuing.crl(
                this_update=now() - dt.timedelta(days=9), next_update=now() - dt.timedelta(days=2)
            ).public_bytes(DER),
        ),
        "stale",
    ),
    "replayed older": (
        lambda pki: Route(200, current_crl(pki.issuing, age=48).public_bytes(DER)),
        "older than the CRL kept",
    ),
    "no nextUpdate": (
        lambda pki: Route(
            200, pki.issuing.crl(this_update=now(), next_update=None).public_bytes(DER)
        ),
        "an unusable CRL",
    ),
    "redirect to file:": (
        lambda pki: Route(302, b"", {"Location": "file:///etc/passwd"}),
        "only http and https URLs are fetched",
    ),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_failed_download_keeps_the_good_file_and_exits_1(
    tmp_path: Path,
    server: CrlServer,
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
    failure: tuple[Any, str],
) -> None:
    make_route, message = failure
    good = server.serve("/issuing.crl", current_crl(pki.issuing))
    root_der = server.serve("/root.crl", current_crl(pki.root))
    policy, sessions = write_setup(tmp_path, pki)
    assert 0 == fetch(policy, "--sessions", str(sessions), capsys=capsys)[0]
    issuing_file = tmp_path / name(server.url("/issuing.crl"))
    before = issuing_file.stat()
    server.routes["/issuing.crl"] = make_route(pki)
    server.serve("/root.crl", current_crl(pki.root, age=0))  # the other URL still works

    status, out, err = fetch(policy, "--sessions", str(sessions), capsys=capsys)

    assert 1 == status
    assert good == issuing_file.read_bytes()
    assert before.st_ino == issuing_file.stat().st_ino  # not even rewritten
    assert message in err
    assert "kept the file as it was" in err
    assert root_der != (tmp_path / name(server.url("/root.crl"))).read_bytes()  # replaced
    assert "fetched" in out
    assert [] == [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_download_that_times_out_keeps_the_good_file(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    good = server.serve("/issuing.crl", current_crl(pki.issuing))
    server.serve("/root.crl", current_crl(pki.root))
    policy, sessions = write_setup(tmp_path, pki)
    assert 0 == fetch(policy, "--sessions", str(sessions), capsys=capsys)[0]
    server.routes["/issuing.crl"] = Route(
        200, current_crl(pki.issuing, age=0).public_bytes(DER), block=threading.Event()
    )

    status, _, err = fetch(policy, "--sessions", str(sessions), "--timeout", "0.2", capsys=capsys)

    assert 1 == status
    assert "timed out" in err
    assert good == (tmp_path / name(server.url("/issuing.crl"))).read_bytes()


def test_a_url_that_never_answered_writes_no_file(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    server.serve("/root.crl", current_crl(pki.root))
    policy, sessions = write_setup(tmp_path, pki)

    status, _, err = fetch(policy, "--sessions", str(sessions), capsys=capsys)

    assert 1 == status
    assert "HTTP status 404; no file written" in err
    assert not (tmp_path / name(server.url("/issuing.crl"))).exists()


def test_a_streamed_body_over_the_bound_is_cut_off(server: CrlServer, pki: Pki) -> None:
    """Without a Content-Length the body is counted as it arrives."""
    server.routes["/big"] = Route(200, b"x" * 5000, {"Content-Length": ""})
    with pytest.raises(crl_fetch.FetchError, match="larger than 1000 bytes"):
        crl_fetch.download(server.url("/big"), timeout=WAIT, max_bytes=1000)


def test_redirects_are_followed_to_http_only_and_bounded(server: CrlServer, pki: Pki) -> None:
    body = server.serve("/real.crl", current_crl(pki.issuing))
    server.routes["/moved"] = Route(301, b"", {"Location": "/real.crl"})
    assert body == crl_fetch.download(server.url("/moved"), timeout=WAIT)
    server.routes["/loop"] = Route(302, b"", {"Location": "/loop"})
    with pytest.raises(crl_fetch.FetchError, match="more than 3 redirects"):
        crl_fetch.download(server.url("/loop"), timeout=WAIT)
    assert 1 + crl_fetch.MAX_REDIRECTS == server.requested.count("/loop")


def test_https_checks_the_server_certificate(tmp_path: Path, pki: Pki) -> None:
    """https: a server certificate the context does not trust is a failure; one it
    trusts is fetched (the command uses the system CA bundle)."""
    ca = CA("Test Web CA")
    web = ca.issue("localhost", san=["localhost"])
    (tmp_path / "web.pem").write_text(web.chain_pem() + web.key_pem())
    server = CrlServer()
    try:
        body = server.serve("/issuing.crl", current_crl(pki.issuing))
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(tmp_path / "web.pem")
        server.httpd.socket = tls.wrap_socket(server.httpd.socket, server_side=True)
        url = f"https://localhost:{server.httpd.server_address[1]}/issuing.crl"
        with pytest.raises(crl_fetch.FetchError, match="TLS error"):
            crl_fetch.download(url, timeout=WAIT)
        trusting = ssl.create_default_context(cadata=ca.cert_pem())
        assert body == crl_fetch.download(url, timeout=WAIT, context=trusting)
    finally:
        server.close()


# --- URLs refused, exit statuses -------------------------------------------------------


def test_ldap_beside_http_is_refused_with_a_line_but_not_a_failure(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf = pki.issuing.issue(
        "server2.fabrikam.com",
        crl_distribution_points=[
            "ldap://dc1.fabrikam.com/CN=Issuing,CN=CDP",
            server.url("/issuing.crl"),
        ],
    )
    server.serve("/issuing.crl", current_crl(pki.issuing))
    server.serve("/root.crl", current_crl(pki.root))
    policy, sessions = write_setup(tmp_path, pki)
    sessions.write_text(session_line(leaf) + "\n")

    status, _, err = fetch(policy, "--sessions", str(sessions), capsys=capsys)

    assert 0 == status
    assert (
        "refused 'ldap://dc1.fabrikam.com/CN=Issuing,CN=CDP': only http and https URLs are fetched"
        in err
    )


def test_a_certificate_with_only_ftp_and_file_urls_fails(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf = pki.issuing.issue(
        "server3.fabrikam.com",
        crl_distribution_points=["ftp://ftp.fabrikam.com/issuing.crl", "file:///etc/issuing.crl"],
    )
    server.serve("/root.crl", current_crl(pki.root))
    policy, sessions = write_setup(tmp_path, pki)
    sessions.write_text(session_line(leaf) + "\n")

    status, _, err = fetch(policy, "--sessions", str(sessions), capsys=capsys)

    assert 1 == status
    assert "refused 'ftp://ftp.fabrikam.com/issuing.crl'" in err
    assert "refused 'file:///etc/issuing.crl'" in err
    assert ["/root.crl"] == server.requested


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--timeout", "0"], "--timeout must be more than 0 and at most 300"),
        (["--timeout", "nan"], "--timeout must be"),
        (["--deadline", "3601"], "--deadline must be more than 0 and at most 3600"),
        (["--sessions", "/nonexistent/sessions.jsonl"], "--sessions '/nonexistent/sessions.jsonl': cannot read: "),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    policy, _ = write_setup(tmp_path, pki)
    status, _, err = fetch(policy, *argv, capsys=capsys)
    assert 2 == status
    assert message in err


def test_an_invalid_policy_exits_2(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    policy, _ = write_setup(tmp_path, pki)
    policy.write_text(POLICY.format(crl_files="") + "enabled = 'yes'\n")
    status, _, err = fetch(policy, capsys=capsys)
    assert 2 == status
    assert "enabled" in err


def test_a_sessions_line_that_is_not_json_exits_1_after_fetching_the_others(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    server.serve("/issuing.crl", current_crl(pki.issuing))
    server.serve("/root.crl", current_crl(pki.root))
    policy, sessions = write_setup(tmp_path, pki)
    sessions.write_text("{not json\n" + session_line(pki.leaf) + "\n")

    status, _, err = fetch(policy, "--sessions", str(sessions), capsys=capsys)

    assert 1 == status
    assert "sessions line 1: not a JSON object" in err
    assert 2 == len(server.requested)


# --- atomic replace --------------------------------------------------------------------


def test_a_file_is_replaced_by_a_rename_from_the_same_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(source: str, target: Path) -> None:
        renames.append((str(source), str(target)))
        assert b"old" == Path(target).read_bytes()  # the old file is whole until the rename
        assert b"new" == Path(source).read_bytes()
        real_replace(source, target)

    target = tmp_path / "x.crl"
    target.write_bytes(b"old")
    monkeypatch.setattr(crl_fetch.os, "replace", spy)
    crl_fetch.replace_atomically(target, b"new")
    ((source, destination),) = renames
    assert (str(tmp_path), str(target)) == (os.path.dirname(source), destination)
    assert b"new" == target.read_bytes()
    assert ["x.crl"] == [p.name for p in tmp_path.iterdir()]
    assert 0o644 == target.stat().st_mode & 0o777


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*_: Any) -> None:
        raise OSError(28, "No space left on device")

    target = tmp_path / "x.crl"
    target.write_bytes(b"old")
    monkeypatch.setattr(crl_fetch.os, "fsync", failing)
    with pytest.raises(OSError, match="No space"):
        crl_fetch.replace_atomically(target, b"new")
    assert b"old" == target.read_bytes()
    assert ["x.crl"] == [p.name for p in tmp_path.iterdir()]


# --- a reload picks the new CRL up -----------------------------------------------------


def test_a_revoked_certificate_is_refused_once_its_crl_is_fetched(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """The leaf of the sessions file is accepted with the CRL fetched first; its CA
    revokes it; after the next fetch the same session is rejected certificate-revoked."""
    server.serve("/issuing.crl", current_crl(pki.issuing, age=2))
    server.serve("/root.crl", current_crl(pki.root))
    policy, sessions = write_setup(tmp_path, pki)
    sessions.write_text(session_line(pki.leaf, at=now().isoformat()) + "\n")
    status, out, _ = fetch(policy, "--sessions", str(sessions), capsys=capsys)
    assert 0 == status
    crl_line = next(line for line in out.splitlines() if line.startswith("crl_files = "))
    policy.write_text(POLICY.format(crl_files=crl_line))

    def decide() -> dict[str, Any]:
        assert 0 == main(
            ["inbound", "--policy", str(policy), "--sessions", str(sessions), "--json"]
        )
        decision: dict[str, Any] = json.loads(capsys.readouterr().out)
        return decision

    assert "accept" == decide()["action"]
    server.serve("/issuing.crl", current_crl(pki.issuing, [pki.leaf.cert], age=1))
    assert 0 == fetch(policy, "--sessions", str(sessions), capsys=capsys)[0]
    refused = decide()
    assert "reject" == refused["action"]
    assert ["certificate-revoked"] == [r["code"] for r in refused["reasons"]]


def test_serve_postfix_rereads_the_crl_files_on_sighup(
    tmp_path: Path, server: CrlServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """serve postfix reads crl_files again on SIGHUP: a file broken under it makes the
    reload fail (the policy in force kept); once crl fetch replaced it, the reload
    succeeds."""
    server.serve("/issuing.crl", current_crl(pki.issuing))
    server.serve("/root.crl", current_crl(pki.root))
    listed = [name(server.url("/issuing.crl")), name(server.url("/root.crl"))]
    policy, sessions = write_setup(tmp_path, pki, crl_files=listed)
    assert 0 == fetch(policy, "--sessions", str(sessions), capsys=capsys)[0]
    service = PolicyService(policy).start()
    try:
        (tmp_path / listed[0]).write_bytes(b"garbage")
        service.signal(signal.SIGHUP)
        (failed,) = service.wait_event("reload-failed")
        assert any("trust.crl_files[0]" in problem for problem in failed["problems"])

        server.serve("/issuing.crl", current_crl(pki.issuing, [pki.leaf.cert], age=0))
        assert 0 == fetch(policy, "--sessions", str(sessions), capsys=capsys)[0]
        service.signal(signal.SIGHUP)
        service.wait_event("reload")
    finally:
        assert 0 == service.stop()
    assert 1 == sum(e["event"] == "reload" for e in service.events)
