"""Run every benchmark, print a table, write ``benchmarks/results.json`` (``make bench``).

Each target is judged on ratios or rates measured within this one run, on this
machine; nothing here is a pass/fail test of the test suite (timing never is).
In-process figures are CPU time of this process (``time.process_time``: what one
core spends, less disturbed by other work on a shared machine), best of several
repeats; subprocess and server figures are wall-clock time. See
docs/performance.md for what each figure means.

``python -m benchmarks.run [--quick] [--only NAME ...] [--output PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import hashlib
import json
import math
import os
import platform
import resource
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from benchmarks.baseline import LinearPolicy
from benchmarks.certs import BenchPKI, connector_for_leaf
from benchmarks.crls import crl_policy_toml, mint_crls, write_crl_files
from benchmarks.generate import (
    NOW,
    NOW_TEXT,
    inbound_session_facts,
    lint_policy_toml,
    outbound_session_facts,
    policy_mapping,
    policy_toml,
    session_lines,
    spread_inbound_session_facts,
)
from tlsconnector import (
    InboundSession,
    OutboundSession,
    Policy,
    PresentedChain,
    Purpose,
    TLSFacts,
    TrustStore,
    _facts,
    _names,
    evaluate_inbound,
    evaluate_outbound,
    validate_chain,
)
from tlsconnector import _assessment as _assess
from tlsconnector import _chains as _certs
from tlsconnector._chains import subject_cns
from tlsconnector._gc import gc_paused as _gc_paused
from tlsconnector._revocation import (
    NO_CRLS,
    CrlSet,
    RevocationList,
    check_revocation,
    load_crls,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"

LARGE = 100_000
SMALL = 10


# --------------------------------------------------------------------------------------
# Results: figures (everything measured) and targets (judged, as data)


Figure = float | int | str | bool | list[str] | None


@attrs.define
class Results:
    figures: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    targets: list[dict[str, Any]] = attrs.field(factory=list)

    def figure(self, key: str, value: Figure, unit: str, what: str) -> None:
        self.figures[key] = {"value": value, "unit": unit, "what": what}

    def target(
        self,
        key: str,
        description: str,
        *,
        measured: float | None,
        op: str,
        threshold: float,
        unit: str,
        note: str = "",
    ) -> None:
        """Record a target; ``op`` is ``">="`` or ``"<="``; ``measured`` None: not measured."""
        if measured is None or math.isnan(measured):
            status = "not-measured"
            passed: bool | None = None
        else:
            passed = measured >= threshold if op == ">=" else measured <= threshold
            status = "pass" if passed else "fail"
        self.targets.append(
            {
                "id": key,
                "description": description,
                "target": f"{op} {_threshold(threshold)} {unit}".strip(),
                "op": op,
                "threshold": threshold,
                "measured": measured,
                "unit": unit,
                "pass": passed,
                "status": status,
                "note": note,
            }
        )


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 0.01:
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return f"{value:.3g}"


def _threshold(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def _log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------
# Measuring


def best_cpu(run: Callable[[], object], *, repeat: int) -> float:
    """The least CPU time (seconds) of ``repeat`` runs of ``run``."""
    best = math.inf
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def best_cold(run: Callable[[], object], *, repeat: int) -> float:
    """The least CPU time of ``repeat`` runs of ``run``, each from cold certificate
    caches (cleared before each run, outside the timing)."""
    best = math.inf
    for _ in range(repeat):
        clear_certificate_caches()
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def per_decision(decide: Callable[[Any], object], items: Sequence[Any], *, repeat: int) -> float:
    """CPU seconds per item of ``decide(item)`` over ``items`` (best of ``repeat``)."""

    def run() -> None:
        for item in items:
            decide(item)

    return best_cpu(run, repeat=repeat) / len(items)


def clear_certificate_caches() -> None:
    """Forget every cached certificate result (a cold start for the first-chain cost)."""
    _assess.CHAIN_VERDICTS.clear()
    _certs.CHECKED_CERTIFICATES.clear()
    _facts._chain_from_pem.cache_clear()
    _names._usable_cn.cache_clear()
    _names._cn_matches.cache_clear()


def chain_facts(
    pki: BenchPKI, count: int, *, connectors: int, by_root: bool = False
) -> list[dict[str, Any]]:
    """Inbound session facts, each with its own chain (leaf + intermediate, or a leaf
    issued by the anchor when ``by_root``) whose CN is the certificate name of its
    sender's connector: accepted after validation."""
    return [
        {
            "peer_ip": "198.51.100.7",
            "mail_from": f"sender@partner{connector}.com",
            "rcpt_to": ["user@contoso.com"],
            "tls": {"peer_chain_pem": pem},
            "at": NOW_TEXT,
        }
        for connector, pem in pki.chains(count, connectors=connectors, by_root=by_root)
    ]


# --------------------------------------------------------------------------------------
# 1-2. Decisions: cost against policy size, and against the linear baseline


def bench_decisions(results: Results, *, quick: bool) -> None:
    large = 20_000 if quick else LARGE
    _log(f"building policies of {SMALL} and {large:,} connectors per direction")
    small_policy = Policy.from_mapping(policy_mapping(SMALL), trust=None)
    started = time.process_time()
    large_policy = Policy.from_mapping(policy_mapping(large), trust=None)
    results.figure(
        "policy.from_mapping_large_cpu_s",
        time.process_time() - started,
        "s",
        f"Policy.from_mapping of {large:,} inbound + {large:,} outbound connectors (in memory)",
    )
    count = 4_000 if quick else 20_000
    repeat = 3 if quick else 5
    inbound = [InboundSession.from_json(f) for f in inbound_session_facts(count, connectors=SMALL)]
    outbound = [
        OutboundSession.from_json(f) for f in outbound_session_facts(count, connectors=SMALL)
    ]
    spread = [
        InboundSession.from_json(f) for f in spread_inbound_session_facts(count, connectors=large)
    ]
    _log("decisions: indexed policy, small and large")
    in_small = per_decision(lambda s: evaluate_inbound(small_policy, s), inbound, repeat=repeat)
    in_large = per_decision(lambda s: evaluate_inbound(large_policy, s), inbound, repeat=repeat)
    in_spread = per_decision(lambda s: evaluate_inbound(large_policy, s), spread, repeat=repeat)
    out_small = per_decision(lambda s: evaluate_outbound(small_policy, s), outbound, repeat=repeat)
    out_large = per_decision(lambda s: evaluate_outbound(large_policy, s), outbound, repeat=repeat)
    results.figure("decide.inbound_10_us", in_small * 1e6, "us", "inbound decision, 10 connectors")
    results.figure(
        "decide.inbound_large_us",
        in_large * 1e6,
        "us",
        f"the same inbound decisions, {large:,} connectors",
    )
    results.figure(
        "decide.inbound_large_spread_us",
        in_spread * 1e6,
        "us",
        f"inbound decisions spread over all {large:,} connectors (no hot subset)",
    )
    results.figure(
        "decide.outbound_10_us", out_small * 1e6, "us", "outbound decision, 10 connectors"
    )
    results.figure(
        "decide.outbound_large_us",
        out_large * 1e6,
        "us",
        f"the same outbound decisions, {large:,} connectors",
    )
    results.target(
        "scaling-inbound",
        f"inbound decision cost at {large:,} connectors / at 10 (same sessions)",
        measured=in_large / in_small,
        op="<=",
        threshold=1.5,
        unit="x",
    )
    results.target(
        "scaling-outbound",
        f"outbound decision cost at {large:,} connectors / at 10 (same sessions)",
        measured=out_large / out_small,
        op="<=",
        threshold=1.5,
        unit="x",
    )

    _log("decisions: linear baseline (a sample: it scans every connector)")
    linear = LinearPolicy.of(large_policy)
    sample = 10 if quick else 25
    agree = all(
        evaluate_inbound(linear, s) == evaluate_inbound(large_policy, s) for s in inbound[:sample]
    ) and all(
        evaluate_outbound(linear, s) == evaluate_outbound(large_policy, s)
        for s in outbound[:sample]
    )
    results.figure(
        "baseline.decisions_agree", agree, "bool", "linear baseline and index decide identically"
    )
    lin_in = per_decision(lambda s: evaluate_inbound(linear, s), inbound[:sample], repeat=1)
    lin_out = per_decision(lambda s: evaluate_outbound(linear, s), outbound[:sample], repeat=1)
    idx_in = per_decision(
        lambda s: evaluate_inbound(large_policy, s), inbound[:sample] * 200, repeat=repeat
    )
    idx_out = per_decision(
        lambda s: evaluate_outbound(large_policy, s), outbound[:sample] * 200, repeat=repeat
    )
    results.figure(
        "baseline.inbound_us", lin_in * 1e6, "us", f"linear inbound, {large:,} connectors"
    )
    results.figure(
        "baseline.outbound_us", lin_out * 1e6, "us", f"linear outbound, {large:,} connectors"
    )
    results.target(
        "index-vs-linear-inbound",
        f"linear baseline / indexed inbound decision at {large:,} connectors",
        measured=lin_in / idx_in,
        op=">=",
        threshold=50,
        unit="x",
        note="" if agree else "THE BASELINE AND THE INDEX DISAGREE",
    )
    results.target(
        "index-vs-linear-outbound",
        f"linear baseline / indexed outbound decision at {large:,} connectors",
        measured=lin_out / idx_out,
        op=">=",
        threshold=50,
        unit="x",
        note="" if agree else "THE BASELINE AND THE INDEX DISAGREE",
    )


# --------------------------------------------------------------------------------------
# 3. Certificates: warm decisions, first against repeated chains, the CN check


def first_and_repeated(
    pki: BenchPKI, policy: Policy, count: int, connectors: int, *, repeat: int
) -> tuple[float, float, set[str]]:
    """Seconds per inbound decision from JSON facts for ``count`` sessions each with a
    chain never seen before (best of three cold runs), then for the same sessions
    again (every chain cached), and the actions decided."""
    distinct = chain_facts(pki, count, connectors=connectors)

    def from_facts(facts: dict[str, Any]) -> object:
        return evaluate_inbound(policy, InboundSession.from_json(facts))

    first = best_cold(lambda: [from_facts(f) for f in distinct], repeat=3) / count
    actions = {str(evaluate_inbound(policy, InboundSession.from_json(f)).action) for f in distinct}
    return first, per_decision(from_facts, distinct, repeat=repeat), actions


def bench_certificates(results: Results, pki: BenchPKI, *, quick: bool) -> None:
    large = 20_000 if quick else LARGE
    trust = TrustStore.from_pem(pki.trust_pem())
    policy = Policy.from_mapping(policy_mapping(large), trust=trust)
    repeat = 3 if quick else 5

    _log("warm inbound decisions (chains seen before)")
    warm = [
        InboundSession.create(
            peer_ip="198.51.100.7",
            mail_from=f"sender@partner{connector}.com",
            rcpt_to=["user@contoso.com"],
            tls=TLSFacts(PresentedChain.from_pem(pem)),
            at=NOW,
        )
        for connector, pem in pki.chains(64, connectors=large)
    ] * (50 if quick else 200)
    accepted = {evaluate_inbound(policy, s).action for s in warm[:64]}
    warm_cost = per_decision(lambda s: evaluate_inbound(policy, s), warm, repeat=repeat)
    results.figure("cert.warm_decision_us", warm_cost * 1e6, "us", "warm inbound decision")
    results.figure(
        "cert.warm_actions", sorted(str(a) for a in accepted), "", "actions of the warm sessions"
    )
    results.target(
        "warm-inbound-rate",
        f"warm inbound decisions per second on one core ({large:,} connectors, chain seen before)",
        measured=1 / warm_cost,
        op=">=",
        threshold=100_000,
        unit="/s",
    )
    warm_facts = chain_facts(pki, 64, connectors=large)

    def from_facts(facts: dict[str, Any]) -> object:
        return evaluate_inbound(policy, InboundSession.from_json(facts))

    # 4. A chain's first decision against a repeated one: decoding the PEM text,
    # extracting the CNs and validating the chain are all cached.
    _log("first against repeated chains")
    count = 100 if quick else 400
    first, repeated, actions = first_and_repeated(pki, policy, count, large, repeat=repeat)
    results.figure("cert.first_chain_actions", sorted(actions), "", "actions of those sessions")
    results.figure(
        "cert.first_chain_us",
        first * 1e6,
        "us",
        "inbound decision from JSON facts with a chain never seen before",
    )
    results.figure(
        "cert.repeated_chain_us",
        repeated * 1e6,
        "us",
        "the same decisions again (chain parse, CNs and verdict cached)",
    )
    [from_facts(f) for f in warm_facts]
    results.figure(
        "cert.warm_from_json_us",
        per_decision(from_facts, warm_facts * 20, repeat=repeat) * 1e6,
        "us",
        "warm inbound decision including InboundSession.from_json with the PEM chain",
    )
    results.target(
        "repeated-chain-cost",
        f"cost of a repeated chain / cost of a first one (inbound decision from JSON facts, "
        f"{pki.key_type} CAs)",
        measured=repeated / first,
        op="<=",
        threshold=1 / 20,
        unit="x",
    )
    # The same with CAs of the other key type, for comparison (not a target).
    other = BenchPKI("ec-p256" if pki.key_type == "rsa-2048" else "rsa-2048")
    other_policy = Policy.from_mapping(
        policy_mapping(large), trust=TrustStore.from_pem(other.trust_pem())
    )
    other_first, other_repeated, _ = first_and_repeated(
        other, other_policy, count, large, repeat=repeat
    )
    results.figure(
        f"cert.{other.key_type}.first_chain_us",
        other_first * 1e6,
        "us",
        f"as cert.first_chain_us, {other.key_type} CAs",
    )
    results.figure(
        f"cert.{other.key_type}.repeated_chain_us",
        other_repeated * 1e6,
        "us",
        f"as cert.repeated_chain_us, {other.key_type} CAs",
    )
    results.figure(
        f"cert.{other.key_type}.repeated_vs_first",
        other_repeated / other_first,
        "x",
        f"repeated / first chain, {other.key_type} CAs",
    )
    # The two parts of a new chain's cost, each on chains never seen before (the
    # issuing intermediate, common to all, is already known, as in a running server).
    pems = [pem for _, pem in pki.chains(100 if quick else 400, connectors=large)]
    parse = best_cpu(lambda: [PresentedChain.from_pem(p) for p in pems], repeat=1) / len(pems)
    new_chains = [PresentedChain.from_pem(p) for p in pems]

    def validate_all() -> None:
        for chain in new_chains:
            validate_chain(chain, trust=trust, at=NOW, purpose=Purpose.INBOUND)

    validate = best_cpu(validate_all, repeat=1) / len(new_chains)
    results.figure(
        "cert.parse_chain_us",
        parse * 1e6,
        "us",
        "PresentedChain.from_pem of a new chain (leaf new, intermediate known)",
    )
    results.figure(
        "cert.validate_chain_us",
        validate * 1e6,
        "us",
        "validate_chain of a new chain (no verdict cache: 2 signatures checked)",
    )

    # 5. The CN check against service-identity's hostname check, same certificate.
    _log("CN check against service-identity")
    bench_cn_check(results, pki, repeat=repeat, quick=quick)


def bench_cn_check(results: Results, pki: BenchPKI, *, repeat: int, quick: bool) -> None:
    from tlsconnector import match_certificate_name
    from tlsconnector._names import CertificateName

    leaf = pki.leaf(0, san=True)  # CN and SAN both mail.partner0.com
    cert = leaf.cert
    host = "mail.partner0.com"
    name = CertificateName.parse(host)  # parsed once, when the policy is loaded
    loops = 5_000 if quick else 50_000

    def ours() -> bool:
        # What a decision does: the certificate's CN attributes against the setting.
        # (PresentedChain does this once per chain, with the same function.)
        return name.matches_any(subject_cns(cert))

    def ours_public() -> bool:
        return match_certificate_name(host, host)

    chain = PresentedChain.from_pem(leaf.chain_pem())

    def ours_cached() -> bool:
        return name.matches_any(chain.cns)

    for check in (ours, ours_public, ours_cached):
        if not check():
            raise RuntimeError(f"{check.__name__}: the benchmark certificate does not match")
    ours_cost = best_cpu(lambda: [ours() for _ in range(loops)], repeat=repeat) / loops
    public_cost = best_cpu(lambda: [ours_public() for _ in range(loops)], repeat=repeat) / loops
    cached_cost = best_cpu(lambda: [ours_cached() for _ in range(loops)], repeat=repeat) / loops
    results.figure(
        "cn.ours_us", ours_cost * 1e6, "us", "CN check: the certificate's CNs vs the setting"
    )
    results.figure(
        "cn.ours_public_api_us",
        public_cost * 1e6,
        "us",
        "match_certificate_name(expected, cn): both strings parsed per call",
    )
    results.figure(
        "cn.ours_cached_cns_us",
        cached_cost * 1e6,
        "us",
        "CN check on a presented chain (CNs extracted once per chain)",
    )
    try:
        from service_identity.cryptography import verify_certificate_hostname
    except ImportError:
        results.target(
            "cn-check-vs-service-identity",
            "service_identity.cryptography.verify_certificate_hostname / our CN check",
            measured=None,
            op=">=",
            threshold=10,
            unit="x",
            note="service-identity is not installed (pip install -e '.[bench]')",
        )
        return
    verify_certificate_hostname(cert, host)  # raises if it does not match

    def service_identity() -> None:
        for _ in range(loops):
            verify_certificate_hostname(cert, host)

    theirs = best_cpu(service_identity, repeat=repeat) / loops
    results.figure(
        "cn.service_identity_us",
        theirs * 1e6,
        "us",
        "service_identity.cryptography.verify_certificate_hostname, same certificate",
    )
    results.target(
        "cn-check-vs-service-identity",
        "service_identity.cryptography.verify_certificate_hostname / our CN check",
        measured=theirs / ours_cost,
        op=">=",
        threshold=10,
        unit="x",
    )


# --------------------------------------------------------------------------------------
# 6. Loading a 100,000-connector policy file, in a fresh interpreter

_LOAD_SCRIPT = r"""
import json, resource, sys, time
mode, path = sys.argv[1], sys.argv[2]
started = time.perf_counter()
import tlsconnector
from tlsconnector import load_policy
imported = time.perf_counter()
def hwm():
    # The peak RSS of this process image. ru_maxrss is not used as the figure: on
    # Linux it keeps the high-water mark of the parent copied by fork, before exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {"import_s": imported - started, "rss_after_import_mb": hwm()}
if mode == "time":
    cpu = time.process_time()
    started = time.perf_counter()
    policy = load_policy(path)
    out["load_s"] = time.perf_counter() - started
    out["load_cpu_s"] = time.process_time() - cpu
    out["inbound"], out["outbound"] = len(policy.inbound), len(policy.outbound)
    out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_rss_mb"] = hwm()
elif mode == "tracemalloc":
    import tracemalloc
    tracemalloc.start()
    policy = load_policy(path)
    current, peak = tracemalloc.get_traced_memory()
    out["traced_peak_mb"], out["traced_kept_mb"] = peak / 2**20, current / 2**20
else:
    import gc, tomli
    from tlsconnector import Policy
    from tlsconnector._gc import gc_paused
    from tlsconnector.policy_file.loading import _load_trust
    from pathlib import Path
    text = open(path, "rb").read().decode("utf-8")
    with gc_paused():
        cpu = time.process_time()
        data = tomli.loads(text)  # the parser load_policy uses
        out["toml_cpu_s"] = time.process_time() - cpu
        trust = _load_trust(data, Path(path).parent, [], use_system_trust=True)
        cpu = time.process_time()
        Policy.from_mapping(data, trust=trust)
        out["model_cpu_s"] = time.process_time() - cpu
print(json.dumps(out))
"""


def _load_run(mode: str, path: Path) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - our own interpreter and modules
        [sys.executable, "-c", _LOAD_SCRIPT, mode, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def bench_load(results: Results, workdir: Path, pki: BenchPKI, *, quick: bool) -> None:
    per_direction = 10_000 if quick else LARGE // 2
    total = 2 * per_direction
    (workdir / "ca.pem").write_text(pki.trust_pem())
    path = workdir / f"policy-{total}.toml"
    path.write_text(policy_toml(per_direction, ca_file="ca.pem"))
    results.figure(
        "load.file_mb", path.stat().st_size / 2**20, "MiB", f"policy file, {total:,} connectors"
    )
    _log(f"loading a {total:,}-connector policy file in fresh interpreters")
    timed = min(
        (_load_run("time", path) for _ in range(1 if quick else 2)),
        key=lambda r: r["load_cpu_s"],
    )
    traced = _load_run("tracemalloc", path)
    parts = _load_run("parts", path)
    if (timed["inbound"], timed["outbound"]) != (per_direction, per_direction):
        raise RuntimeError(f"the loaded policy has the wrong size: {timed}")
    results.figure("load.seconds", timed["load_s"], "s", "load_policy wall time")
    results.figure("load.cpu_seconds", timed["load_cpu_s"], "s", "load_policy CPU time (best)")
    results.figure(
        "load.peak_rss_mb", timed["peak_rss_mb"], "MiB", "peak RSS of the process (VmHWM)"
    )
    results.figure(
        "load.ru_maxrss_mb",
        timed["ru_maxrss_mb"],
        "MiB",
        "ru_maxrss (on Linux includes the forking parent's size before exec)",
    )
    results.figure(
        "load.rss_after_import_mb", timed["rss_after_import_mb"], "MiB", "RSS after import"
    )
    results.figure(
        "load.traced_peak_mb", traced["traced_peak_mb"], "MiB", "tracemalloc peak during the load"
    )
    results.figure(
        "load.traced_kept_mb", traced["traced_kept_mb"], "MiB", "memory the loaded policy keeps"
    )
    results.figure(
        "load.toml_cpu_s", parts["toml_cpu_s"], "s", "of which: tomli.loads (as load_policy)"
    )
    results.figure(
        "load.model_cpu_s", parts["model_cpu_s"], "s", "of which: validation and indexing"
    )
    note = (
        f"tomli alone: {parts['toml_cpu_s']:.2f} s; validation + indexing: "
        f"{parts['model_cpu_s']:.2f} s"
    )
    results.target(
        "load-time",
        f"load_policy of a {total:,}-connector file (fresh interpreter, CPU time)",
        measured=timed["load_cpu_s"],
        op="<=",
        threshold=3.0,
        unit="s",
        note=f"{note}; wall time {timed['load_s']:.2f} s",
    )
    results.target(
        "load-peak-rss",
        f"peak RSS loading a {total:,}-connector file",
        measured=timed["peak_rss_mb"],
        op="<=",
        threshold=300,
        unit="MiB",
    )


# --------------------------------------------------------------------------------------
# 6b. Linting a 100,000-connector policy (tlsconnector check), against loading it

_LINT_SCRIPT = r"""
import json, sys, time
from collections import Counter
from tlsconnector import lint, load_policy
cpu = time.process_time()
policy = load_policy(sys.argv[1])
load_cpu_s = time.process_time() - cpu
cpu = time.process_time()
warnings = lint(policy)
lint_cpu_s = time.process_time() - cpu
print(json.dumps({
    "load_cpu_s": load_cpu_s,
    "lint_cpu_s": lint_cpu_s,
    "inbound": len(policy.inbound),
    "outbound": len(policy.outbound),
    "codes": Counter(str(w.code) for w in warnings),
}))
"""


def bench_lint(results: Results, workdir: Path, pki: BenchPKI, *, quick: bool) -> None:
    """The lint of ``check`` against loading the same policy, in the same fresh
    interpreter (the policy of the load benchmark, with competing connectors so that
    every rule comparing connectors fires)."""
    per_direction = 10_000 if quick else LARGE // 2
    total = 2 * per_direction
    (workdir / "ca.pem").write_text(pki.trust_pem())
    path = workdir / f"policy-lint-{total}.toml"
    path.write_text(lint_policy_toml(per_direction, ca_file="ca.pem"))
    _log(f"linting a {total:,}-connector policy file in fresh interpreters")
    runs = []
    for _ in range(1 if quick else 2):
        done = subprocess.run(  # noqa: S603 - our own interpreter and modules
            [sys.executable, "-c", _LINT_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            cwd=ROOT,
        )
        runs.append(json.loads(done.stdout))
    best = min(runs, key=lambda r: r["lint_cpu_s"] / r["load_cpu_s"])
    if (best["inbound"], best["outbound"]) != (per_direction, per_direction):
        raise RuntimeError(f"the linted policy has the wrong size: {best}")
    codes: dict[str, int] = best["codes"]
    # Every rule that compares connectors must have had work to do.
    for code in ("connector-shadowed", "allow-only-overridden", "restricting-overlap"):
        if not codes.get(code):
            raise RuntimeError(f"the lint benchmark policy gave no {code} warning: {codes}")
    ratio = best["lint_cpu_s"] / best["load_cpu_s"]
    results.figure("lint.cpu_seconds", best["lint_cpu_s"], "s", "lint() CPU time")
    results.figure(
        "lint.load_cpu_seconds", best["load_cpu_s"], "s", "load_policy CPU time, same run"
    )
    results.figure("lint.warnings", sum(codes.values()), "", "lint warnings, every code")
    results.figure("lint.codes", sorted(f"{k}: {v}" for k, v in codes.items()), "", "by code")
    # The whole command as an operator runs it (interpreter start, load, lint, output).
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own interpreter and modules
        [sys.executable, "-m", "tlsconnector", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        cwd=ROOT,
    )
    check_wall = time.perf_counter() - started
    if len(done.stderr.splitlines()) != sum(codes.values()):
        raise RuntimeError("tlsconnector check printed another number of warnings")
    results.figure(
        "lint.check_wall_s", check_wall, "s", "tlsconnector check, whole command (wall time)"
    )
    results.target(
        "lint-vs-load",
        f"lint of a {total:,}-connector policy / loading it (fresh interpreter, CPU time)",
        measured=ratio,
        op="<=",
        threshold=1.0,
        unit="x",
        note=(
            f"lint {best['lint_cpu_s']:.2f} s, load {best['load_cpu_s']:.2f} s; "
            f"tlsconnector check {check_wall:.2f} s wall"
        ),
    )


# --------------------------------------------------------------------------------------
# 7. The command line in batch


def _cli_in_process(argv: list[str], out_path: Path) -> tuple[int, float, float]:
    from tlsconnector.cli import main

    with open(out_path, "w", encoding="utf-8") as out, contextlib.redirect_stdout(out):
        cpu = time.process_time()
        wall = time.perf_counter()
        status = main(argv)
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    return status, cpu, wall


def _cli_subprocess(argv: list[str], out_path: Path) -> tuple[int, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out_path, "wb") as out:
        wall = time.perf_counter()
        done = subprocess.run(  # noqa: S603 - our own interpreter and modules
            [sys.executable, "-m", "tlsconnector", *argv],
            stdout=out,
            stderr=subprocess.DEVNULL,
            timeout=600,
            check=False,
            cwd=ROOT,
        )
        wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.returncode, cpu, wall


def _check_output(path: Path, count: int, *, all_accepted: bool = False) -> None:
    """Every line decided (and, for the chain runs, every chain validated and every
    session accepted: a run that refused them quickly would measure nothing)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != count or any('"action"' not in line for line in lines):
        raise RuntimeError(f"{path}: expected {count} decisions, one per line")
    if all_accepted and any(not line.startswith('{"action":"accept"') for line in lines):
        raise RuntimeError(f"{path}: expected every session to be accepted")


def _chain_inputs(workdir: Path, key_type: str, count: int) -> tuple[Path, Path]:
    """A 1,000+1,000-connector policy trusting a new PKI of ``key_type``, and ``count``
    sessions each presenting its own chain (leaf and intermediate) from that PKI."""
    pki = BenchPKI(key_type)
    (workdir / f"ca-{key_type}.pem").write_text(pki.trust_pem())
    policy = workdir / f"policy-cli-{key_type}.toml"
    policy.write_text(policy_toml(1_000, ca_file=f"ca-{key_type}.pem"))
    _log(f"minting {count:,} distinct certificate chains ({key_type} CAs)")
    sessions = workdir / f"sessions-chains-{key_type}.jsonl"
    with open(sessions, "w", encoding="utf-8") as handle:
        handle.writelines(session_lines(chain_facts(pki, count, connectors=1_000)))
    return policy, sessions


def bench_cli(results: Results, workdir: Path, pki: BenchPKI, *, quick: bool) -> None:
    (workdir / "ca.pem").write_text(pki.trust_pem())
    policy = workdir / "policy-cli.toml"
    policy.write_text(policy_toml(1_000, ca_file="ca.pem"))
    out = workdir / "decisions.jsonl"

    # Start-up: interpreter, import, policy load, nothing to decide.
    empty = workdir / "sessions-empty.jsonl"
    empty.write_text("")
    startup = min(
        _cli_subprocess(["inbound", "--policy", str(policy), "--sessions", str(empty)], out)[2]
        for _ in range(3)
    )
    results.figure(
        "cli.startup_s",
        startup,
        "s",
        "python -m tlsconnector inbound with an empty session file: interpreter start, "
        "import and loading the 1,000+1,000-connector policy (best of three)",
    )

    # Without certificates: one process.
    plain_count = 8_000 if quick else 40_000
    plain = workdir / "sessions-plain.jsonl"
    with open(plain, "w", encoding="utf-8") as handle:
        handle.writelines(session_lines(inbound_session_facts(plain_count, connectors=1_000)))
    argv = ["inbound", "--policy", str(policy), "--sessions", str(plain), "--json"]
    _log("CLI inbound --sessions, no-cert: in process")
    attempts = []
    for _ in range(1 if quick else 2):  # best of two, each from cold caches
        clear_certificate_caches()
        gc.collect()
        attempts.append(_cli_in_process(argv, out))
        _check_output(out, plain_count)
    status, cpu, wall = min(attempts, key=lambda run: run[1])
    results.figure(
        "cli.no-cert.in_process_cpu_s", cpu, "s", f"main(), {plain_count:,} sessions, CPU"
    )
    results.target(
        "cli-no-cert-rate",
        f"tlsconnector inbound --sessions, no-cert, {plain_count:,} sessions: main() in "
        "process (CPU time, policy load included)",
        measured=plain_count / cpu,
        op=">=",
        threshold=20_000,
        unit="/s",
        note=f"exit status {status}",
    )
    _log("CLI inbound --sessions, no-cert: subprocess")
    runs = []
    for _ in range(1 if quick else 2):  # wall time on a shared machine: best of two
        runs.append(_cli_subprocess(argv, out))
        _check_output(out, plain_count)
    status, cpu, wall = min(runs, key=lambda run: run[2])
    results.figure("cli.no-cert.subprocess_wall_s", wall, "s", "python -m tlsconnector, wall")
    results.target(
        "cli-no-cert-rate-subprocess",
        "the same as a subprocess (wall time; interpreter start and policy load included)",
        measured=plain_count / wall,
        op=">=",
        threshold=20_000,
        unit="/s",
        note=f"exit status {status}",
    )

    # Distinct chains: every session presents its own chain, validated to the anchor.
    chain_count = 2_000 if quick else 20_000
    jobs = _available_cores()
    for key_type in ("rsa-2048", "ec-p256"):
        chain_policy, chains = _chain_inputs(workdir, key_type, chain_count)
        base = ["inbound", "--policy", str(chain_policy), "--sessions", str(chains), "--json"]
        _log(f"CLI inbound --sessions, distinct chains ({key_type}): one process, in process")
        attempts = []
        for _ in range(1 if quick else 2):
            clear_certificate_caches()
            gc.collect()
            attempts.append(_cli_in_process(base, out))
            _check_output(out, chain_count, all_accepted=True)
        _, cpu, _ = min(attempts, key=lambda run: run[1])
        results.figure(
            f"cli.chains-{key_type}.one_core_rate",
            chain_count / cpu,
            "/s",
            f"distinct chains ({key_type} CAs), one process: sessions per CPU second "
            "(main() in process, policy load included)",
        )
        for label, argv in (("jobs-1", base), ("jobs-all", [*base, "--jobs", "0"])):
            _log(f"CLI inbound --sessions, distinct chains ({key_type}): subprocess, {label}")
            runs = []
            for _ in range(1 if quick else 2):
                runs.append(_cli_subprocess(argv, out))
                _check_output(out, chain_count, all_accepted=True)
            status, cpu, wall = min(runs, key=lambda run: run[2])
            results.figure(
                f"cli.chains-{key_type}.{label}.subprocess_rate",
                chain_count / wall,
                "/s",
                f"distinct chains ({key_type} CAs), python -m tlsconnector "
                f"{'--jobs 0 (' + str(jobs) + ' workers)' if label == 'jobs-all' else ''}: "
                "sessions per wall second, whole command",
            )
            if key_type == "rsa-2048" and label == "jobs-all":
                results.target(
                    "cli-distinct-chains-rate",
                    f"tlsconnector inbound --sessions --jobs 0, {chain_count:,} sessions each "
                    "with its own chain (RSA-2048 CAs): whole command as a subprocess (wall "
                    "time; interpreter start and policy load included)",
                    measured=chain_count / wall,
                    op=">=",
                    threshold=5_000,
                    unit="/s",
                    note=f"{jobs} workers; exit status {status}",
                )


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------
# 8. The Postfix policy service against a do-nothing one


#: The policy services run on one core and the load generator on the other, when
#: there are two: both services alike, and the run does not depend on where the
#: scheduler happens to put the two processes (which moved the rates by a third).
SERVER_CPUS = {1}
CLIENT_CPUS = {0}


def _on_cpus(cpus: set[int]) -> Callable[[], None] | None:
    """A ``preexec_fn`` keeping a child process on ``cpus``, if this machine has them."""
    try:
        available = os.sched_getaffinity(0)
    except AttributeError:
        return None
    if len(available) < 2 or not cpus <= available:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


@contextlib.contextmanager
def _server(argv: list[str], log_path: Path, *, ready_timeout: float = 60.0) -> Iterator[str]:
    """Start a server process; yield its ``host:port`` from its ``listening`` line."""
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=ROOT,
            preexec_fn=_on_cpus(SERVER_CPUS),
        )
    try:
        deadline = time.monotonic() + ready_timeout
        address = None
        while address is None:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(argv)} exited with {process.returncode}: "
                    f"{log_path.read_text(encoding='utf-8')[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(argv)} did not start listening in time")
            for line in log_path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict) and record.get("event") == "listening":
                        address = str(record["address"])
            time.sleep(0.05)
        yield address
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def _drive(address: str, *, count: int, seconds: float, distinct: int = 5_000) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - our own interpreter and modules
        [
            sys.executable,
            "-m",
            "benchmarks.policy_client",
            "--connect",
            address,
            "--connections",
            "32",
            "--count",
            str(count),
            "--seconds",
            str(seconds),
            "--distinct",
            str(distinct),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
        preexec_fn=_on_cpus(CLIENT_CPUS),
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def bench_postfix(results: Results, workdir: Path, pki: BenchPKI, *, quick: bool) -> None:
    description = (
        "tlsconnector serve postfix / do-nothing asyncio policy service, requests per "
        "second, 32 connections on 127.0.0.1"
    )
    (workdir / "ca.pem").write_text(pki.trust_pem())
    policy = workdir / "policy-serve.toml"
    policy.write_text(policy_toml(1_000, ca_file="ca.pem"))
    serve = [
        "-m",
        "tlsconnector",
        "serve",
        "postfix",
        "--policy",
        str(policy),
        "--listen",
        "127.0.0.1:0",
    ]
    probe = subprocess.run(  # noqa: S603 - our own interpreter and modules
        [sys.executable, *serve[:4], "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if probe.returncode != 0:
        results.target(
            "postfix-vs-noop",
            description,
            measured=None,
            op=">=",
            threshold=0.6,
            unit="x",
            note=f"`tlsconnector serve postfix` is not available: {probe.stderr.strip()[-300:]}",
        )
        return
    postfix_breakdown(results, policy, quick=quick)
    noop = ["-m", "benchmarks.noop_policy_server", "--listen", "127.0.0.1:0"]
    count, seconds = (5_000, 4.0) if quick else (60_000, 10.0)
    runs: dict[str, list[dict[str, Any]]] = {"noop": [], "serve": []}
    try:
        # Alternated, three times each, so that drift in the machine's load hits both
        # alike; the best run of each is kept.
        for _ in range(1 if quick else 3):
            for label, argv in (("noop", noop), ("serve", serve)):
                _log(f"policy service load: {label}")
                with _server(argv, workdir / f"{label}.log") as address:
                    runs[label].append(_drive(address, count=count, seconds=seconds))
        # Not a target: every request new (no answer can be reused), for comparison.
        _log("policy service load: serve, every request distinct")
        with _server(serve, workdir / "serve-distinct.log") as address:
            distinct_run = _drive(address, count=count, seconds=seconds, distinct=count + 1_000)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        results.target(
            "postfix-vs-noop",
            description,
            measured=None,
            op=">=",
            threshold=0.6,
            unit="x",
            note=f"could not be measured: {str(exc)[-500:]}",
        )
        return
    best = {label: max(found, key=lambda r: r["rate"]) for label, found in runs.items()}
    for label, run in best.items():
        results.figure(f"postfix.{label}.rate", run["rate"], "/s", f"{label}: requests per second")
        results.figure(
            f"postfix.{label}.p50_ms", run["latency_p50_ms"], "ms", f"{label}: p50 latency"
        )
        results.figure(
            f"postfix.{label}.p99_ms", run["latency_p99_ms"], "ms", f"{label}: p99 latency"
        )
        results.figure(
            f"postfix.{label}.requests", run["requests"], "", f"{label}: requests measured"
        )
    results.figure(
        "postfix.serve-distinct.rate",
        distinct_run["rate"],
        "/s",
        "tlsconnector, every request distinct (no answer reused): requests per second",
    )
    results.figure(
        "postfix.serve-distinct.p99_ms",
        distinct_run["latency_p99_ms"],
        "ms",
        "tlsconnector, every request distinct: p99 latency",
    )
    results.figure(
        "postfix.serve-distinct.vs_noop",
        distinct_run["rate"] / best["noop"]["rate"],
        "x",
        "every request distinct / do-nothing service",
    )
    results.target(
        "postfix-vs-noop",
        description,
        measured=best["serve"]["rate"] / best["noop"]["rate"],
        op=">=",
        threshold=0.6,
        unit="x",
        note=(
            f"p50/p99 {best['serve']['latency_p50_ms']:.2f}/"
            f"{best['serve']['latency_p99_ms']:.2f} ms (do-nothing "
            f"{best['noop']['latency_p50_ms']:.2f}/{best['noop']['latency_p99_ms']:.2f} ms)"
        ),
    )


def postfix_breakdown(results: Results, policy_path: Path, *, quick: bool) -> None:
    """Where one request's time goes, in process (CPU): framing, facts and decision,
    and the whole answer with its log line. Uses the server's own classes."""
    try:
        from benchmarks.policy_client import postfix_requests
        from tlsconnector import load_policy
        from tlsconnector.adapters.postfix.protocol import RequestParser, decide_request
        from tlsconnector.adapters.postfix.server import JsonLog, PolicyServer
    except ImportError as exc:
        results.figure("postfix.breakdown", None, "", f"not measured: {exc}")
        return
    policy = load_policy(policy_path)
    # As many distinct requests as the load generator cycles through (they all fit in
    # the service's memory of answers, as in the load runs).
    requests = postfix_requests(2_000 if quick else 5_000, connectors=1_000)
    stream = b"".join(requests)
    repeat = 3 if quick else 5

    def frame() -> None:
        RequestParser().feed(stream)

    parsed = RequestParser().feed(stream)

    def decide() -> None:
        for request in parsed:
            decide_request(policy, request, at=NOW)

    with open(os.devnull, "w", encoding="utf-8") as devnull:
        log = JsonLog(devnull)

        def first_answers() -> None:
            # A new server each time: every request is decided (nothing remembered).
            server = PolicyServer(policy, policy_path=policy_path, log=log)
            for request in parsed:
                server.respond([request])

        warm = PolicyServer(policy, policy_path=policy_path, log=log)
        for request in parsed:
            warm.respond([request])

        def repeated_answers() -> None:
            for request in parsed:
                warm.respond([request])

        answer_cost = best_cpu(first_answers, repeat=repeat) / len(parsed)
        repeated_cost = best_cpu(repeated_answers, repeat=repeat) / len(parsed)
    frame_cost = best_cpu(frame, repeat=repeat) / len(parsed)
    decide_cost = best_cpu(decide, repeat=repeat) / len(parsed)
    results.figure(
        "postfix.cpu.framing_us", frame_cost * 1e6, "us", "RequestParser.feed, per request"
    )
    results.figure(
        "postfix.cpu.decide_us",
        decide_cost * 1e6,
        "us",
        "decide_request: facts from the attributes and the inbound decision",
    )
    results.figure(
        "postfix.cpu.answer_us",
        answer_cost * 1e6,
        "us",
        "PolicyServer.respond, a request never seen: decision, JSON log line, reply bytes",
    )
    results.figure(
        "postfix.cpu.repeated_answer_us",
        repeated_cost * 1e6,
        "us",
        "PolicyServer.respond, a request whose decision key was answered before",
    )


# --------------------------------------------------------------------------------------
# 9. The Postfix outbound socketmap service against a do-nothing one and against
# postfix-mta-sts-resolver


#: Partner servers (next hops) the outbound service pins; their connectors alternate
#: domain_validation and certificate_validation.
OUTBOUND_PARTNERS = 8
#: Every wait on a partner, a lookup or a process in this step is bounded (seconds).
OUTBOUND_WAIT = 90.0
#: The resolver's cache entries: fresh for ten years (cache_grace) and valid for a
#: year (the policy's max_age), so that no lookup of the run leaves the cache.
RESOLVER_CACHE_GRACE = 315_360_000
RESOLVER_MAX_AGE = 31_557_600
#: What the two targets of this step compare.
OUTBOUND_VS_NOOP = (
    "tlsconnector serve postfix-outbound / do-nothing asyncio socketmap service, "
    "lookups per second with warm pins (transport and tlspolicy alternating), "
    "32 connections on 127.0.0.1"
)
OUTBOUND_VS_RESOLVER = (
    "tlsconnector serve postfix-outbound / postfix-mta-sts-resolver (sqlite cache, "
    "pre-filled), tlspolicy lookups per second answered from memory, 32 connections "
    "on 127.0.0.1"
)


class _PartnerHandler:
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return "250 OK"


class Partners:
    """``count`` aiosmtpd servers on 127.0.0.1 (port 0 each), in one event loop in a
    daemon thread, each offering STARTTLS with its own leaf (CN
    ``mail.partner{i}.example``, issued by the bench PKI's intermediate, valid around
    the real clock: the service subprocess reads it)."""

    def __init__(self, pki: BenchPKI, workdir: Path, count: int) -> None:
        from aiosmtpd.smtp import SMTP

        now = dt.datetime.now(dt.UTC)
        self.leaves = [
            pki.intermediate.issue(
                f"mail.partner{i}.example",
                not_before=now - dt.timedelta(days=1),
                not_after=now + dt.timedelta(days=30),
            )
            for i in range(count)
        ]
        contexts = []
        for i, leaf in enumerate(self.leaves):
            chain, key = workdir / f"partner{i}-chain.pem", workdir / f"partner{i}-key.pem"
            chain.write_text(leaf.chain_pem())
            key.write_text(leaf.key_pem())
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(chain, key)
            contexts.append(context)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def listen() -> list[asyncio.AbstractServer]:
            servers = []
            for i, context in enumerate(contexts):

                def factory(context: ssl.SSLContext = context, i: int = i) -> SMTP:
                    return SMTP(
                        _PartnerHandler(),
                        hostname=f"mail.partner{i}.example",
                        tls_context=context,
                        loop=self.loop,
                    )

                servers.append(await self.loop.create_server(factory, "127.0.0.1", 0))
            return servers

        self.servers = asyncio.run_coroutine_threadsafe(listen(), self.loop).result(OUTBOUND_WAIT)
        self.ports: list[int] = [s.sockets[0].getsockname()[1] for s in self.servers]

    def pin(self, i: int) -> str:
        """The SHA-256 fingerprint of partner ``i``'s leaf, as the service pins it."""
        digest = hashlib.sha256(self.leaves[i].der()).hexdigest().upper()
        return ":".join(digest[j : j + 2] for j in range(0, 64, 2))

    def stop(self) -> None:
        async def close() -> None:
            for server in self.servers:
                server.close()
            for server in self.servers:
                await asyncio.wait_for(server.wait_closed(), OUTBOUND_WAIT)

        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(OUTBOUND_WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(OUTBOUND_WAIT)
        self.loop.close()


def outbound_policy_toml(partners: Sequence[int], *, ca_file: str, generated: int) -> str:
    """The generated policy of ``generated`` connectors per direction, then one outbound
    connector per partner port: smart host ``127.0.0.1:PORT``, recipient domain
    ``partner{i}.example``, domain_validation (tls_domain ``*.partner{i}.example``) for
    even ``i``, certificate_validation for odd ``i``."""
    out = [policy_toml(generated, ca_file=ca_file)]
    for i, port in enumerate(partners):
        out += [
            "[[outbound]]",
            f'name = "bench-pinned-{i}"',
            f'recipient_domains = ["partner{i}.example"]',
            "use_mx_record = false",
            f'smart_hosts = ["127.0.0.1:{port}"]',
        ]
        if i % 2 == 0:
            out += ['tls_settings = "domain_validation"', f'tls_domain = "*.partner{i}.example"']
        else:
            out.append('tls_settings = "certificate_validation"')
        out.append("")
    return "\n".join(out)


def _socketmap_ask(sock: socket.socket, request: str) -> str:
    """Send one socketmap request on a blocking socket and read its answer."""
    from benchmarks.socketmap_client import MAX_ANSWER_BYTES, netstring

    sock.sendall(netstring(request.encode("utf-8")))
    head = b""
    while not head.endswith(b":"):
        if len(head) > len(str(MAX_ANSWER_BYTES)):
            raise RuntimeError(f"{request!r}: not a netstring answer: {head!r}")
        chunk = sock.recv(1)
        if not chunk:
            raise RuntimeError(f"{request!r}: the connection closed after {head!r}")
        head += chunk
    size = int(head[:-1]) + 1
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise RuntimeError(f"{request!r}: the connection closed in the answer")
        data += chunk
    if not data.endswith(b","):
        raise RuntimeError(f"{request!r}: the answer does not end with ','")
    return data[:-1].decode("ascii", "backslashreplace")


def _connect(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=OUTBOUND_WAIT)


def _check_answers(address: str, expected: dict[str, str]) -> dict[str, float]:
    """Ask each request on one connection; raise unless every answer is the expected
    one. The wall time of each lookup (seconds), in order."""
    took = {}
    with _connect(address) as sock:
        for request, wanted in expected.items():
            started = time.perf_counter()
            answer = _socketmap_ask(sock, request)
            took[request] = time.perf_counter() - started
            if answer != wanted:
                raise RuntimeError(f"{request!r} was answered {answer!r}, not {wanted!r}")
    return took


def _drive_socketmap(
    address: str, requests: Path, *, count: int, seconds: float, connections: int = 32
) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - our own interpreter and modules
        [
            sys.executable,
            "-m",
            "benchmarks.socketmap_client",
            "--connect",
            address,
            "--requests",
            str(requests),
            "--connections",
            str(connections),
            "--count",
            str(count),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
        preexec_fn=_on_cpus(CLIENT_CPUS),
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def resolver_config(port: int, cache: Path) -> str:
    """postfix-mta-sts-resolver's configuration (YAML) for the benchmark."""
    return "\n".join(
        [
            "# tlsconnector make bench: postfix-mta-sts-resolver answering from its cache",
            "host: 127.0.0.1",
            f"port: {port}",
            "# the daemon's default; its TCP listener is only set up with it",
            "reuse_port: true",
            "shutdown_timeout: 5",
            "# every pre-filled entry stays fresh: no lookup of the run goes to DNS/HTTPS",
            f"cache_grace: {RESOLVER_CACHE_GRACE}",
            "proactive_policy_fetching:",
            "  enabled: false",
            "cache:",
            "  type: sqlite",
            "  options:",
            f"    filename: {json.dumps(str(cache))}",
            "default_zone:",
            "  strict_testing: false",
            "  timeout: 4",
            "  require_sni: true",
            "",
        ]
    )


def prefill_resolver_cache(path: Path, domains: Sequence[str], *, now: float) -> dict[str, str]:
    """Write the resolver's sqlite cache (its own schema) with an ``enforce`` policy for
    each domain (MX ``mail.DOMAIN``), fetched ``now``; the answer each lookup must get."""
    answers = {}
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "create table if not exists proactive_fetch_ts "
            "(id integer primary key, last_fetch_ts integer)"
        )
        db.execute(
            "create table if not exists sts_policy_cache "
            "(domain text, ts integer, pol_id text, pol_body text)"
        )
        db.execute(
            "create unique index if not exists sts_policy_domain on sts_policy_cache (domain)"
        )
        db.execute(
            "create index if not exists sts_policy_domain_ts on sts_policy_cache (domain, ts)"
        )
        for number, domain in enumerate(domains):
            body = {
                "version": "STSv1",
                "mode": "enforce",
                "mx": [f"mail.{domain}"],
                "max_age": RESOLVER_MAX_AGE,
            }
            db.execute(
                "insert or replace into sts_policy_cache (domain, ts, pol_id, pol_body) "
                "values (?, ?, ?, ?)",
                (domain, int(now), f"bench{number}", json.dumps(body)),
            )
            answers[f"postfix {domain}"] = f"OK secure match=mail.{domain} servername=hostname"
        db.commit()
    return answers


@contextlib.contextmanager
def _resolver(daemon: Path, workdir: Path, run: int) -> Iterator[tuple[str, dict[str, str]]]:
    """Start ``mta-sts-daemon -c CONFIG`` on the server core with a pre-filled cache;
    yield its address, and the answers it gave, once it answers every benchmark domain
    from its cache as it should."""
    cache = workdir / f"resolver-cache-{run}.db"
    answers = prefill_resolver_cache(cache, _resolver_domains(), now=time.time())
    port = _free_port()
    config = workdir / f"resolver-{run}.yml"
    config.write_text(resolver_config(port, cache), encoding="utf-8")
    log_path = workdir / f"resolver-{run}.log"
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(  # noqa: S603 - the resolver's own console script
            [str(daemon), "-c", str(config), "--disable-uvloop"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            preexec_fn=_on_cpus(SERVER_CPUS),
        )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + OUTBOUND_WAIT
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"mta-sts-daemon exited with {process.returncode}: "
                    f"{log_path.read_text(encoding='utf-8')[-1000:]}"
                )
            try:
                _check_answers(address, answers)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mta-sts-daemon did not start answering in time") from None
                time.sleep(0.1)
                continue
            break
        yield address, answers
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def _resolver_domains() -> list[str]:
    return [f"partner{i}.example" for i in range(OUTBOUND_PARTNERS)]


def _warm_pins(address: str, partners: Partners) -> dict[str, float]:
    """The first lookups: every next hop probed and pinned, every answer checked."""
    expected = {}
    for i, port in enumerate(partners.ports):
        expected[f"transport user@partner{i}.example"] = f"OK tlsconnector:[127.0.0.1]:{port}"
        expected[f"tlspolicy [127.0.0.1]:{port}"] = (
            f"OK fingerprint match={partners.pin(i)} servername=hostname"
        )
    return _check_answers(address, expected)


def bench_postfix_outbound(results: Results, workdir: Path, pki: BenchPKI, *, quick: bool) -> None:
    def unmeasured(note: str) -> None:
        for key, text, threshold in (
            ("postfix-outbound-vs-noop", OUTBOUND_VS_NOOP, 0.6),
            ("postfix-outbound-vs-mta-sts-resolver", OUTBOUND_VS_RESOLVER, 1.0),
        ):
            results.target(
                key, text, measured=None, op=">=", threshold=threshold, unit="x", note=note
            )

    results.figure(
        "postfix-outbound.load_average_before",
        [round(x, 2) for x in os.getloadavg()],
        "",
        "the machine's load average when this step started (1, 5, 15 minutes)",
    )
    help_run = subprocess.run(
        [sys.executable, "-m", "tlsconnector", "serve", "postfix-outbound", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if help_run.returncode != 0:
        unmeasured(
            "`tlsconnector serve postfix-outbound` is not available: "
            f"{help_run.stderr.strip()[-300:]}"
        )
        return
    try:
        partners = Partners(pki, workdir, OUTBOUND_PARTNERS)
    except ImportError as exc:
        unmeasured(f"the partner servers need aiosmtpd (the test extra): {exc}")
        return
    try:
        _bench_postfix_outbound(results, workdir, pki, partners, quick=quick)
    except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
        unmeasured(f"could not be measured: {str(exc)[-500:]}")
    finally:
        partners.stop()


def _bench_postfix_outbound(
    results: Results, workdir: Path, pki: BenchPKI, partners: Partners, *, quick: bool
) -> None:
    (workdir / "ca-outbound.pem").write_text(pki.trust_pem())
    policy = workdir / "policy-outbound.toml"
    policy.write_text(
        outbound_policy_toml(partners.ports, ca_file="ca-outbound.pem", generated=1_000)
    )
    serve = [
        "-m",
        "tlsconnector",
        "serve",
        "postfix-outbound",
        "--policy",
        str(policy),
        "--listen",
        "127.0.0.1:0",
    ]
    noop = ["-m", "benchmarks.noop_socketmap_server", "--listen", "127.0.0.1:0"]
    # The mix: for each message, the recipient's transport lookup, then its next hop's
    # TLS policy (a warm pin), over 1,000 recipients of the pinned partners.
    mix = workdir / "requests-mix.txt"
    lines = []
    for n in range(1_000):
        i = n % OUTBOUND_PARTNERS
        lines.append(f"transport user{n}@partner{i}.example")
        lines.append(f"tlspolicy [127.0.0.1]:{partners.ports[i]}")
    mix.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tls_only = workdir / "requests-tlspolicy.txt"
    tls_only.write_text(
        "".join(f"tlspolicy [127.0.0.1]:{port}\n" for port in partners.ports), encoding="utf-8"
    )
    resolver_requests = workdir / "requests-resolver.txt"
    resolver_requests.write_text(
        "".join(f"postfix {domain}\n" for domain in _resolver_domains()), encoding="utf-8"
    )
    daemon = Path(sys.executable).with_name("mta-sts-daemon")
    resolver_note = ""
    if not daemon.exists():
        resolver_note = (
            f"postfix-mta-sts-resolver is not installed (pip install -e '.[bench]'): no {daemon}"
        )

    postfix_outbound_breakdown(results, policy, partners, quick=quick)
    _bench_outbound_cold(results, workdir, serve, partners, quick=quick)

    count, seconds = (5_000, 4.0) if quick else (60_000, 10.0)
    runs: dict[str, list[dict[str, Any]]] = {"noop": [], "serve": [], "serve-tls": []}
    if not resolver_note:
        runs["resolver"] = []
    resolver_answers: dict[str, str] = {}
    # Alternated, three times each, so that drift in the machine's load hits all alike;
    # the best run of each is kept.
    for alternation in range(1 if quick else 3):
        _log("socketmap load: do-nothing service")
        with _server(noop, workdir / "noop-socketmap.log") as address:
            runs["noop"].append(_drive_socketmap(address, mix, count=count, seconds=seconds))
        _log("socketmap load: serve postfix-outbound (pins warmed first)")
        with _server(serve, workdir / f"serve-outbound-{alternation}.log") as address:
            _warm_pins(address, partners)
            runs["serve"].append(_drive_socketmap(address, mix, count=count, seconds=seconds))
            runs["serve-tls"].append(
                _drive_socketmap(address, tls_only, count=count, seconds=seconds)
            )
        if not resolver_note:
            _log("socketmap load: postfix-mta-sts-resolver (warm sqlite cache)")
            with _resolver(daemon, workdir, alternation) as (address, answers):
                resolver_answers.update(answers)
                runs["resolver"].append(
                    _drive_socketmap(address, resolver_requests, count=count, seconds=seconds)
                )
    best = {label: max(found, key=lambda r: r["rate"]) for label, found in runs.items() if found}
    what = {
        "noop": "do-nothing socketmap service, the transport/tlspolicy mix",
        "serve": "serve postfix-outbound, the transport/tlspolicy mix (warm pins)",
        "serve-tls": "serve postfix-outbound, tlspolicy lookups only (warm pins)",
        "resolver": "postfix-mta-sts-resolver, lookups of its pre-filled domains",
    }
    for label, run in best.items():
        key = f"postfix-outbound.{label}"
        results.figure(f"{key}.rate", run["rate"], "/s", f"{what[label]}: lookups per second")
        for name in ("p50", "p90", "p99", "max"):
            results.figure(
                f"{key}.{name}_ms",
                run[f"latency_{name}_ms"],
                "ms",
                f"{what[label]}: {name} latency",
            )
        results.figure(f"{key}.requests", run["requests"], "", f"{what[label]}: lookups measured")
        results.figure(f"{key}.answers", run["answers"], "", f"{what[label]}: answers by kind")
        results.figure(
            f"{key}.all_rates",
            [round(r["rate"]) for r in runs[label]],
            "/s",
            f"{what[label]}: the rate of every alternation",
        )
    if resolver_answers:
        results.figure(
            "postfix-outbound.resolver.checked_answers",
            [f"{k} -> {v}" for k, v in sorted(resolver_answers.items())][:3],
            "",
            "answers the resolver gave before each load (all checked; three shown)",
        )
        results.figure(
            "postfix-outbound.resolver.config",
            resolver_config(0, workdir / "resolver-cache.db").replace("port: 0", "port: FREE"),
            "",
            "the resolver's configuration (mta-sts-daemon -c CONFIG --disable-uvloop)",
        )
    serve_run, noop_run = best["serve"], best["noop"]
    results.target(
        "postfix-outbound-vs-noop",
        OUTBOUND_VS_NOOP,
        measured=serve_run["rate"] / noop_run["rate"],
        op=">=",
        threshold=0.6,
        unit="x",
        note=(
            f"p50/p99 {serve_run['latency_p50_ms']:.2f}/{serve_run['latency_p99_ms']:.2f} ms "
            f"(do-nothing {noop_run['latency_p50_ms']:.2f}/"
            f"{noop_run['latency_p99_ms']:.2f} ms)"
        ),
    )
    if "resolver" in best:
        tls_run, resolver_run = best["serve-tls"], best["resolver"]
        results.target(
            "postfix-outbound-vs-mta-sts-resolver",
            OUTBOUND_VS_RESOLVER,
            measured=tls_run["rate"] / resolver_run["rate"],
            op=">=",
            threshold=1.0,
            unit="x",
            note=(
                f"p50/p99 {tls_run['latency_p50_ms']:.2f}/{tls_run['latency_p99_ms']:.2f} ms "
                f"(resolver {resolver_run['latency_p50_ms']:.2f}/"
                f"{resolver_run['latency_p99_ms']:.2f} ms)"
            ),
        )
    else:
        results.target(
            "postfix-outbound-vs-mta-sts-resolver",
            OUTBOUND_VS_RESOLVER,
            measured=None,
            op=">=",
            threshold=1.0,
            unit="x",
            note=resolver_note,
        )


def postfix_outbound_breakdown(
    results: Results, policy_path: Path, partners: Partners, *, quick: bool
) -> None:
    """Where one lookup's time goes, in process (CPU, warm pins stored as a probe would
    store them): the transport answer, the tlspolicy answer, the whole answer with its
    log line, and the ``asyncio.wait_for`` the service puts around each read and each
    drain. Uses the service's own classes."""
    from tlsconnector import load_policy
    from tlsconnector.adapters.postfix.outbound import HopLookup, NextHop, Pin
    from tlsconnector.adapters.postfix.server import JsonLog
    from tlsconnector.adapters.postfix.socketmap import OutboundService

    policy = load_policy(policy_path)
    repeat = 3 if quick else 5
    size = 2_000 if quick else 10_000
    transports = [f"user{n}@partner{n % OUTBOUND_PARTNERS}.example" for n in range(size)]
    hops = [f"[127.0.0.1]:{partners.ports[n % OUTBOUND_PARTNERS]}" for n in range(size)]
    mixed = [
        request
        for n in range(size // 2)
        for request in (f"transport {transports[n]}", f"tlspolicy {hops[n]}")
    ]
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        log = JsonLog(devnull)
        service = OutboundService(policy, policy_path=policy_path, log=log)
        now = dt.datetime.now(dt.UTC)
        for i, port in enumerate(partners.ports):
            hop = NextHop.parse(f"[127.0.0.1]:{port}")
            found = service.maps.next_hop(str(hop))
            if not isinstance(found, HopLookup) or policy.trust is None:
                raise RuntimeError(f"next hop {hop} is not served by the benchmark policy")
            leaf = partners.leaves[i].cert
            pin = Pin(partners.pin(i), leaf.not_valid_after_utc, "127.0.0.1", "127.0.0.1")
            service.cache.store(hop, found.connector, policy.trust.key, [pin], now)

        async def measure() -> dict[str, float]:
            log.attach(asyncio.get_running_loop())
            try:
                answer = await service.lookup("tlspolicy", hops[0])
                if answer.codes != ("pinned",):
                    raise RuntimeError(f"the warm pin was not used: {answer}")

                async def tls_lookups() -> None:
                    for key in hops:
                        await service.lookup("tlspolicy", key)

                async def answers() -> None:
                    for request in mixed:
                        await service._answer(request.encode(), "127.0.0.1:1")

                async def nothing() -> None:
                    return None

                async def waits() -> None:
                    for _ in hops:
                        await asyncio.wait_for(nothing(), 300.0)

                found: dict[str, float] = {}
                for name, run in (("tls", tls_lookups), ("answer", answers), ("wait", waits)):
                    best = math.inf
                    for _ in range(repeat):
                        started = time.process_time()
                        await run()
                        best = min(best, time.process_time() - started)
                    found[name] = best
                return found
            finally:
                log.detach()

        measured = asyncio.run(measure())
        transport = best_cpu(
            lambda: [service.maps.transport_answer(key) for key in transports], repeat=repeat
        )
    results.figure(
        "postfix-outbound.cpu.transport_us",
        transport / size * 1e6,
        "us",
        "OutboundMaps.transport_answer of a governed recipient",
    )
    results.figure(
        "postfix-outbound.cpu.tlspolicy_us",
        measured["tls"] / size * 1e6,
        "us",
        "OutboundService.lookup of a tlspolicy next hop with a warm pin",
    )
    results.figure(
        "postfix-outbound.cpu.answer_us",
        measured["answer"] / len(mixed) * 1e6,
        "us",
        "a request's whole answer (request parsed, looked up, JSON log line), the mix",
    )
    results.figure(
        "postfix-outbound.cpu.wait_for_us",
        measured["wait"] / size * 1e6,
        "us",
        "one asyncio.wait_for around an awaitable that is ready (the service makes two per "
        "request: the read and the drain)",
    )


def _bench_outbound_cold(
    results: Results, workdir: Path, serve: list[str], partners: Partners, *, quick: bool
) -> None:
    """A fresh service's first tlspolicy lookup (one probe of one next hop: connect,
    EHLO, STARTTLS, the chain judged), best of several fresh services; then, in the
    same service, the first lookup of another next hop (a probe with the code warm)
    and a repeated one (the pin)."""
    firsts: list[float] = []
    others: list[float] = []
    repeats: list[float] = []
    for run in range(2 if quick else 5):
        i, j = run % OUTBOUND_PARTNERS, (run + 1) % OUTBOUND_PARTNERS
        first = f"tlspolicy [127.0.0.1]:{partners.ports[i]}"
        other = f"tlspolicy [127.0.0.1]:{partners.ports[j]}"
        _log(f"socketmap cold lookup {run + 1}")
        with _server(serve, workdir / f"serve-outbound-cold-{run}.log") as address:
            took = _check_answers(
                address,
                {
                    first: f"OK fingerprint match={partners.pin(i)} servername=hostname",
                    other: f"OK fingerprint match={partners.pin(j)} servername=hostname",
                },
            )
            again = _check_answers(
                address, {first: f"OK fingerprint match={partners.pin(i)} servername=hostname"}
            )
        firsts.append(took[first])
        others.append(took[other])
        repeats.append(again[first])
    results.figure(
        "postfix-outbound.cold.first_lookup_ms",
        min(firsts) * 1000,
        "ms",
        "a fresh service's first tlspolicy lookup (one probe: connect, EHLO, STARTTLS, "
        "chain judged, pinned), best of the fresh services",
    )
    results.figure(
        "postfix-outbound.cold.first_lookup_median_ms",
        statistics.median(firsts) * 1000,
        "ms",
        "the same, median",
    )
    results.figure(
        "postfix-outbound.cold.first_lookups_ms",
        [round(t * 1000, 2) for t in firsts],
        "ms",
        "the same, every fresh service",
    )
    results.figure(
        "postfix-outbound.cold.other_hop_ms",
        min(others) * 1000,
        "ms",
        "the same service's first lookup of another next hop (one probe, code warm), best",
    )
    results.figure(
        "postfix-outbound.cold.repeated_ms",
        min(repeats) * 1000,
        "ms",
        "a repeated lookup of the first next hop on a new connection (the pin), best",
    )


# --------------------------------------------------------------------------------------
# The machine, the table, the file


def _narrowed(mapping: dict[str, Any]) -> dict[str, Any]:
    """The same policy with every tenth inbound connector restricted to one address
    (the docs' worked example, "narrowing a partner's IP list", at scale)."""
    inbound = []
    for i, table in enumerate(mapping["inbound"]):
        if i % 10 == 0:
            table = {
                **table,
                "restrict_domains_to_ip_addresses": True,
                "sender_ip_addresses": ["192.0.2.1"],
            }
        inbound.append(table)
    return {**mapping, "inbound": inbound}


def bench_diff(results: Results, workdir: Path, *, quick: bool) -> None:
    """``tlsconnector diff`` over recorded sessions against two 100,000-connector
    policies, with every core (issue: "Change a policy safely").

    The policies hold 100,000 inbound connectors and no outbound one: inbound
    sessions read only the inbound connectors, and a file with 100,000 of each
    direction (30 MB) is over the loader's 16 MiB bound, so the command refused it."""
    from benchmarks.generate import _mapping_toml, inbound_policy_mapping

    connectors = 10_000 if quick else 100_000
    count = 100_000 if quick else 1_000_000
    mapping = inbound_policy_mapping(connectors)
    old, new = workdir / "diff-old.toml", workdir / "diff-new.toml"
    old.write_text(_mapping_toml(mapping, None))
    new.write_text(_mapping_toml(_narrowed(mapping), None))
    results.figure(
        "diff.policy_file_mb", new.stat().st_size / 2**20, "MiB", "the new policy file"
    )
    sessions = workdir / "diff-sessions.jsonl"
    _log(f"diff: writing {count:,} sessions")
    with open(sessions, "w", encoding="utf-8") as handle:
        for start in range(0, count, 100_000):
            part = spread_inbound_session_facts(
                min(100_000, count - start), connectors=connectors, seed=start + 3
            )
            handle.writelines(session_lines(part))
    jobs = _available_cores()
    out = workdir / "diff.jsonl"
    argv = ["diff", "--old", str(old), "--new", str(new), "--inbound", str(sessions)]
    _log(f"diff: {count:,} sessions, {connectors:,}-connector policies, --jobs {jobs}")
    empty = workdir / "diff-empty.jsonl"
    empty.write_text("")
    _log("diff: start-up (interpreter, both policy loads, an empty file)")
    loads = ["diff", "--old", str(old), "--new", str(new), "--inbound", str(empty)]
    startups = [_cli_subprocess(loads, out) for _ in range(2)]
    if any(status != 0 for status, _, _ in startups):
        raise RuntimeError(f"diff on an empty file exited {[s for s, _, _ in startups]}")
    startup = min(wall for _, _, wall in startups)
    status, _, wall = _cli_subprocess([*argv, "--json", "--jobs", str(jobs)], out)
    changed = sum(1 for _ in out.open(encoding="utf-8"))
    if status not in (0, 1) or not changed:
        raise RuntimeError(f"diff exited {status} with {changed} changed sessions")
    results.figure("diff.wall_s", wall, "s", "the whole command, wall time (both loads included)")
    results.figure("diff.changed", changed, "", "sessions whose decision changes")
    results.figure(
        "diff.startup_s", startup, "s", "the same command on an empty file (best of two)"
    )
    results.figure(
        "diff.deciding_rate_per_core",
        count / max(wall - startup, 1e-9) / jobs,
        "/s",
        "sessions per second per core once both policies are loaded (wall time less start-up)",
    )
    results.target(
        "diff-rate-per-core",
        f"tlsconnector diff --jobs {jobs}, {count:,} sessions, two {connectors:,}-connector "
        "policies: sessions per second per core (wall time, whole command: interpreter "
        "start and both policy loads included)",
        measured=count / wall / jobs,
        op=">=",
        threshold=50_000,
        unit="/s",
        note=f"{changed:,} changed; exit status {status}",
    )


# --------------------------------------------------------------------------------------
# 10. Start-up: a command on a one-connector policy, and the import


_STARTUP_TARGET_S = 0.08


def _child_cpu(argv: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user and system) of one subprocess, from this process's
    ``RUSAGE_CHILDREN`` before and after it (every earlier child has been waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(  # noqa: S603 - our own interpreter and modules
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        check=True,
        cwd=ROOT,
        env=env,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_startup(results: Results, workdir: Path, *, quick: bool) -> None:
    """``python -m tlsconnector check`` on a policy of one connector, and ``python -c
    "import tlsconnector"`` beside it: CPU time of the whole subprocess, best of several.

    The connector has a wildcard scope and certificate name (``*.partner1.net``), so the
    command reads the Public Suffix List (the lint of the pattern, the rule against a
    wildcard over a public suffix). The children compile the project's modules once
    into a bytecode cache of their own (``PYTHONPYCACHEPREFIX`` in the work directory,
    never the source tree), as an installed package has; the first run, which fills
    it, is not counted. ``startup.check_no_bytecode_cache_cpu_s`` is the same command
    with every module of the source tree compiled on each run."""
    from benchmarks.generate import _mapping_toml, inbound_connector

    repeat = 3 if quick else 9
    wildcard = workdir / "policy-one-wildcard.toml"
    wildcard.write_text(_mapping_toml({"inbound": [inbound_connector(1)], "outbound": []}, None))
    exact = workdir / "policy-one-exact.toml"
    exact.write_text(_mapping_toml({"inbound": [inbound_connector(0)], "outbound": []}, None))
    # The README's shape: the same connector with [trust] ca_file, whose certificates
    # check parses (it imports cryptography; a figure, not the target's policy).
    (workdir / "startup-ca.pem").write_text(BenchPKI("ec-p256").trust_pem())
    trusting = workdir / "policy-one-trust.toml"
    trusting.write_text(
        _mapping_toml({"inbound": [inbound_connector(1)], "outbound": []}, "startup-ca.pem")
    )
    cached = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    uncached = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    uncached.pop("PYTHONPYCACHEPREFIX", None)
    commands = {
        "check": [sys.executable, "-m", "tlsconnector", "check", str(wildcard)],
        "check_exact": [sys.executable, "-m", "tlsconnector", "check", str(exact)],
        "check_trust": [sys.executable, "-m", "tlsconnector", "check", str(trusting)],
        "import": [sys.executable, "-c", "import tlsconnector"],
        "python": [sys.executable, "-c", "pass"],
    }
    _log(f"start-up: {', '.join(commands)}, best of {repeat} (CPU time)")
    for argv in commands.values():
        _child_cpu(argv, cached)  # fills the bytecode cache
    best = dict.fromkeys(commands, math.inf)
    for _ in range(repeat):  # interleaved, so that a busy moment weighs on every command
        for name, argv in commands.items():
            best[name] = min(best[name], _child_cpu(argv, cached))
    no_cache = min(_child_cpu(commands["check"], uncached) for _ in range(repeat))
    what = {
        "check": "python -m tlsconnector check on one connector with a wildcard scope and "
        "certificate name (*.partner1.net): the Public Suffix List is read",
        "check_exact": "the same with one connector of exact names (partner0.com, "
        "mail.partner0.com): the Public Suffix List is not read",
        "check_trust": "the wildcard connector with [trust] ca_file (one CA certificate): "
        "the CA file is parsed, so cryptography is imported",
        "import": 'python -c "import tlsconnector"',
        "python": 'python -c "pass": the interpreter alone, the floor of every figure',
    }
    for name, value in best.items():
        results.figure(
            f"startup.{name}_cpu_s", value, "s", f"{what[name]} (CPU time, best of {repeat})"
        )
    results.figure(
        "startup.check_no_bytecode_cache_cpu_s",
        no_cache,
        "s",
        f"the check command compiling the source tree's modules on each run (best of {repeat})",
    )
    results.figure(
        "startup.check_over_python",
        best["check"] / best["python"],
        "x",
        "the check command over the interpreter alone, in the same run: a ratio that moves "
        "much less with the machine's speed than the CPU seconds (each is a best of several "
        "runs, which may come at different moments)",
    )
    results.target(
        "startup-check",
        "tlsconnector check on a one-connector policy (wildcard names): CPU seconds of the "
        "whole command, interpreter start included, best of several",
        measured=best["check"],
        op="<=",
        threshold=_STARTUP_TARGET_S,
        unit="s",
        note=(
            f"import tlsconnector {best['import']:.3f} s, python alone {best['python']:.3f} s, "
            f"exact names {best['check_exact']:.3f} s, with [trust] ca_file "
            f"{best['check_trust']:.3f} s"
        ),
    )


# --------------------------------------------------------------------------------------
# 12. Revocation at scale: 10,000 CRLs holding 1,000,000 revoked serials (section 11)


def _revocation_facts(connector: int, pem: str) -> dict[str, Any]:
    """An inbound session presenting ``pem``, from ``connector``'s partner (as
    :func:`chain_facts`)."""
    return {
        "peer_ip": "198.51.100.7",
        "mail_from": f"sender@partner{connector}.com",
        "rcpt_to": ["user@contoso.com"],
        "tls": {"peer_chain_pem": pem},
        "at": NOW_TEXT,
    }


def crl_set_from_der(ders: Sequence[bytes]) -> CrlSet:
    """The set ``load_policy`` builds from ``[trust] crl_files`` holding ``ders``: each
    file decoded by ``load_crls``, each CRL indexed, the collector paused as there."""
    with _gc_paused():
        return CrlSet(
            RevocationList.from_crl(crl, "CRL file")
            for der in ders
            for crl in load_crls(der, "CRL file")
        )


def with_fresh_signatures(crls: CrlSet, issuers: set[bytes]) -> CrlSet:
    """The same CRLs, those of ``issuers`` (DER names) decoded again, so that no
    signature verdict is remembered for them (a set as it is just after a load)."""
    return CrlSet(
        RevocationList.from_crl(item.crl, "CRL") if item.issuer in issuers else item
        for item in crls.lists
    )


def _interleaved_cold(runs: dict[str, Callable[[], object]], *, repeat: int) -> dict[str, float]:
    """The least CPU time of each run over ``repeat`` rounds, the runs alternated within
    a round (so that a busy moment of a shared machine hits them alike), each from
    cold certificate caches."""
    best = dict.fromkeys(runs, math.inf)
    for _ in range(repeat):
        for name, run in runs.items():
            clear_certificate_caches()
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
    return best


def bench_revocation(results: Results, workdir: Path, pki: BenchPKI, *, quick: bool) -> None:
    """A decision with a presented chain under 10,000 CRLs (1,000,000 revoked serials)
    against the same decision without CRLs, and the one-off cost of loading them."""
    count, per_crl = (1_000, 100) if quick else (10_000, 100)
    serials = count * per_crl
    connectors = 1_000
    repeat = 3 if quick else 5
    # The chains first: the revoked leaves' serials go into their issuer's CRL.
    good = [
        _revocation_facts(connector, pem)
        for connector, pem in pki.chains(100 if quick else 200, connectors=connectors)
    ]
    revoked_leaves = [
        (connector, pki.leaf(connector))
        for connector in (connector_for_leaf(n, connectors) for n in range(50))
    ]
    revoked = [_revocation_facts(c, leaf.chain_pem()) for c, leaf in revoked_leaves]

    _log(f"minting {count:,} CRLs of {per_crl} revoked serials each")
    started = time.process_time()
    ders = mint_crls(
        count,
        per_crl,
        issuers=[pki.intermediate, pki.root],
        listed={0: [leaf.cert.serial_number for _, leaf in revoked_leaves]},
    )
    results.figure(
        "revocation.mint_cpu_s",
        time.process_time() - started,
        "s",
        f"minting {count:,} CRLs of {per_crl} serials (cryptography's CRL builder; not ours)",
    )
    results.figure("revocation.crls", count, "", "CRLs in the set")
    results.figure("revocation.serials", serials, "", "revoked serials over every CRL")
    results.figure(
        "revocation.der_mib", sum(map(len, ders)) / 2**20, "MiB", "the CRLs' DER, in all"
    )

    # (a) The one-off cost: the set as the loader builds it, in this process.
    _log("building the CRL set (decode and index every CRL)")
    gc.collect()
    started = time.process_time()
    crls = crl_set_from_der(ders)
    build_cpu = time.process_time() - started
    usable = sum(1 for item in crls.lists if item.unusable is None)
    indexed = sum(len(item.revoked) for item in crls.lists)
    if (len(crls), usable, indexed) != (count, count, serials):
        raise RuntimeError(f"the CRL set is not the one minted: {len(crls)}, {usable}, {indexed}")
    results.figure(
        "revocation.build_cpu_s",
        build_cpu,
        "s",
        "CrlSet from the DER of every CRL (load_crls, RevocationList.from_crl, CrlSet), CPU",
    )
    results.figure(
        "revocation.build_us_per_serial",
        build_cpu / serials * 1e6,
        "us",
        "of which per revoked serial",
    )
    # Memory, Python's part: tracemalloc slows the build tenfold, so it traces a tenth of
    # the CRLs (memory is linear in the serials) and scales by the serials.
    sample = ders[: max(1, count // 10)]
    gc.collect()
    tracemalloc.start()
    again = crl_set_from_der(sample)
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sampled = sum(len(item.revoked) for item in again.lists)
    del again
    gc.collect()
    results.figure(
        "revocation.traced_bytes_per_serial",
        kept / sampled,
        "B",
        f"Python memory a built set keeps per revoked serial (tracemalloc, {len(sample):,} "
        "CRLs; cryptography's own CRL objects are allocated outside its view)",
    )
    results.figure(
        "revocation.traced_kept_mib",
        kept / sampled * serials / 2**20,
        "MiB",
        f"the same for the {serials:,} serials of the set (scaled)",
    )
    results.figure(
        "revocation.traced_peak_vs_kept",
        peak / kept,
        "x",
        "tracemalloc peak while building / what the set keeps",
    )
    # The same through load_policy, in fresh interpreters: files read, peak RSS.
    (workdir / "revocation-ca.pem").write_text(pki.trust_pem())
    names = [f"crls/{name}" for name in write_crl_files(workdir / "crls", ders)]
    base = policy_toml(connectors, ca_file="revocation-ca.pem")
    without_path = workdir / "policy-revocation-none.toml"
    without_path.write_text(base)
    with_path = workdir / "policy-revocation.toml"
    with_path.write_text(crl_policy_toml(base, "revocation-ca.pem", names))
    _log(f"load_policy with {count:,} crl_files and without, in fresh interpreters")
    loaded = _load_run("time", with_path)
    plain_load = _load_run("time", without_path)
    results.figure(
        "revocation.load_policy_cpu_s",
        loaded["load_cpu_s"],
        "s",
        f"load_policy of {connectors:,}+{connectors:,} connectors and {count:,} crl_files "
        "(fresh interpreter, CPU)",
    )
    results.figure(
        "revocation.load_policy_none_cpu_s",
        plain_load["load_cpu_s"],
        "s",
        "the same policy without crl_files",
    )
    results.figure(
        "revocation.load_policy_peak_rss_mib",
        loaded["peak_rss_mb"],
        "MiB",
        "peak RSS of that load (VmHWM)",
    )
    results.figure(
        "revocation.load_policy_none_peak_rss_mib",
        plain_load["peak_rss_mb"],
        "MiB",
        "peak RSS of the load without crl_files",
    )

    # (b), (c) Decisions, each chain new (cold certificate caches), against no CRLs.
    trust = TrustStore.from_pem(pki.trust_pem())
    plain = Policy.from_mapping(policy_mapping(connectors), trust=trust)
    checked = attrs.evolve(plain, trust=trust.with_crls(crls))

    def decide(policy: Policy, facts: dict[str, Any]) -> Any:
        return evaluate_inbound(policy, InboundSession.from_json(facts))

    issuers = {pki.intermediate.subject.public_bytes(), pki.root.subject.public_bytes()}
    _log("first decisions after a load (each CRL's signature checked once)")
    first = {"none": math.inf, "crls": math.inf}
    decide(plain, good[-1])  # the code's own first use, paid by neither side
    for n in range(3 * repeat):
        fresh = attrs.evolve(plain, trust=trust.with_crls(with_fresh_signatures(crls, issuers)))
        sides = [("none", plain), ("crls", fresh)]
        for name, policy in sides if n % 2 else sides[::-1]:
            clear_certificate_caches()
            started = time.process_time()
            decision = decide(policy, good[n % len(good)])
            first[name] = min(first[name], time.process_time() - started)
            if str(decision.action) != "accept":
                raise RuntimeError(f"a good chain was not accepted ({name}): {decision}")
        # Evidence that the decision read the issuer's CRL and checked its signature.
        assert fresh.trust is not None
        remembered = fresh.trust.crls.for_issuer(pki.intermediate.subject.public_bytes())
        if not remembered or True not in remembered[0]._signers.values():
            raise RuntimeError("the first decision did not check the issuer's CRL signature")
    issuer_crl = crls.for_issuer(pki.intermediate.subject.public_bytes())[0].crl
    issuer_key = pki.intermediate.cert.public_key()
    signature_s = (
        best_cpu(
            lambda: [issuer_crl.is_signature_valid(issuer_key) for _ in range(200)],  # type: ignore[arg-type]
            repeat=3,
        )
        / 200
    )
    decide(checked, good[0])  # the signature verdicts of the set measured below

    _log("repeated decisions (signatures remembered), good and revoked leaves")
    best = _interleaved_cold(
        {
            "none": lambda: [decide(plain, f) for f in good],
            "crls": lambda: [decide(checked, f) for f in good],
            "revoked-none": lambda: [decide(plain, f) for f in revoked],
            "revoked-crls": lambda: [decide(checked, f) for f in revoked],
        },
        repeat=repeat,
    )
    for facts in good:
        if str(decide(checked, facts).action) != "accept":
            raise RuntimeError("a chain its issuer's CRL does not list was not accepted")
    for facts in revoked:
        if str(decide(plain, facts).action) != "accept":
            raise RuntimeError("a chain was refused without CRLs")
        decision = decide(checked, facts)
        codes = {str(reason.code) for reason in decision.reasons}
        if str(decision.action) == "accept" or "certificate-revoked" not in codes:
            raise RuntimeError(f"a revoked leaf was not refused as revoked: {decision}")
    per = {
        "none": best["none"] / len(good),
        "crls": best["crls"] / len(good),
        "revoked-none": best["revoked-none"] / len(revoked),
        "revoked-crls": best["revoked-crls"] / len(revoked),
    }
    # The revocation check alone on one path (leaf, intermediate, root), in a loop.
    path = [revoked_leaves[0][1].cert, pki.intermediate.cert, pki.root.cert]
    good_path = [PresentedChain.from_pem(good[0]["tls"]["peer_chain_pem"]).leaf, *path[1:]]
    if (
        check_revocation(good_path, crls, NOW).revoked
        or not check_revocation(path, crls, NOW).revoked
    ):
        raise RuntimeError("check_revocation does not answer as the CRLs say")
    loops = 2_000 if quick else 10_000
    check_us = per_decision(lambda p: check_revocation(p, crls, NOW), [good_path] * loops, repeat=3)
    check_none_us = per_decision(
        lambda p: check_revocation(p, NO_CRLS, NOW), [good_path] * loops, repeat=3
    )
    for key, value, what in (
        ("first_none_us", first["none"], "first decision of a new chain, no CRLs"),
        ("crl_signature_us", signature_s, "one check of the issuer's CRL signature"),
        (
            "first_crls_us",
            first["crls"],
            "the same just after the load: each CRL's signature checked",
        ),
        ("decision_none_us", per["none"], "decision of a new chain (cold caches), no CRLs"),
        ("decision_crls_us", per["crls"], f"the same under {count:,} CRLs (signatures remembered)"),
        ("revoked_none_us", per["revoked-none"], "decision of a new chain its CA revoked, no CRLs"),
        (
            "revoked_crls_us",
            per["revoked-crls"],
            f"the same under {count:,} CRLs: refused as revoked",
        ),
        ("check_us", check_us, f"check_revocation of a 3-certificate path, {count:,} CRLs"),
        ("check_none_us", check_none_us, "check_revocation of the same path, no CRLs"),
    ):
        results.figure(f"revocation.{key}", value * 1e6, "us", what)
    results.figure(
        "revocation.first_vs_none", first["crls"] / first["none"], "x", "first decision / none"
    )
    results.figure(
        "revocation.revoked_vs_none",
        per["revoked-crls"] / per["revoked-none"],
        "x",
        "decision of a revoked leaf under the CRLs / the same chain without CRLs",
    )
    results.target(
        "revocation-lookup-vs-none",
        f"inbound decision of a new chain (cold caches) under {count:,} CRLs holding "
        f"{serials:,} revoked serials / the same without CRLs",
        measured=per["crls"] / per["none"],
        op="<=",
        threshold=1.2,
        unit="x",
        note=(
            f"first decision after the load {first['crls'] / first['none']:.2f} x; revoked "
            f"leaf {per['revoked-crls'] / per['revoked-none']:.2f} x; set built in "
            f"{build_cpu:.1f} s"
        ),
    )


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
    }


def table(results: Results) -> str:
    rows = [("target", "wanted", "measured", "status")]
    for target in results.targets:
        measured = target["measured"]
        rows.append(
            (
                target["id"],
                target["target"],
                "-" if measured is None else f"{_fmt(measured)} {target['unit']}".strip(),
                target["status"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(document: dict[str, Any]) -> str:
    """The targets of a results document as a Markdown table (for docs/performance.md)."""
    lines = ["| target | wanted | measured | status |", "|---|---|---|---|"]
    for target in document["targets"]:
        measured = target["measured"]
        shown = "-" if measured is None else f"{_fmt(measured)} {target['unit']}".strip()
        lines.append(
            f"| `{target['id']}`: {target['description']} | {target['target']} | {shown} "
            f"| {target['status']} |"
        )
    return "\n".join(lines)


BENCHMARKS = (
    "decisions",
    "certificates",
    "load",
    "lint",
    "cli",
    "postfix",
    "postfix-outbound",
    "diff",
    "startup",
    "revocation",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run tlsconnector's benchmarks.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="repeatable")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--markdown", type=Path, metavar="RESULTS", help="only print RESULTS as a Markdown table"
    )
    args = parser.parse_args(argv)
    if args.markdown is not None:
        print(markdown(json.loads(args.markdown.read_text(encoding="utf-8"))))
        return 0
    chosen = args.only or list(BENCHMARKS)
    results = Results()
    started = time.perf_counter()
    # The CAs have RSA keys, as most public CAs (whose certificates partners present)
    # do; chain costs are also measured with EC P-256 CAs, for comparison.
    pki = BenchPKI("rsa-2048")
    with tempfile.TemporaryDirectory(prefix="tlsconnector-bench-") as temp:
        workdir = Path(temp)
        if "decisions" in chosen:
            bench_decisions(results, quick=args.quick)
            gc.collect()
        if "certificates" in chosen:
            bench_certificates(results, pki, quick=args.quick)
            gc.collect()
        if "load" in chosen:
            bench_load(results, workdir, pki, quick=args.quick)
        if "lint" in chosen:
            bench_lint(results, workdir, pki, quick=args.quick)
        if "cli" in chosen:
            bench_cli(results, workdir, pki, quick=args.quick)
        # Last: the policy service is the newest part of the tree.
        if "postfix" in chosen:
            bench_postfix(results, workdir, pki, quick=args.quick)
        if "postfix-outbound" in chosen:
            bench_postfix_outbound(results, workdir, pki, quick=args.quick)
        if "diff" in chosen:
            bench_diff(results, workdir, quick=args.quick)
        if "startup" in chosen:
            bench_startup(results, workdir, quick=args.quick)
        if "revocation" in chosen:
            bench_revocation(results, workdir, pki, quick=args.quick)
    document = {
        "generated": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "quick": args.quick,
        "machine": machine(),
        "duration_s": round(time.perf_counter() - started, 1),
        "summary": {
            "passed": sum(1 for t in results.targets if t["status"] == "pass"),
            "failed": sum(1 for t in results.targets if t["status"] == "fail"),
            "not_measured": sum(1 for t in results.targets if t["status"] == "not-measured"),
        },
        "targets": results.targets,
        "figures": results.figures,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    print()
    summary = document["summary"]
    print(
        f"targets met: {summary['passed']}, missed: {summary['failed']}, not measured: "
        f"{summary['not_measured']}; every figure is in {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
