"""`tlsconnector demo`: the Contoso and Fabrikam Bank scenario, in memory.

The expected outcomes below are the specification of the demo: they are asserted
against the library's own decisions, against the printed table and against the JSON
lines, so the demo can never show something the library does not decide.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tlsconnector.cli import batch as _cli
from tlsconnector.cli import main
from tlsconnector.cli.demo import AT, DEMO_POLICY, Direction, run_demo
from tlsconnector.policy_file.lint import lint

DEMO_DOCS = Path(__file__).resolve().parents[2] / "docs" / "demo.md"

IN = "Fabrikam Bank inbound"
OUT = "Fabrikam Bank outbound"
SEL = "connector-selected"

#: (direction, session label, action, connector, reason codes), in the demo's order.
EXPECTED: list[tuple[str, str, str, str | None, tuple[str, ...]]] = [
    ("inbound", "server1.fabrikam.com, trusted CA", "accept", IN, ("connector-satisfied",)),
    ("inbound", "server2.fabrikam.com, trusted CA", "accept", IN, ("connector-satisfied",)),
    (
        "inbound",
        "server3.fabrikam.com, verified by the MTA",
        "accept",
        IN,
        ("connector-satisfied",),
    ),
    (
        "inbound",
        "fabrikam.com (the apex), trusted CA",
        "reject",
        IN,
        ("certificate-name-mismatch",),
    ),
    (
        "inbound",
        "a.b.fabrikam.com (two labels), trusted CA",
        "reject",
        IN,
        ("certificate-name-mismatch",),
    ),
    ("inbound", "server1.fabrikam.com, self-signed", "reject", IN, ("certificate-not-trusted",)),
    (
        "inbound",
        "server1.fabrikam.com, expired 2026-06-30",
        "reject",
        IN,
        ("certificate-expired",),
    ),
    (
        "inbound",
        "server1.fabrikam.com only in the SAN",
        "reject",
        IN,
        ("certificate-name-mismatch",),
    ),
    (
        "inbound",
        "server2.fabrikam.com, no intermediate CA",
        "reject",
        IN,
        ("certificate-not-trusted",),
    ),
    ("inbound", "TLS without a client certificate", "reject", IN, ("certificate-missing",)),
    ("inbound", "no TLS", "reject", IN, ("tls-required", "certificate-missing")),
    (
        "inbound",
        "example.org, no TLS (no connector governs it)",
        "accept",
        None,
        ("no-connector",),
    ),
    ("outbound", "plan for fabrikam.com (before connecting)", "route", OUT, (SEL,)),
    ("outbound", "mx1.fabrikam.com, trusted CA", "deliver", OUT, (SEL,)),
    (
        "outbound",
        "mx1.fabrikam.com, no STARTTLS offered",
        "defer",
        OUT,
        ("starttls-not-supported", SEL),
    ),
    ("outbound", "mx1.fabrikam.com, self-signed", "defer", OUT, ("certificate-not-trusted", SEL)),
    (
        "outbound",
        "fabrikam.com (the apex) as CN, trusted CA",
        "defer",
        OUT,
        ("certificate-host-mismatch", SEL),
    ),
    (
        "outbound",
        "mx1.fabrikam.com, expired, queued 2 h",
        "defer",
        OUT,
        ("certificate-expired", SEL),
    ),
    (
        "outbound",
        "mx1.fabrikam.com, expired, queued 30 h",
        "fail",
        OUT,
        ("message-expired", "certificate-expired", SEL),
    ),
    (
        "outbound",
        "example.org, no STARTTLS (no connector)",
        "deliver",
        None,
        ("no-connector",),
    ),
]


def table_rows(text: str) -> dict[str, list[str]]:
    """The printed table as {session label: [action, connector, reasons]}."""
    rows: dict[str, list[str]] = {}
    labels = {label for _, label, *_ in EXPECTED}
    for line in text.splitlines():
        cells = re.split(r" {2,}", line)
        if cells[0] in labels:
            rows[cells[0]] = cells[1:]
    return rows


def printed(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert 0 == main(["demo", *args])
    out, err = capsys.readouterr()
    assert "" == err
    return out


def test_the_library_decides_what_the_demo_expects() -> None:
    _, rows = run_demo()
    actual = [
        (str(r.direction), r.label, str(r.decision.action), r.decision.connector, r.decision.codes)
        for r in rows
    ]
    assert EXPECTED == actual


def test_demo_prints_every_session_with_its_action_connector_and_reasons(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = printed(capsys)
    expected = {
        label: [action, connector or "(none)", ", ".join(codes)]
        for _, label, action, connector, codes in EXPECTED
    }
    assert expected == table_rows(out)


def test_demo_states_its_fixed_time_and_connectors(capsys: pytest.CaptureFixture[str]) -> None:
    out = printed(capsys)
    assert "Session time (fixed): 2026-11-26T12:00:00Z" in out
    assert (
        "Inbound connector 'Fabrikam Bank inbound': from fabrikam.com; require_tls, "
        "certificate CN *.fabrikam.com"
    ) in out
    assert (
        "Outbound connector 'Fabrikam Bank outbound': to fabrikam.com; MX; "
        "domain_validation, certificate CN *.fabrikam.com"
    ) in out
    inbound_at = out.index("== Inbound: mail from Fabrikam Bank to Contoso ==")
    outbound_at = out.index("== Outbound: mail from Contoso to Fabrikam Bank ==")
    assert inbound_at < out.index("server1.fabrikam.com, trusted CA") < outbound_at
    assert outbound_at < out.index("mx1.fabrikam.com, trusted CA")


def test_demo_json_lines_are_the_decisions_with_a_session_label(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = printed(capsys, "--json").splitlines()
    objects = [json.loads(line) for line in lines]
    assert [
        (label, action, connector, list(codes)) for _, label, action, connector, codes in EXPECTED
    ] == [
        (o["session"], o["action"], o["connector"], [r["code"] for r in o["reasons"]])
        for o in objects
    ]
    _, rows = run_demo()
    for obj, row in zip(objects, rows, strict=True):
        assert ["session", *row.decision.to_dict()] == list(obj)
    assert all(
        line == json.dumps(o, separators=(",", ":")) for line, o in zip(lines, objects, strict=True)
    )


def test_demo_json_matches_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    table = table_rows(printed(capsys))
    objects = [json.loads(line) for line in printed(capsys, "--json").splitlines()]
    assert table == {
        o["session"]: [
            o["action"],
            o["connector"] or "(none)",
            ", ".join(r["code"] for r in o["reasons"]),
        ]
        for o in objects
    }


def test_demo_decides_at_the_fixed_time() -> None:
    """Every session carries the stated time; expired certificates say so."""
    _, rows = run_demo()
    expired = [r for r in rows if "certificate-expired" in r.decision.codes]
    assert 3 == len(expired)
    for row in expired:
        (reason,) = [x for x in row.decision.reasons if str(x.code) == "certificate-expired"]
        assert "expired at 2026-06-30T00:00:00+00:00" in reason.detail
        assert "session time 2026-11-26T12:00:00+00:00" in reason.detail
    assert "2026-11-26T12:00:00+00:00" == AT.isoformat()


def test_demo_never_reads_the_clock(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_clock() -> None:
        raise AssertionError("the demo must not read the clock")

    monkeypatch.setattr(_cli, "_now", no_clock)
    assert table_rows(printed(capsys))


def test_demo_output_is_the_same_on_every_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Fresh keys and serial numbers each run, yet not one character of output changes."""
    assert printed(capsys) == printed(capsys)
    assert printed(capsys, "--json") == printed(capsys, "--json")


def test_demo_policy_is_clean_under_lint() -> None:
    policy, _ = run_demo()
    assert [] == lint(policy)
    assert ["fabrikam.com"] == DEMO_POLICY["inbound"][0]["sender_domains"]


def test_docs_show_the_real_demo_output(capsys: pytest.CaptureFixture[str]) -> None:
    text = DEMO_DOCS.read_text(encoding="utf-8")
    match = re.search(r"```text\n\$ tlsconnector demo\n(.*?)```", text, flags=re.DOTALL)
    assert match is not None, "docs/demo.md shows the output of `tlsconnector demo`"
    assert printed(capsys) == match.group(1)


def test_demo_rows_are_in_direction_order() -> None:
    _, rows = run_demo()
    directions = [r.direction for r in rows]
    assert sorted(directions, key=list(Direction).index) == directions
