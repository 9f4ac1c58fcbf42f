"""``tlsconnector diff`` (spec section 12; docs/changing-a-policy.md): exactly the
sessions whose action, connector or reason codes change, by transition and connector."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsconnector import InboundSession, Policy
from tlsconnector.adapters._recording import session_json
from tlsconnector.cli import diff as diff_module
from tlsconnector.cli import main
from tlsconnector.policy_file.writing import dumps_policy
from tlsconnector.testing import default_authority, inbound_sessions, policy_mappings

AT = "2026-11-26T12:00:00Z"
OLD = """
[[inbound]]
name = "Fabrikam Bank inbound"
sender_domains = ["fabrikam.com"]
require_tls = false
restrict_domains_to_ip_addresses = true
sender_ip_addresses = ["198.51.100.0/24"]
"""
NEW = OLD.replace('"198.51.100.0/24"', '"198.51.100.0/28"')


def session(peer_ip: str, sender: str = "payments@fabrikam.com", **extra: Any) -> str:
    obj = {"peer_ip": peer_ip, "mail_from": sender, "rcpt_to": ["b@contoso.com"], "at": AT}
    return json.dumps({**obj, **extra})


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["diff", *argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    lines = [
        session("198.51.100.7"),  # stays accepted
        session("198.51.100.77"),  # accepted under OLD, refused under NEW
        session("203.0.113.9"),  # refused under both
        session("192.0.2.1", sender="news@example.org"),  # no connector either way
        session("198.51.100.200"),  # accepted under OLD, refused under NEW
    ]
    return {
        "old": write(tmp_path, "old.toml", OLD),
        "new": write(tmp_path, "new.toml", NEW),
        "sessions": write(tmp_path, "sessions.jsonl", "\n".join(lines) + "\n"),
        "dir": str(tmp_path),
    }


def test_the_report_names_exactly_the_changed_sessions(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        capsys, "--old", files["old"], "--new", files["new"], "--inbound", files["sessions"]
    )
    assert 1 == status
    assert out.startswith(
        "inbound: 5 sessions, 2 decisions change\n"
        "  by transition:\n"
        "    accept -> reject: 2\n"
        "  by connector:\n"
        "    Fabrikam Bank inbound: 2\n"
        "  examples of accept -> reject (2 of 2):\n"
        "    line 2: Fabrikam Bank inbound\n"
        "      old: connector-satisfied (every check of connector 'Fabrikam Bank inbound' holds)\n"
        "      new: ip-not-allowed ("
    )
    assert "    line 5: " in out
    status, out, _ = run(
        capsys,
        "--old",
        files["old"],
        "--new",
        files["new"],
        "--inbound",
        files["sessions"],
        "--examples",
        "1",
    )
    assert "(1 of 2)" in out
    assert "line 5" not in out


def test_a_change_of_many_connectors_names_the_most_changed_and_counts_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 25 partners' connectors narrowed; partner i sends i + 1 sessions that change.
    count = diff_module.MAX_SUMMARY_CONNECTORS + 5
    old = "".join(
        f'[[inbound]]\nname = "p{i:02}"\nsender_domains = ["p{i}.example"]\n'
        "restrict_domains_to_ip_addresses = true\n"
        'sender_ip_addresses = ["198.51.100.0/24"]\n'
        for i in range(count)
    )
    new = old.replace('"198.51.100.0/24"', '"198.51.100.0/28"')
    lines = [
        session("198.51.100.77", sender=f"a@p{i}.example")
        for i in range(count)
        for _ in range(i + 1)
    ]
    files = [
        write(tmp_path, "old.toml", old),
        write(tmp_path, "new.toml", new),
        write(tmp_path, "s.jsonl", "\n".join(lines) + "\n"),
    ]
    status, out, _ = run(capsys, "--old", files[0], "--new", files[1], "--inbound", files[2])
    assert 1 == status
    part = out.split("  by connector:\n")[1].split("  examples")[0].splitlines()
    named = [f"    p{i:02}: {i + 1}" for i in reversed(range(5, count))]
    assert [*named, "    ... 5 more connectors: 15"] == part  # 1 + 2 + 3 + 4 + 5
    status, out, err = run(
        capsys, "--old", files[0], "--new", files[1], "--inbound", files[2], "--json"
    )
    assert len(lines) == len(out.splitlines())  # --json: every changed session
    assert "... 5 more connectors: 15" in err


def test_json_gives_one_object_per_changed_session_and_the_summary_on_stderr(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(
        capsys,
        "--old",
        files["old"],
        "--new",
        files["new"],
        "--inbound",
        files["sessions"],
        "--json",
    )
    assert 1 == status
    objects = [json.loads(line) for line in out.splitlines()]
    assert [(2, "inbound", "accept", "reject"), (5, "inbound", "accept", "reject")] == [
        (o["line"], o["direction"], o["old"]["action"], o["new"]["action"]) for o in objects
    ]
    assert ["ip-not-allowed"] == [r["code"] for r in objects[0]["new"]["reasons"]]
    assert "inbound: 5 sessions, 2 decisions change" in err


def test_no_change_is_exit_0(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "--old", files["old"], "--new", files["old"], "--inbound", files["sessions"]
    )
    assert (0, "inbound: 5 sessions, 0 decisions change\n") == (status, out)


def test_a_malformed_line_is_an_error_in_its_place_and_the_rest_is_compared(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = Path(files["sessions"]).read_text().splitlines()
    text.insert(1, '{"peer_ip": "not an ip", "mail_from": "a@fabrikam.com"}')
    text.insert(2, "not json")
    sessions = write(Path(files["dir"]), "broken.jsonl", "\n".join(text) + "\n")
    status, out, err = run(
        capsys, "--old", files["old"], "--new", files["new"], "--inbound", sessions, "--json"
    )
    assert 1 == status
    objects = [json.loads(line) for line in out.splitlines()]
    assert [("error", 2, "peer_ip"), ("error", 3, "(line)"), 4, 7] == [
        ("error", o["error"]["line"], o["error"]["field"]) if "error" in o else o["line"]
        for o in objects
    ]
    assert "line 2: peer_ip = 'not an ip': peer IP address: not an IPv4 or IPv6 address\n" in err
    assert "7 sessions, 2 decisions change, 2 lines could not be read" in err


def test_old_recorded_compares_with_the_recorded_decisions(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = {"action": "accept", "connector": "Fabrikam Bank inbound"}
    lines = [
        session("198.51.100.7", recorded={**recorded, "codes": ["connector-satisfied"]}),
        session("198.51.100.77", recorded={**recorded, "codes": ["connector-satisfied"]}),
        session("198.51.100.8"),  # nothing recorded
        session("198.51.100.9", recorded={"action": "accept", "codes": "x"}),
    ]
    sessions = write(Path(files["dir"]), "recorded.jsonl", "\n".join(lines) + "\n")
    status, out, _ = run(
        capsys, "--old", "recorded", "--new", files["new"], "--inbound", sessions, "--json"
    )
    assert 1 == status
    objects = [json.loads(line) for line in out.splitlines()]
    assert 2 == objects[0]["line"]
    assert {**recorded, "codes": ["connector-satisfied"]} == objects[0]["old"]
    assert [("recorded", "is required with --old recorded"), ("recorded.codes", None)] == [
        (o["error"]["field"], o["error"]["message"] if o["error"]["line"] == 3 else None)
        for o in objects[1:]
    ]


@pytest.mark.parametrize("old", ["recorded", "policy"])
def test_a_tempfail_recorded_without_facts_is_an_error_saying_so_under_either_old(
    old: str, files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The service records a 451 whose facts it could not read without them: such a
    line never replays as a decision, and both --old forms say what it is."""
    tempfail = {"action": "tempfail", "connector": None, "codes": ["internal-error"]}
    accepted = {"action": "accept", "connector": "Fabrikam Bank inbound"}
    lines = [
        json.dumps({"recorded": tempfail}),
        session("198.51.100.77", recorded={**accepted, "codes": ["connector-satisfied"]}),
    ]
    sessions = write(Path(files["dir"]), "tempfail.jsonl", "\n".join(lines) + "\n")
    against = "recorded" if old == "recorded" else files["old"]
    status, out, err = run(
        capsys, "--old", against, "--new", files["new"], "--inbound", sessions, "--json"
    )
    assert 1 == status
    assert "\ninbound: 2 sessions, 1 decision changes, 1 line could not be read\n" in err
    objects = [json.loads(line) for line in out.splitlines()]
    assert ("recorded", 1) == (objects[0]["error"]["field"], objects[0]["error"]["line"])
    assert "recorded without facts" in objects[0]["error"]["message"]
    assert [2] == [o["line"] for o in objects[1:]]  # the other line is still compared


def test_outbound_sessions_are_compared_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write(
        tmp_path,
        "old.toml",
        '[[outbound]]\nname = "Fabrikam"\nrecipient_domains = ["fabrikam.com"]\n'
        'tls_settings = "encryption_only"\n',
    )
    new = write(
        tmp_path, "new.toml", Path(old).read_text().replace("encryption_only", "opportunistic")
    )
    lines = [
        json.dumps({"recipient": "b@fabrikam.com", "tls": None, "at": AT}),
        json.dumps({"recipient": "b@fabrikam.com", "tls": {}, "at": AT}),
    ]
    sessions = write(tmp_path, "out.jsonl", "\n".join(lines) + "\n")
    status, out, _ = run(capsys, "--old", old, "--new", new, "--outbound", sessions)
    assert 1 == status
    assert "outbound: 2 sessions, 1 decision changes" in out
    assert "defer -> deliver: 1" in out


def test_usage_and_policy_errors_are_exit_2(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(Path(files["dir"]), "bad.toml", '[[inbound]]\nname = "x"\n')
    for argv in (
        ["--old", files["old"], "--new", files["new"]],  # no sessions
        ["--old", bad, "--new", files["new"], "--inbound", files["sessions"]],
        ["--old", files["old"], "--new", bad, "--inbound", files["sessions"]],
        ["--old", files["old"], "--new", files["new"], "--inbound", files["dir"] + "/missing"],
        [
            "--old",
            files["old"],
            "--new",
            files["new"],
            "--inbound",
            files["sessions"],
            "--examples",
            "-1",
        ],
    ):
        assert 2 == run(capsys, *argv)[0], argv
    missing = files["dir"] + "/missing.jsonl"
    for option in ("--inbound", "--outbound"):
        status, _, err = run(capsys, "--old", files["old"], "--new", files["new"], option, missing)
        expected = f"tlsconnector diff: {option} '{missing}': cannot read: No such file"
        assert (2, True) == (status, err.startswith(expected)), err


def test_jobs_give_the_same_output(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    lines = Path(files["sessions"]).read_text().splitlines() * 300  # several chunks
    sessions = write(Path(files["dir"]), "many.jsonl", "\n".join(lines) + "\n")
    argv = ["--old", files["old"], "--new", files["new"], "--inbound", sessions, "--json"]
    one = run(capsys, *argv)
    assert one == run(capsys, *argv, "--jobs", "3")
    assert 600 == len(one[1].splitlines())


# --- properties (Hypothesis; policies and sessions from tlsconnector.testing) -------------

AUTHORITY = default_authority()


def _policy_file(
    directory: Path, name: str, mapping: dict[str, Any], *, reverse: bool = False
) -> str:
    (directory / "ca.pem").write_text(AUTHORITY.root_pem)
    data = {
        "trust": {"ca_file": "ca.pem"},
        "inbound": list(reversed(mapping["inbound"])) if reverse else mapping["inbound"],
        "outbound": [],
    }
    return write(directory, name, dumps_policy(data))


@st.composite
def _case(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    old = draw(policy_mappings(max_outbound=0))
    new = draw(policy_mappings(max_outbound=0))
    both = Policy.from_mapping(
        {"inbound": old["inbound"] + [{**c, "name": f"new {c['name']}"} for c in new["inbound"]]},
        trust=AUTHORITY.trust_store,
    )
    sessions = draw(st.lists(inbound_sessions(both, authority=AUTHORITY), min_size=1, max_size=6))
    return old, new, [json.dumps(session_json(s)) for s in sessions]


def _inbound_json(capsys: pytest.CaptureFixture[str], policy: str, sessions: str) -> list[Any]:
    capsys.readouterr()
    main(["inbound", "--policy", policy, "--sessions", sessions, "--json"])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _diff(
    capsys: pytest.CaptureFixture[str], old: str, new: str, sessions: str
) -> tuple[int, list[Any]]:
    status, out, _ = run(capsys, "--old", old, "--new", new, "--inbound", sessions, "--json")
    return status, [json.loads(line) for line in out.splitlines()]


def _key(decision: dict[str, Any]) -> tuple[Any, ...]:
    return (decision["action"], decision["connector"], [r["code"] for r in decision["reasons"]])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=_case())
def test_diff_properties(
    case: tuple[dict[str, Any], dict[str, Any], list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old_mapping, new_mapping, lines = case
    old = _policy_file(tmp_path, "old.toml", old_mapping)
    new = _policy_file(tmp_path, "new.toml", new_mapping)
    shuffled = _policy_file(tmp_path, "new-reversed.toml", new_mapping, reverse=True)
    sessions = write(tmp_path, "sessions.jsonl", "\n".join(lines) + "\n")

    # A policy against itself: nothing changes.
    assert (0, []) == _diff(capsys, new, new, sessions)
    status, changed = _diff(capsys, old, new, sessions)
    assert status == (1 if changed else 0)
    # The JSON agrees with running inbound --json under each policy.
    before, after = _inbound_json(capsys, old, sessions), _inbound_json(capsys, new, sessions)
    expected = [
        {"line": number, "direction": "inbound", "old": a, "new": b}
        for number, (a, b) in enumerate(zip(before, after, strict=True), start=1)
        if _key(a) != _key(b)
    ]
    assert expected == changed
    # Swapping old and new reverses every transition.
    _, swapped = _diff(capsys, new, old, sessions)
    assert [{**c, "old": c["new"], "new": c["old"]} for c in changed] == swapped
    # The file order of connectors never matters.
    assert (status, changed) == _diff(capsys, old, shuffled, sessions)


# --- sessions both policies read alike are not decided twice (cli/diff.py _Alike) -------

THEN = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
TIMES = (THEN, THEN - dt.timedelta(days=400), THEN + dt.timedelta(days=800))  # valid, before, after


def _trusted_file(
    directory: Path, name: str, inbound: list[dict[str, Any]], trust: dict[str, Any] | None
) -> str:
    (directory / "ca.pem").write_text(AUTHORITY.root_pem)
    data: dict[str, Any] = {"inbound": inbound, "outbound": []}
    if trust is not None:
        data["trust"] = trust
    return write(directory, name, dumps_policy(data))


Tables = list[dict[str, Any]]
#: Old and new connector tables, old and new [trust] tables, session lines.
ChangedCase = tuple[Tables, Tables, dict[str, Any], dict[str, Any] | None, list[str]]


@st.composite
def _changed_case(draw: st.DrawFn) -> ChangedCase:
    """An old policy and a new one that keeps some of its connectors as they are,
    changes others (same name, other settings), drops some and adds some; now and then
    another trust store or revocation setting; sessions with chains at several times."""
    old = draw(policy_mappings(min_inbound=1, max_outbound=0))["inbound"]
    other = draw(policy_mappings(max_outbound=0))["inbound"]
    new: list[dict[str, Any]] = []
    for table in old:
        fate = draw(st.sampled_from(["keep", "keep", "keep", "keep", "change", "drop"]))
        if fate == "keep":
            new.append(table)
        elif fate == "change":
            # The same name and domains, other settings: another connector's, or off.
            donor = draw(st.sampled_from([*other, {**table, "enabled": False}]))
            new.append({**donor, "name": table["name"]})
            if draw(st.booleans()):
                new[-1]["sender_domains"] = table["sender_domains"]
    new += [{**t, "name": f"added {t['name']}"} for t in other if draw(st.integers(0, 3)) == 0]
    old_trust = {"ca_file": "ca.pem"}
    new_trust = draw(
        st.sampled_from(
            [old_trust, old_trust, old_trust, {"ca_file": "ca.pem", "revocation": "off"}, None]
        )
    )
    both = Policy.from_mapping(
        {"inbound": old + [{**t, "name": f"new {t['name']}"} for t in new]},
        trust=AUTHORITY.trust_store,
    )
    sessions = draw(
        st.lists(
            st.one_of(*(inbound_sessions(both, authority=AUTHORITY, at=at) for at in TIMES)),
            min_size=1,
            max_size=8,
        )
    )
    return old, new, old_trust, new_trust, [json.dumps(session_json(s)) for s in sessions]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=_changed_case())
def test_skipping_sessions_read_alike_changes_no_answer(
    case: ChangedCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old_tables, new_tables, old_trust, new_trust, lines = case
    old = _trusted_file(tmp_path, "old.toml", old_tables, old_trust)
    new = _trusted_file(tmp_path, "new.toml", new_tables, new_trust)
    sessions = write(tmp_path, "sessions.jsonl", "\n".join(lines) + "\n")
    skipping = _diff(capsys, old, new, sessions)
    before, after = _inbound_json(capsys, old, sessions), _inbound_json(capsys, new, sessions)
    expected = [
        {"line": number, "direction": "inbound", "old": a, "new": b}
        for number, (a, b) in enumerate(zip(before, after, strict=True), start=1)
        if _key(a) != _key(b)
    ]
    assert (1 if expected else 0, expected) == skipping
    with monkeypatch.context() as patch:  # every session decided under both policies
        patch.setattr(diff_module._Alike, "inbound", lambda self, session: False)
        assert skipping == _diff(capsys, old, new, sessions)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The senders of the sessions diff decides (an entry per decision)."""
    decided: list[str] = []
    real = diff_module.evaluate_inbound

    def counted(policy: Policy, session: InboundSession) -> Any:
        decided.append(session.mail_from)
        return real(policy, session)

    monkeypatch.setattr(diff_module, "evaluate_inbound", counted)
    return decided


UNCHANGED = """
[[inbound]]
name = "Contoso partner"
sender_domains = ["partner.example"]
require_tls = true
"""


def test_a_session_of_an_unchanged_connector_is_parsed_but_not_decided(
    files: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = Path(files["dir"])
    old = write(directory, "old2.toml", OLD + UNCHANGED)
    new = write(directory, "new2.toml", NEW + UNCHANGED)
    lines = [
        session("198.51.100.77"),  # Fabrikam's connector changed: decided twice
        session("203.0.113.5", sender="a@partner.example"),  # unchanged: not decided
        session("203.0.113.5", sender="a@nobody.example"),  # no connector either way
        session("not an ip", sender="a@partner.example"),  # still an error
    ]
    sessions = write(directory, "alike.jsonl", "\n".join(lines) + "\n")
    decided = _counting(monkeypatch)
    status, changed = _diff(capsys, old, new, sessions)
    assert ["payments@fabrikam.com"] * 2 == decided
    assert 1 == status
    assert [1, ("error", 4, "peer_ip")] == [
        ("error", o["error"]["line"], o["error"]["field"]) if "error" in o else o["line"]
        for o in changed
    ]


@pytest.mark.parametrize(
    ("old_trust", "new_trust"),
    [
        ({"ca_file": "ca.pem"}, None),  # another trust store
        ({"ca_file": "ca.pem"}, {"ca_file": "ca.pem", "revocation": "off"}),
    ],
)
def test_another_trust_store_or_revocation_setting_decides_every_session(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    old_trust: dict[str, Any],
    new_trust: dict[str, Any] | None,
) -> None:
    tables = [
        {
            "name": "Contoso partner",
            "sender_domains": ["partner.example"],
            "tls_sender_certificate_name": "mail.partner.example",
        }
    ]
    old = _trusted_file(tmp_path, "old.toml", tables, old_trust)
    new = _trusted_file(tmp_path, "new.toml", tables, new_trust)
    sessions = write(tmp_path, "s.jsonl", session("203.0.113.5", sender="a@partner.example") + "\n")
    decided = _counting(monkeypatch)
    _diff(capsys, old, new, sessions)
    assert 2 == len(decided)
    decided.clear()
    _diff(capsys, old, old, sessions)  # the same file: the same trust store
    assert [] == decided


def test_outbound_sessions_of_unchanged_connectors_are_not_decided(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = '[[outbound]]\nname = "Kept"\nrecipient_domains = ["kept.example"]\n'
    changed = '[[outbound]]\nname = "Changed"\nrecipient_domains = ["changed.example"]\n'
    old = write(tmp_path, "old.toml", kept + changed + 'tls_settings = "encryption_only"\n')
    new = write(tmp_path, "new.toml", kept + changed)
    lines = [
        {"recipient": "b@kept.example", "tls": None, "at": AT},  # the same connector
        {"recipient": "b@changed.example", "tls": None, "at": AT},  # decided twice
        {"recipient": "b@kept.example", "connector": "changed", "tls": None, "at": AT},  # named
        {"recipient": "b@changed.example", "connector": "Kept", "tls": None, "at": AT},
    ]
    sessions = write(tmp_path, "out.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    decided: list[str] = []
    real = diff_module.evaluate_outbound

    def counted(policy: Policy, session: Any, **options: Any) -> Any:
        decided.append(session.recipient)
        return real(policy, session, **options)

    monkeypatch.setattr(diff_module, "evaluate_outbound", counted)
    status, out, _ = run(capsys, "--old", old, "--new", new, "--outbound", sessions, "--json")
    assert ["b@changed.example", "b@changed.example", "b@kept.example", "b@kept.example"] == decided
    assert (1, [2, 3]) == (status, [json.loads(line)["line"] for line in out.splitlines()])


def test_a_missing_recorded_decision_reads_missing_and_a_null_one_shows_the_value(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [session("198.51.100.8"), session("198.51.100.8", recorded=None)]
    sessions = write(Path(files["dir"]), "recorded.jsonl", "\n".join(lines) + "\n")
    status, _, err = run(capsys, "--old", "recorded", "--new", files["new"], "--inbound", sessions)
    assert 1 == status
    assert "line 1: recorded: missing (required with --old recorded)" in err
    assert "line 2: recorded = null: must be an object" in err


def test_the_old_policy_reuses_the_new_policys_connectors(
    files: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second load takes the first's connector objects for the tables that read
    alike (load_policy's reuse): with several connectors, one changed, only that one
    is a new object; the report is the same as ever."""
    from tlsconnector.policy_file import loading

    extra = '\n[[inbound]]\nname = "Other"\nsender_domains = ["other.example"]\n'
    old = write(Path(files["old"]).parent, "old2.toml", OLD + extra)
    new = write(Path(files["new"]).parent, "new2.toml", NEW + extra)
    loaded: list[Policy] = []
    real = loading.load_policy

    def recording(path: str, **options: Any) -> Policy:
        policy = real(path, **options)
        loaded.append(policy)
        return policy

    monkeypatch.setattr(loading, "load_policy", recording)
    status, out, _ = run(capsys, "--old", old, "--new", new, "--inbound", files["sessions"])
    assert status == 1
    assert "accept -> reject: 2" in out
    first, second = loaded  # the new policy, then the old one reusing it
    by_name = {c.name: c for c in first.inbound}
    assert [c is by_name[c.name] for c in sorted(second.inbound, key=lambda c: c.name)] == [
        False,  # "Fabrikam Bank inbound": its IP list differs, read again
        True,  # "Other": the same table, the same object
    ]
