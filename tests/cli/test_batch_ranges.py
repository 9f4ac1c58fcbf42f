"""``--jobs``: the main process reads the input in blocks and splits them into lines at
C speed; the lines are exactly those the one-process path reads (``_lines``), and the
answers are the same. The lean inbound reader (``_facts._lean_inbound``) answers
exactly as ``InboundSession.from_json``, or leaves the line to it."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_diff import OLD

from tlsconnector import FactsError, InboundSession, PresentedChain
from tlsconnector import _facts as facts_module
from tlsconnector.cli import batch, main
from tlsconnector.cli.batch import _chunks, _line_batches, _lines

from certmint import CA

AT = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
#: test_diff's policy: Fabrikam's connector, 198.51.100.0/24.
POLICY = OLD


def reference(data: bytes) -> list[bytes | None]:
    """The lines as the one-process path reads them, without their newline."""
    return [
        None if line is None else line[:-1] if line.endswith(b"\n") else line
        for _, line in _lines(io.BytesIO(data))
    ]


@pytest.fixture
def small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "READ_BYTES", 7)
    monkeypatch.setattr(batch, "MAX_LINE_BYTES", 12)
    monkeypatch.setattr(batch, "CHUNK_LINES", 3)
    monkeypatch.setattr(batch, "CHUNK_BYTES", 20)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{}",
        b"{}\n",
        b"\n",
        b"\n\n\n",
        b"one line without newline",
        b'{"a": 1}\r\n{"b": 2}\r\n',
        b"abcdef\nghijklmnopq\nr",  # lines straddling reads of 7 bytes
        b"x" * 12 + b"\n" + b"y" * 12,  # at the bound, with and without a newline
        b"x" * 13 + b"\n" + b"y" * 13,  # one over it, with and without a newline
        b"x" * 40 + b"\nok\n" + b"z" * 30,  # overlong over several reads
        b"\xff\xfe not utf-8\n{}\n",
        b"a\rb\x0bc\x1cd\n",  # only "\n" ends a line, as readline
    ],
)
@pytest.mark.usefixtures("small_bounds")
def test_blocks_split_into_exactly_the_lines_readline_gives(data: bytes) -> None:
    lines = [line for batch_ in _line_batches(io.BytesIO(data)) for line in batch_]
    assert reference(data) == lines
    assert reference(data) == [line for chunk in _chunks(io.BytesIO(data)) for line in chunk]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r\n", b"\xff", b"x" * 9, b"{}"])))
@pytest.mark.usefixtures("small_bounds")
def test_any_bytes_give_the_same_lines_in_bounded_chunks(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    chunks = list(_chunks(io.BytesIO(data)))
    assert reference(data) == [line for chunk in chunks for line in chunk]
    for chunk in chunks:
        assert 1 <= len(chunk) <= batch.CHUNK_LINES
        size = sum(len(line) for line in chunk if line is not None)
        assert len(chunk) == 1 or size <= batch.CHUNK_BYTES


def hostile_file(path: Path) -> None:
    good = {"peer_ip": "198.51.100.7", "mail_from": "a@fabrikam.com", "rcpt_to": ["b@contoso.com"]}
    lines = [
        json.dumps(good).encode() + b"\r\n",
        json.dumps({**good, "peer_ip": "203.0.113.9"}).encode() + b"\n",
        b"\n",
        b"\xff\xfe not utf-8\n",
        b'{"peer_ip": "198.51.100.7", "peer_ip": "198.51.100.8", "mail_from": ""}\n',
        json.dumps({**good, "tls": {"peer_cn": ["x"], "peer_verified": "yes"}}).encode() + b"\n",
        json.dumps({**good, "helo": "h" * 2000}).encode() + b"\n",
        b"x" * 300 + b"\n",
        json.dumps({**good, "at": "2026-11-26T12:00:00"}).encode(),  # no final newline
    ]
    path.write_bytes(b"".join(lines * 5))


@pytest.mark.parametrize("command", ["inbound", "diff"])
def test_workers_reading_blocks_answer_exactly_as_one_process(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    narrowed = tmp_path / "narrowed.toml"
    narrowed.write_text(POLICY.replace("/24", "/28"))
    sessions = tmp_path / "sessions.jsonl"
    hostile_file(sessions)
    # Small reads, chunks and line bound: lines straddle reads and chunks, and the
    # 300-byte line is over the bound.
    monkeypatch.setattr(batch, "READ_BYTES", 50)
    monkeypatch.setattr(batch, "CHUNK_LINES", 4)
    monkeypatch.setattr(batch, "MAX_LINE_BYTES", 200)
    if command == "inbound":
        argv = ["inbound", "--policy", str(policy), "--sessions", str(sessions), "--json"]
    else:
        argv = ["diff", "--old", str(policy), "--new", str(narrowed)]
        argv += ["--inbound", str(sessions), "--json"]
    answers = []
    for jobs in ("1", "2"):
        capsys.readouterr()
        status = main([*argv, "--jobs", jobs])
        out, err = capsys.readouterr()
        answers.append((status, out, err))
    assert answers[0] == answers[1]
    status, out, err = answers[0]
    assert 1 == status
    assert "longer than 200 bytes" in err
    assert "not UTF-8 (byte 0)" in err
    assert "is given twice" in err
    if command == "inbound":
        # Five copies of nine lines; the last has no newline, so four join the next.
        assert 41 == len(out.splitlines())


# --- the lean inbound reader ------------------------------------------------------------

#: A real chain (a leaf of a test CA): a line the lean reader leaves to from_json.
LEAF_PEM = CA("Lean Reader Test Root").issue("server1.fabrikam.com").chain_pem()

VALUES: dict[str, list[Any]] = {
    "peer_ip": [
        "198.51.100.7",
        "::ffff:198.51.100.7",
        "2001:db8::1",
        "fe80::1%eth0",
        "1.2.3",
        "01.2.3.4",
        "",
        7,
        None,
        ["1.2.3.4"],
    ],
    "mail_from": [
        "a@fabrikam.com",
        "",
        "<>",
        "<a@Fabrikam.COM.>",
        "postmaster",
        "a@[192.0.2.1]",
        "a@b c",
        "a\x01@x.com",
        "@x.com",
        "a@" + "x" * 1100,
        3,
        None,
        {},
    ],
    "rcpt_to": [
        [],
        ["b@contoso.com"],
        ["postmaster"],
        [""],
        ["b@contoso.com", 5],
        "b@x.com",
        None,
        [["b@x.com"]],
    ],
    "at": [
        "2026-11-26T12:00:00Z",
        "2026-11-26T12:00:00+02:00",
        "2026-11-26T12:00:00",
        "9999-12-31T23:59:59-23:59",
        "yesterday",
        5,
        None,
        ["x"],
    ],
    "helo": ["mail.fabrikam.com", "", "h" * 1025, 5, None],
    "tls": [
        None,
        {},
        {"peer_cn": ["mx.fabrikam.com"], "peer_verified": True},
        {"peer_cn": [], "peer_verified": False, "peer_fingerprint": "ab:cd"},
        {"peer_cn": ["x"] * 17, "peer_verified": True},
        {"peer_cn": ["x" * 1025], "peer_verified": True},
        {"peer_cn": ["x"], "peer_verified": "true"},
        {"peer_cn": "x", "peer_verified": True},
        {"peer_cn": ["x"], "peer_verified": True, "peer_fingerprint": 5},
        {"peer_fingerprint": "ab"},
        {"peer_verified": True},
        {"peer_cn": ["x"], "peer_verified": True, "ocsp_response": "AA=="},
        {"peer_chain_pem": "not pem"},
        {"peer_chain_pem": LEAF_PEM},
        {"peer_chain_pem": LEAF_PEM, "peer_verified": True},
        {"peer_chain_pem": LEAF_PEM, "ocsp_response": "AA=="},
        {"peer_chain_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
        {"peer_chain_pem": 5},
        {"other": 1},
        [],
        "tls",
    ],
    "recorded": [{"action": "accept"}],
    "other": [1],
}


def full_way(obj: object, default_at: dt.datetime | None) -> object:
    """What from_json answers without the lean reader: a session or the error."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(facts_module, "_lean", lambda *_, **__: None)
        try:
            return InboundSession.from_json(obj, default_at=default_at)
        except FactsError as exc:
            return ("error", exc.field, repr(exc.value), exc.message)


def lean_way(obj: object, default_at: dt.datetime | None) -> tuple[object, object]:
    try:
        session: object = InboundSession.from_json(obj, default_at=default_at)
    except FactsError as exc:
        session = ("error", exc.field, repr(exc.value), exc.message)
    try:
        domain: object = facts_module.inbound_sender_domain(obj, default_at=default_at)
    except FactsError as exc:
        domain = ("error", exc.field, repr(exc.value), exc.message)
    try:
        both = facts_module.inbound_sender_domain_or_session(obj, default_at=default_at)
    except FactsError as exc:
        both = (("error", exc.field, repr(exc.value), exc.message), None)
    # The same domain (or error); a session it built is from_json's.
    assert domain == both[0]
    assert both[1] is None or both[1] == session
    return session, domain


@st.composite
def session_objects(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.sets(st.sampled_from(sorted(VALUES))))
    keys |= draw(st.sets(st.sampled_from(["peer_ip", "mail_from"]), min_size=1))
    return {key: draw(st.sampled_from(VALUES[key])) for key in sorted(keys)}


@settings(max_examples=600, deadline=None)
@given(session_objects(), st.sampled_from([AT, None, dt.datetime(2026, 11, 26, 12)]))
def test_the_lean_reader_answers_exactly_as_the_full_way(
    obj: dict[str, Any], default_at: dt.datetime | None
) -> None:
    expected = full_way(obj, default_at)
    for _ in range(2):  # the second time from its memories
        session, domain = lean_way(obj, default_at)
        assert expected == session
        if isinstance(expected, InboundSession):
            assert expected.sender_domain == domain
        else:
            assert expected == domain


def test_a_line_left_to_the_full_way_gives_its_session_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A line the lean reader leaves to from_json: the session built to find the sender
    domain is returned, so that diff does not read the line again."""
    obj = {
        "peer_ip": "198.51.100.7",
        "mail_from": "a@fabrikam.com",
        "tls": {"peer_chain_pem": LEAF_PEM},
    }
    assert ("fabrikam.com", None) == facts_module.inbound_sender_domain_or_session(
        obj, default_at=AT
    )
    expected = InboundSession.from_json(obj, default_at=AT)
    monkeypatch.setattr(facts_module, "_lean", lambda *_, **__: None)  # left to from_json
    domain, session = facts_module.inbound_sender_domain_or_session(obj, default_at=AT)
    assert "fabrikam.com" == domain
    assert expected == session


def test_the_lean_reader_is_what_reads_valid_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid line is read by the lean reader (from_json's own path never runs), and
    its memories are bounded in entries and in the length of a value."""
    facts_module._valid.clear()
    monkeypatch.setattr(facts_module, "MAX_VALID_VALUES", 4)
    monkeypatch.setattr(facts_module, "_session_object", None)  # the full way would fail
    for n in range(10):
        obj = {
            "peer_ip": f"198.51.100.{n}",
            "mail_from": f"a@x{n}.com",
            "at": "2026-11-26T12:00:00Z",
            "rcpt_to": [f"b{n}@contoso.com"],
            "tls": {"peer_cn": [f"c{n}"], "peer_verified": True},
        }
        session = InboundSession.from_json(obj)
        assert (f"x{n}.com", AT) == (session.sender_domain, session.at)
    # A PEM chain too (parsed once per distinct text, as from_json parses it).
    chain = {"peer_ip": "198.51.100.7", "mail_from": "a@fabrikam.com", "at": AT.isoformat()}
    chain["tls"] = {"peer_chain_pem": LEAF_PEM}
    session = InboundSession.from_json(chain)
    assert session.tls is not None
    assert isinstance(session.tls.certificate, PresentedChain)
    assert ("server1.fabrikam.com",) == session.tls.certificate.cns
    long_sender = "a" * 300 + "@long.example.com"
    assert "long.example.com" == facts_module.inbound_sender_domain(
        {"peer_ip": "198.51.100.7", "mail_from": long_sender}, default_at=AT
    )
    memories = facts_module._valid
    for memory in (memories.peer_ips, memories.senders, memories.recipients, memories.cn_facts):
        assert 1 <= len(memory) <= 4
    assert long_sender not in memories.senders
    facts_module._valid.clear()


def test_the_memories_are_bounded_in_characters_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long values empty a memory once the characters it holds would pass the bound,
    whatever the count of entries (each memory is emptied on its own)."""
    facts_module._valid.clear()
    monkeypatch.setattr(facts_module, "MAX_VALID_CHARACTERS", 1000)
    senders = facts_module._valid.senders
    for n in range(40):
        sender = f"{'s' * 200}{n}@partner.example"
        assert (
            facts_module.inbound_sender_domain(
                {"peer_ip": "198.51.100.7", "mail_from": sender}, default_at=AT
            )
            == "partner.example"
        )
        assert senders.characters <= 1000
        assert sender in senders  # the newest value is always kept
    assert 1 <= len(senders) <= 1000 // 200
    facts_module._valid.clear()
    assert senders.characters == 0


def test_a_read_is_never_longer_than_a_line_may_be() -> None:
    """_line_batches checks only the lines that span reads against MAX_LINE_BYTES: a
    line inside one read is shorter than a read, so a read must not pass that bound."""
    assert batch.READ_BYTES <= batch.MAX_LINE_BYTES


def test_a_pipe_is_decided_as_its_lines_arrive() -> None:
    """read1: a stream that has a few lines so far gives them at once, without waiting
    for a whole read of READ_BYTES."""
    import os
    import threading

    read_end, write_end = os.pipe()
    got: list[list[bytes | None]] = []
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb") as writer:
        writer.write(b'{"a": 1}\n{"b": 2}\n')
        writer.flush()
        # The writer stays open: a read waiting for READ_BYTES would block, so the read
        # runs in a thread, and closing the writer after the time-out ends it.
        thread = threading.Thread(target=lambda: got.append(next(batch._line_batches(reader))))
        thread.start()
        thread.join(timeout=10)
        arrived = bool(got)
        writer.close()
        thread.join(timeout=10)
    assert arrived, "the lines waited for a whole read"
    assert got == [[b'{"a": 1}', b'{"b": 2}']]
