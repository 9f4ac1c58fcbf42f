"""Start-up: what a command imports and builds, and the Public Suffix List's fast path.

No timing here (timing belongs in benchmarks/run.py, step ``startup``): these tests pin
the things that make the start-up fast, and that each of them changes no answer.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import publicsuffixlist
import pytest

import tlsconnector
from tlsconnector import _names
from tlsconnector.cli import parser as cli_parser

ROOT = Path(__file__).resolve().parent.parent

INIT = Path(tlsconnector.__file__)


def _modules_after(code: str) -> list[str]:
    """The tlsconnector and cryptography modules a fresh interpreter holds after ``code``."""
    probe = (
        f"{code}\nimport sys\n"
        "print('\\n'.join(sorted(m for m in sys.modules "
        "if m.startswith(('tlsconnector.', 'cryptography')))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.split()


# --------------------------------------------------------------------------------------
# import tlsconnector: the public names are imported on first use


def test_import_tlsconnector_imports_no_module_of_the_package() -> None:
    assert [] == _modules_after("import tlsconnector")


def test_a_public_name_imports_its_module_on_first_use() -> None:
    loaded = _modules_after("import tlsconnector; tlsconnector.canonical_domain")
    assert "tlsconnector._names" in loaded
    assert not any(m.startswith("cryptography") for m in loaded)


def test_the_lazy_table_names_the_modules_type_checkers_read() -> None:
    """``_EXPORTS`` (run time) and the TYPE_CHECKING imports (type checkers) agree."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module != "typing":
                    assert statement.module is not None
                    module = ("tlsconnector." if statement.level else "") + statement.module
                    imported.update((alias.name, module) for alias in statement.names)
    assert imported == tlsconnector._EXPORTS
    assert set(imported) == set(tlsconnector.__all__)


@pytest.mark.parametrize("name", tlsconnector.__all__)
def test_every_public_name_is_the_object_of_its_module(name: str) -> None:
    module = sys.modules.get(tlsconnector._EXPORTS[name]) or __import__(
        tlsconnector._EXPORTS[name], fromlist=[name]
    )
    assert getattr(tlsconnector, name) is getattr(module, name)
    assert name in dir(tlsconnector)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="'tlsconnector' has no attribute 'load_polcy'"):
        tlsconnector.load_polcy  # type: ignore[attr-defined]  # noqa: B018


# --------------------------------------------------------------------------------------
# The command line builds and imports only the command it runs


def test_check_does_not_import_the_probe_or_the_outbound_decisions(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(
        '[[inbound]]\nname = "a"\nsender_domains = ["*.partner.net"]\n'
        'tls_sender_certificate_name = "*.partner.net"\n',
        encoding="utf-8",
    )
    loaded = _modules_after(
        f"from tlsconnector.cli import main\nassert main(['check', {str(policy)!r}]) == 0"
    )
    assert "tlsconnector.policy_file.lint" in loaded  # the command did run
    for heavy in (
        "tlsconnector.adapters._probe",
        "tlsconnector.adapters.smtp",
        "tlsconnector._outbound",
        "tlsconnector._validation",
        "tlsconnector._decisions",
        "tlsconnector._chains",
        "tlsconnector._revocation",
        "tlsconnector.policy_file.schema",
    ):
        assert heavy not in loaded
    # Nor cryptography: a policy without [trust] files needs no certificate code, and
    # check reads no system CA bundle (load_policy_for_lint).
    assert not any(m.startswith("cryptography") for m in loaded)


def _shape(parser: argparse.ArgumentParser) -> list[object]:
    """Everything parsing depends on and help shows, sub-commands included."""
    shape: list[object] = [parser.prog, parser.description, parser.usage]
    for action in parser._actions:
        shape.append(
            (
                type(action).__name__,
                tuple(action.option_strings),
                action.dest,
                repr(action.default),
                action.type,
                action.nargs,
                action.required,
                action.help,
                action.metavar,
                action.const,
            )
        )
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                shape.append((name, _shape(sub)))
    shape.append(parser._defaults)
    return shape


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


def test_every_command_has_a_builder() -> None:
    assert set(_subcommands(cli_parser.build_parser())) == set(cli_parser._BUILDERS)


@pytest.mark.parametrize("command", sorted(cli_parser._BUILDERS))
def test_a_command_built_alone_is_the_command_built_with_all(command: str) -> None:
    full = _subcommands(cli_parser.build_parser())
    alone = _subcommands(cli_parser.build_parser(command))
    assert command in alone
    assert _shape(alone[command]) == _shape(full[command])


@pytest.mark.parametrize("word", [None, "--help", "-h", "chekc", "--"])
def test_any_other_first_word_builds_every_command(word: str | None) -> None:
    assert set(_subcommands(cli_parser.build_parser(word))) == set(cli_parser._BUILDERS)


def test_version_builds_no_command_and_imports_no_decision_or_loader() -> None:
    assert {} == _subcommands(cli_parser.build_parser("--version"))
    loaded = _modules_after(
        "from tlsconnector.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as exc:\n    assert exc.code == 0"
    )
    assert "tlsconnector.cli.parser" in loaded  # the command line did run
    for heavy in ("tlsconnector._decisions", "tlsconnector._model", "tlsconnector.adapters._probe"):
        assert heavy not in loaded


def test_help_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from tlsconnector.cli import main

    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    shown = {line.split()[0] for line in listed.splitlines() if line.startswith("    ")}
    assert set(cli_parser._BUILDERS) <= shown


# --------------------------------------------------------------------------------------
# The Public Suffix List: the ASCII fast path answers as publicsuffixlist does


def _rules() -> list[str]:
    """Every rule of the installed list, as publicsuffixlist reads them."""
    text = Path(publicsuffixlist.PSLFILE).read_text(encoding="utf-8")
    found = []
    for line in text.split("\n"):
        rule = line.lower().split(" ")[0].rstrip()
        if rule and not rule.startswith("//"):
            found.append(rule)
    return found


def _names_around(rule: str) -> set[str]:
    """Names whose answer the rule decides or bounds: the rule's own name, a child, a
    grandchild and the parent, for wildcards and exceptions too, in A-labels."""
    body = rule.lstrip("!")
    if body.startswith("*."):
        body = body[2:]
    names = set()
    for base in (body, publicsuffixlist.encode_idn(body)):
        if not base.isascii():
            continue
        parent = base.partition(".")[2]
        names |= {base, f"x.{base}", f"y.x.{base}", f"www.{base}", parent}
        if "." in parent:
            names.add(f"z.{parent}")
    return {name for name in names if name}


def test_the_fast_path_answers_as_publicsuffixlist_for_every_rule() -> None:
    reference = publicsuffixlist.PublicSuffixList(only_icann=False)
    rules = _rules()
    assert len(rules) > 5_000  # the real list, not an empty file
    names = set().union(*map(_names_around, rules))
    names |= {
        "com",
        "co.uk",
        "a.co.uk",
        "github.io",
        "x.github.io",
        "s3.amazonaws.com",
        "ck",
        "www.ck",
        "x.www.ck",
        "kawasaki.jp",
        "city.kawasaki.jp",
        "x.city.kawasaki.jp",
        "unknowntld",
        "a.unknowntld",
    }
    # Every name against the rules parsed as the package parses them (fast)...
    text = _names._psl_text()
    parsed = {idn: _names._rules_for(*_names._read_rules(text), idn=idn) for idn in (False, True)}

    def fast(name: str) -> bool:
        return _names._is_public_ascii(name.rstrip(".").lower(), parsed["xn--" in name])

    differing = [name for name in sorted(names) if fast(name) != reference.is_public(name)]
    assert [] == differing
    # Both answers occur (the comparison is not vacuous).
    assert {True, False} == {fast(name) for name in names}
    # ...the text search finds every rule the parse finds, and none it does not...
    listed = _names._psl_rules(False)
    plain = [rule for rule in parsed[False] if "xn--" not in rule]
    assert all(rule in listed for rule in plain)
    nearby = {near for rule in plain[::20] for near in (f"{rule}x", f"x{rule}", rule[:-1])}
    assert all((near in listed) == (near in parsed[False]) for near in nearby)
    # ...and is_public_suffix itself answers as the package on a spread of the names.
    sample = sorted(names)[::25]
    assert [] == [n for n in sample if _names.is_public_suffix(n) != reference.is_public(n)]


@pytest.mark.parametrize(
    ("name", "public"),
    [
        ("co.uk", True),
        ("CO.UK", True),  # ASCII case folded
        ("co.uk.", True),  # one trailing dot ignored, as publicsuffixlist does
        ("fabrikam.co.uk", False),
        ("github.io", True),  # the private section counts
        ("ck", True),
        ("x.ck", True),  # *.ck
        ("www.ck", False),  # !www.ck
        ("city.kawasaki.jp", False),  # !city.kawasaki.jp under *.kawasaki.jp
        ("kawasaki.jp", True),  # the implicit root of a wildcard
        ("xn--55qx5d.cn", True),  # an IDN rule (公司.cn) in A-labels
        ("nosuchtld", True),  # unknown top-level labels are public
        ("a.nosuchtld", False),
        ("a..com", False),
        ("", False),
    ],
)
def test_public_suffix_examples(name: str, public: bool) -> None:
    assert _names.is_public_suffix(name) is public
    reference = publicsuffixlist.PublicSuffixList(only_icann=False)
    assert reference.is_public(name.lower()) is public or name == ""


def test_a_non_ascii_name_is_asked_of_publicsuffixlist_itself() -> None:
    assert _names.is_public_suffix("公司.cn") is True
    assert _names.is_public_suffix("example.公司.cn") is False


def test_wildcards_over_public_suffixes_are_still_refused() -> None:
    for text in ("*.co.uk", "*.github.io", "*.x.ck", "*.kawasaki.jp", "*.xn--55qx5d.cn"):
        with pytest.raises(_names.InvalidValue, match="public suffix"):
            _names.CertificateName.parse(text)
    assert _names.CertificateName.parse("*.www.ck").text == "*.www.ck"
    assert not _names.usable_cn("*.co.uk")
    assert _names.usable_cn("*.fabrikam.co.uk")


# A list of the package's format with rules the codec turns into plain ASCII (fullwidth
# letters, an ideographic full stop), an ordinary IDN rule, a wildcard and an exception.
_SYNTHETIC_LIST = (
    "// ===BEGIN ICANN DOMAINS===\n"
    "\uff46\uff55\uff4c\uff4c.example\n"
    "co\u3002zz\n"
    "\u516c\u53f8.zz\n"
    "*.wild\n"
    "!www.wild\n"
    "Upper.Case  comment after a space\n"
    "tab.example\t\n"
)


@pytest.mark.parametrize(
    "name",
    [
        "full.example",
        "a.full.example",
        "co.zz",
        "a.co.zz",
        "xn--55qx5d.zz",
        "a.xn--55qx5d.zz",
        "x.wild",
        "www.wild",
        "a.www.wild",
        "upper.case",
        "tab.example",
        "example",
        "a.example",
    ],
)
def test_the_fast_path_meets_rules_the_codec_makes_plain(name: str) -> None:
    """Only non-ASCII rules the codec may turn into plain ASCII are encoded for a name
    without an xn-- label; those it does are still met (fullwidth, ideographic stop)."""
    import io

    ascii_rules, other = _names._read_rules(_SYNTHETIC_LIST)
    rules = _names._rules_for(ascii_rules, other, idn="xn--" in name)
    reference = publicsuffixlist.PublicSuffixList(
        source=io.BytesIO(_SYNTHETIC_LIST.encode("utf-8")), only_icann=False
    )
    assert _names._is_public_ascii(name, rules) is reference.is_public(name)
    if "xn--" not in name:  # the text search answers as the parsed rules do
        listed = _names._ListedRules(_SYNTHETIC_LIST.encode("utf-8"))
        assert _names._is_public_ascii(name, listed) is reference.is_public(name)


def test_the_text_search_finds_a_rule_only_as_a_whole_first_word() -> None:
    listed = _names._ListedRules(
        b"ab.cd\nxab.cd\nef.gh extra words\nij.kl\t\r\n// mn.op\nqr.st.uv\nUP.case\n"
        b"\xe2\x84\xaaelvin.sign\nsep.x\x1c\nnbsp.x\xc2\xa0\n"
    )
    assert "ab.cd" in listed
    assert "ef.gh" in listed  # a space ends the word
    assert "ij.kl" in listed  # trailing white space is no part of it
    assert "up.case" in listed  # lower-cased as the package lower-cases
    assert "kelvin.sign" in listed  # U+212A KELVIN SIGN lower-cases to k
    assert "sep.x" in listed  # str.isspace() white space that bytes.isspace() is not
    assert "nbsp.x" in listed  # non-ASCII white space, rstrip()ped
    for absent in ("b.cd", "ab.c", "mn.op", "qr.st", "st.uv", "extra", "UP.case"):
        assert absent not in listed


@pytest.mark.parametrize("searches", [0, 1000])
def test_the_searched_and_the_parsed_rules_agree(searches: int) -> None:
    """The first rules asked about are searched for, the later ones looked up in the
    set of first words: both answer alike (SEARCHES 0: the set at once)."""
    data = b"ab.cd\nxab.cd\nef.gh extra\nij.kl\t\r\n// mn.op\n!www.qr\n*.qr\n\xe2\x84\xaaz.y\n"
    listed = _names._ListedRules(data)
    listed.SEARCHES = searches
    for rule in ("ab.cd", "ef.gh", "ij.kl", "!www.qr", "*.qr", "kz.y"):
        assert rule in listed
    for rule in ("b.cd", "extra", "mn.op", "// mn.op", "qr", "www.qr", "ab.cd\t"):
        assert rule not in listed


def test_the_plain_test_keeps_exactly_the_rules_the_codec_makes_plain() -> None:
    _, other = _names._read_rules(_SYNTHETIC_LIST)
    kept = sorted(rule for rule in other if _names._may_encode_plain(rule))
    assert ["co\u3002zz", "\uff46\uff55\uff4c\uff4c.example"] == kept
    for rule in other:  # the test is never wrong the other way
        if not _names._may_encode_plain(rule):
            assert "xn--" in rule.encode("idna").decode("ascii")


@pytest.mark.parametrize("columns", [None, "50", "0", "-3", "wide"])
def test_the_help_width_is_the_one_shutil_tells(
    columns: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parser's formatter looks the width up without shutil, with the same answer."""
    import shutil

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert shutil.get_terminal_size().columns == cli_parser._columns()
    ours = cli_parser.build_parser("check")
    stock = argparse.ArgumentParser(prog="tlsconnector", description=ours.description)
    stock.add_argument("--version", help="print the installed version and exit")
    assert ours.format_usage().split()[:2] == stock.format_usage().split()[:2]
    formatter = ours._get_formatter()
    assert formatter._width == argparse.HelpFormatter("x")._width


def test_check_imports_neither_shutil_nor_pathlib(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[[inbound]]\nname = "a"\nsender_domains = ["partner.net"]\n')
    probe = (
        "import sys\nfrom tlsconnector.cli import main\n"
        f"assert main(['check', {str(policy)!r}]) == 0\n"
        "print('loaded:', *(m for m in ('shutil', 'pathlib', 'json') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert "loaded:" == done.stdout.splitlines()[-1].strip()


def test_the_plain_characters_are_those_nameprep_maps_to_ascii() -> None:
    """_PLAIN_NON_ASCII, recomputed from the idna codec's own tables over every code
    point: nameprep (stringprep B.1, B.2, NFKC of Unicode 3.2) maps exactly these to
    nothing or ASCII, besides the three full stops the codec splits labels at."""
    import re
    import stringprep
    import unicodedata

    plain = re.compile(f"[{_names._PLAIN_NON_ASCII}]")
    for code in range(0x80, 0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        mapped = "" if stringprep.in_table_b1(char) else stringprep.map_table_b2(char)
        expected = (
            char in "\u3002\uff0e\uff61"
            or unicodedata.ucd_3_2_0.normalize("NFKC", mapped).isascii()
        )
        assert expected == bool(plain.fullmatch(char)), hex(code)
        # ... and the set the fast path asks holds exactly these besides ASCII.
        assert expected == (char in _names._plain_characters()), hex(code)
    assert all(chr(code) in _names._plain_characters() for code in range(0x80))


def test_the_list_file_is_found_and_decoded_as_publicsuffixlist_does() -> None:
    """The list file is read without importing publicsuffixlist (start-up): its
    location and decoding are the package's own."""
    assert _names._psl_file() == publicsuffixlist.PSLFILE
    assert (_names._PSL_ENCODING, _names._PSL_ERRORS) == (
        publicsuffixlist.ENCODING,
        publicsuffixlist.ERRORMODE,
    )


def test_check_does_not_import_publicsuffixlist(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[inbound]]\nname = "w"\nsender_domains = ["*.partner1.net"]\n'
        'tls_sender_certificate_name = "*.partner1.net"\n'
    )
    probe = (
        "import sys\nfrom tlsconnector.cli import main\n"
        f"assert main(['check', {str(policy)!r}]) == 0\n"
        "import tlsconnector._names as names\n"
        "assert names._psl_data.cache_info().currsize == 1\n"  # the list was read
        "print('loaded:', 'publicsuffixlist' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.splitlines()[-1].strip() == "loaded: False"


# --------------------------------------------------------------------------------------
# The collector paused while the command line is imported and while check runs


def test_the_collector_is_as_it_was_after_a_command(tmp_path: Path) -> None:
    import gc

    from tlsconnector.cli import main

    policy = tmp_path / "policy.toml"
    policy.write_text('[[inbound]]\nname = "a"\nsender_domains = ["partner.com"]\n')
    assert gc.isenabled()
    assert main(["check", str(policy)]) == 0
    assert gc.isenabled()
    gc.disable()
    try:
        assert main(["check", str(policy)]) == 0
        assert not gc.isenabled()  # a caller's own setting is kept
    finally:
        gc.enable()


def test_paused_collection_nests_and_resumes_once() -> None:
    import gc

    from tlsconnector._gc import gc_paused

    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("a failing block resumes collection too")
    assert gc.isenabled()


def test_the_console_script_and_python_m_run_the_same_entry() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"tlsconnector": "tlsconnector._entry:run"}
    done = subprocess.run(
        [sys.executable, "-m", "tlsconnector", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.startswith("tlsconnector ")
