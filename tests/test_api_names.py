"""The public API as users see it: public module paths (tracebacks, reprs, help()), a
readable DEFAULT_REPLIES, and ``to_dict()`` with ``to_json()`` as its deprecated alias."""

from __future__ import annotations

import datetime as dt
import pydoc
import subprocess
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import pytest

import tlsconnector
from tlsconnector import (
    DEFAULT_REPLIES,
    InboundDecision,
    InboundSession,
    OutboundDecision,
    OutboundSession,
    Policy,
    Reason,
    ReasonCode,
    Route,
    RouteKind,
    SmtpReply,
    TLSPlan,
    evaluate_inbound,
    evaluate_outbound,
)

AT = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


# -- public module paths ---------------------------------------------------------------


@pytest.mark.parametrize("name", tlsconnector.__all__)
def test_every_public_class_and_function_names_the_public_module(name: str) -> None:
    value = getattr(tlsconnector, name)
    if isinstance(value, type) or callable(value):
        assert "tlsconnector" == value.__module__, name


def test_a_traceback_names_the_public_exception() -> None:
    """The exception's module is public even when the first name used is another one
    (Policy, not PolicyError)."""
    done = _run(
        "import tlsconnector\n"
        "tlsconnector.Policy.from_mapping({'inbound': [{'name': 'x'}]}, trust=None)\n"
    )
    assert 1 == done.returncode
    lines = done.stderr.splitlines()
    assert any(line.startswith("tlsconnector.PolicyError: ") for line in lines), done.stderr
    assert "_errors.PolicyError" not in done.stderr


def test_an_adapter_raises_public_exceptions_without_any_public_lookup() -> None:
    """aiosmtpd's tls_facts is reached without looking up a name on the package."""
    done = _run(
        "from tlsconnector.adapters.aiosmtpd import tls_facts\n"
        "class S: ssl = {'ssl_object': None}\n"
        "tls_facts(S())\n"
    )
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tlsconnector.FactsError: "), last


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (  # the testing toolkit alone, an integrator's own entry point
            "from tlsconnector.testing import CertificateAuthority\n"
            "CertificateAuthority.from_pem('x', 'y')\n",
            "tlsconnector.InvalidValue: ",
        ),
        (  # the loader's own module, no name looked up on the package
            "from tlsconnector.policy_file.loading import load_policy\n"
            "load_policy('/nonexistent/policy.toml')\n",
            "tlsconnector.PolicyError: ",
        ),
        (  # the facts module alone
            "from tlsconnector._facts import InboundSession\n"
            "InboundSession.from_json({'peer_ip': 'x', 'mail_from': 'a@b.com'})\n",
            "tlsconnector.FactsError: ",
        ),
    ],
)
def test_an_exception_names_its_public_path_whatever_was_imported_first(
    code: str, expected: str
) -> None:
    done = _run(code)
    assert any(line.startswith(expected) for line in done.stderr.splitlines()), done.stderr
    assert "_errors." not in done.stderr


def test_the_exceptions_survive_pickling_with_their_fields() -> None:
    """A worker process's error reaches its parent whole (the default pickling keeps
    the message alone, which these constructors cannot take back)."""
    import pickle

    from tlsconnector import FactsError, InvalidValue, PolicyError, Problem
    from tlsconnector._errors import MISSING

    errors = [
        FactsError("peer_ip", "not an address", "bad address"),
        FactsError("mail_from", MISSING, "required"),
        InvalidValue(["x"], "must be a string"),
        PolicyError([Problem("Fabrikam", "sender_domains", MISSING, "required", line=3)]),
    ]
    for error in errors:
        again = pickle.loads(pickle.dumps(error))  # noqa: S301  # our own bytes
        assert (type(error), str(error), error.args) == (type(again), str(again), again.args)
        assert error.__dict__ == again.__dict__
        assert "tlsconnector" == type(again).__module__


def test_public_values_still_pickle_by_their_public_path() -> None:
    import pickle

    reason = Reason(ReasonCode.NO_CONNECTOR, "x")
    assert reason == pickle.loads(pickle.dumps(reason))  # noqa: S301  # our own bytes


# -- DEFAULT_REPLIES -------------------------------------------------------------------


def test_help_shows_a_readable_default_for_replies() -> None:
    text = pydoc.render_doc(evaluate_inbound, renderer=pydoc.plaintext)
    assert "= DEFAULT_REPLIES" in text
    assert "mappingproxy" not in text
    assert "SmtpReply(" not in text
    assert "DEFAULT_REPLIES" == repr(DEFAULT_REPLIES)


def test_default_replies_is_a_read_only_mapping() -> None:
    assert isinstance(DEFAULT_REPLIES, Mapping)
    assert (
        SmtpReply(530, "5.7.0", "Must issue a STARTTLS command first")
        == DEFAULT_REPLIES[ReasonCode.TLS_REQUIRED]
    )
    assert ReasonCode.NO_CONNECTOR not in DEFAULT_REPLIES
    assert 10 == len(DEFAULT_REPLIES) == len(dict(DEFAULT_REPLIES))
    with pytest.raises(TypeError):
        DEFAULT_REPLIES[ReasonCode.TLS_REQUIRED] = SmtpReply(250, "2.0.0", "ok")  # type: ignore[index]


# -- to_dict, and to_json as its deprecated alias --------------------------------------


def _values() -> list[Any]:
    policy = Policy.from_mapping(
        {
            "inbound": [{"name": "In", "sender_domains": ["fabrikam.com"]}],
            "outbound": [
                {
                    "name": "Out",
                    "recipient_domains": ["fabrikam.com"],
                    "tls_settings": "encryption_only",
                }
            ],
        },
        trust=None,
    )
    inbound = evaluate_inbound(
        policy,
        InboundSession.create(
            peer_ip="192.0.2.1",
            mail_from="a@fabrikam.com",
            rcpt_to=["b@contoso.com"],
            tls=None,
            at=AT,
        ),
    )
    outbound = evaluate_outbound(
        policy,
        OutboundSession.create(recipient="b@fabrikam.com", at=AT),
    )
    assert isinstance(inbound, InboundDecision)
    assert isinstance(outbound, OutboundDecision)
    return [
        inbound,
        outbound,
        Reason(ReasonCode.TLS_REQUIRED, "d", "c", "5.7.0"),
        SmtpReply(530, "5.7.0", "t"),
        Route(RouteKind.MX, ("mx.fabrikam.com",)),
        TLSPlan("encryption_only", None),
    ]


@pytest.mark.parametrize("value", _values(), ids=lambda v: type(v).__name__)
def test_to_json_is_a_deprecated_alias_of_to_dict(value: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = value.to_dict()  # never warns
    assert isinstance(expected, dict)
    with pytest.warns(DeprecationWarning, match=r"to_json\(\) is deprecated: use to_dict\(\)") as w:
        assert expected == value.to_json()
    assert __file__ == w[0].filename  # points at the caller, not at tlsconnector


def test_to_json_does_not_warn_for_the_packages_own_callers() -> None:
    """The command line's remaining to_json() calls must not make a user's -W error fire."""
    value = SmtpReply(530, "5.7.0", "t")
    internal: dict[str, Any] = {"__name__": "tlsconnector.cli.batch", "value": value}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec("result = value.to_json()", internal)  # noqa: S102  # a caller in the package
    assert value.to_dict() == internal["result"]
