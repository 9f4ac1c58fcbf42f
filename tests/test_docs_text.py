"""The documentation's Markdown sources say what a reader needs, consistently.

These tests read docs/*.md (and the docs' CSS and Sphinx configuration) as text, so they
run in `make test` without the docs extra; tests/test_docs_html.py judges the built HTML.
Each property is checked on the real pages, and each checker is also fed small broken
texts (or a real page with one thing changed) to show that it would notice.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
POSTFIX_PAGE = DOCS / "postfix.md"
TUTORIAL_PAGE = DOCS / "tutorial.md"
SPEC_PAGE = DOCS / "specification.md"
CODE_CSS = DOCS / "_static" / "code.css"
CONF_PY = DOCS / "conf.py"


# --- reading Markdown -------------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string, the page line of its first content line,
    and its content (the fence's indentation removed)."""

    info: str
    line: int
    text: str


def _scan(page: str) -> tuple[list[Block], str]:
    """The page's fenced code blocks, and the page with everything that is not rendered
    prose blanked out character for character (newlines kept, so offsets and line
    numbers stay the page's): fenced code blocks (``` or ~~~ at any indentation, as in
    list items; one left open runs to the end of the page, as in CommonMark), HTML
    comments (in which a fence is only text) and inline code spans."""
    masked = list(page)

    def blank(start: int, end: int) -> None:
        for position in range(start, end):
            if masked[position] != "\n":
                masked[position] = " "

    blocks: list[Block] = []
    fence: tuple[re.Pattern[str], int, str, int, list[str]] | None = None
    in_comment = False
    offset = 0
    for number, line in enumerate(page.split("\n"), start=1):
        end = offset + len(line)
        if fence is not None:
            closing, indent, info, first, body = fence
            blank(offset, end)
            if closing.match(line):
                blocks.append(Block(info, first, "\n".join(body)))
                fence = None
            else:
                body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            offset = end + 1
            continue
        opening = None if in_comment else _FENCE.match(line)
        if opening is not None and not (opening["fence"][0] == "`" and "`" in opening["info"]):
            marks = opening["fence"]
            closing = re.compile(rf"^[ \t]*{re.escape(marks[0])}{{{len(marks)},}}[ \t]*$")
            fence = (closing, len(opening["indent"]), opening["info"].strip(), number + 1, [])
            blank(offset, end)
            offset = end + 1
            continue
        position = offset
        while position <= end:
            if in_comment:
                close = page.find("-->", position, end)
                stop = end if close < 0 else close + 3
                blank(position, stop)
                in_comment = close < 0
                position = stop if close >= 0 else end + 1
            else:
                start = page.find("<!--", position, end)
                if start < 0:
                    break
                in_comment, position = True, start
        offset = end + 1
    if fence is not None:
        _, _, info, first, body = fence
        blocks.append(Block(info, first, "\n".join(body)))
    text = "".join(masked)
    # Inline code: a run of backticks up to the same run (CommonMark), within a paragraph.
    for code in re.finditer(r"(?<!`)(`+)(?!`)(?:(?!\n[ \t]*\n).)+?(?<!`)\1(?!`)", text, re.S):
        blank(code.start(), code.end())
    return blocks, "".join(masked)


def fenced_blocks(page: str) -> list[Block]:
    return _scan(page)[0]


def prose(page: str) -> str:
    return _scan(page)[1]


def line_of(page: str, offset: int) -> int:
    return page.count("\n", 0, offset) + 1


def logical_lines(block: str) -> Iterator[str]:
    """A shell block's commands: lines joined at a trailing backslash."""
    yield from re.sub(r"\\\n", " ", block).split("\n")


def main_cf_settings(block: str) -> dict[str, str]:
    """``name = value`` lines of a main.cf text (a line starting with white space
    continues the one before, ``#`` starts a comment line); a later line wins."""
    settings: dict[str, str] = {}
    name = None
    for line in block.split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t" and name is not None:
            settings[name] = f"{settings[name]} {line.strip()}".strip()
            continue
        match = re.match(r"^(\w+)\s*=\s*(.*)$", line)
        name = match[1] if match else None
        if match:
            settings[match[1]] = match[2].strip()
    return settings


def postconf_settings(block: str) -> dict[str, str]:
    """The settings a shell block's ``postconf -e 'name = value' ...`` commands make."""
    settings: dict[str, str] = {}
    for command in logical_lines(block):
        try:
            words = shlex.split(command, comments=True)
        except ValueError:
            continue
        if words[:1] != ["postconf"] or "-e" not in words:
            continue
        for word in words:
            match = re.match(r"^(\w+)\s*=\s*(.*)$", word, flags=re.S)
            if match:
                settings[match[1]] = match[2].strip()
    return settings


def shell_commands(block: str) -> Iterator[list[str]]:
    for command in logical_lines(block):
        try:
            words = shlex.split(command, comments=True)
        except ValueError:
            continue
        if words:
            yield words


def section(page: str, heading: str) -> str:
    """The text under the first heading that starts with ``heading`` (its level or
    deeper), up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}.*$", page, flags=re.M)
    assert match is not None, f"no heading {heading!r}"
    level = len(match[1])
    rest = page[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.M)
    return rest[: end.start()] if end else rest


# --- link texts are titles, not file names ---------------------------------------------

_LINK_IN_SOURCE = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]*)\)")


def md_link_text_problems(name: str, page: str) -> list[str]:
    """Links outside code whose visible text is a Markdown file name (``[lint.md](...)``,
    ``[`docs/lint.md`](...)``, ``[lint.md#codes](...)``): a link reads as the page's
    title. tools/check_docs_html.py checks the same in the built HTML; this covers
    README.md too, which is not built."""
    masked = prose(page)
    problems = []
    for link in _LINK_IN_SOURCE.finditer(page):
        if masked[link.start()] != "[":  # in code or a comment
            continue
        text = link["text"].strip().strip("`*_ ").strip()
        if re.search(r"\.md(?:#\S*)?$", text, flags=re.IGNORECASE):
            problems.append(f"{name}:{line_of(page, link.start())}: {link[0]}")
    return problems


@pytest.mark.parametrize(
    "page", [*sorted(DOCS.glob("*.md")), ROOT / "README.md"], ids=lambda page: page.name
)
def test_link_texts_are_not_file_names(page: Path) -> None:
    problems = md_link_text_problems(page.name, page.read_text(encoding="utf-8"))
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(
    ("snippet", "found"),
    [
        ("See [policy-file.md](policy-file.md).", True),
        ("See [`docs/policy-file.md`](docs/policy-file.md).", True),
        ("See [**lint.MD#codes**](lint.md#codes).", True),
        ("See [Policy file](policy-file.md) (docs/policy-file.md).", False),
        ("```\n[policy-file.md](policy-file.md)\n```", False),
        ("<!-- [policy-file.md](policy-file.md) -->", False),
        ("Run `echo [x.md](x.md)`.", False),
    ],
)
def test_a_md_link_text_in_a_source_is_caught(snippet: str, found: bool) -> None:
    assert bool(md_link_text_problems("x.md", snippet)) is found


# --- the Postfix walkthrough's Maildir settings -------------------------------------------

MAILDIR_SETTINGS = (
    "virtual_mailbox_domains",
    "virtual_mailbox_base",
    "virtual_mailbox_maps",
    "virtual_uid_maps",
    "virtual_gid_maps",
)


def walkthrough_problems(page: str) -> list[str]:
    """What a reader following docs/postfix.md's walkthrough would still have to add
    for the message to land in a Maildir.

    The walkthrough applies the main.cf block of "### main.cf" ("Add the main.cf lines
    above") and its own ``postconf -e`` commands. Together they must set every
    MAILDIR_SETTINGS value, and consistently: the recipient swaks sends to is in a
    virtual mailbox domain (never also in mydestination) and in the inline mailbox map
    as a Maildir (a value ending in ``/``); the base directory is created by the
    walkthrough and is where the page says the message lands; the uid and gid maps are
    ``static:`` and name a user the walkthrough creates.
    """
    main_cf = [b for b in fenced_blocks(section(page, "main.cf")) if not b.info]
    if not main_cf:
        return ["no main.cf block under '### main.cf'"]
    walkthrough = section(page, "Walkthrough")
    blocks = [b.text for b in fenced_blocks(walkthrough)]
    settings = main_cf_settings(main_cf[0].text)
    for block in blocks:
        settings.update(postconf_settings(block))
    problems = [f"{name} is not set" for name in MAILDIR_SETTINGS if not settings.get(name)]
    if problems:
        return problems

    recipients = {
        words[index + 1]
        for block in blocks
        for words in shell_commands(block)
        if words[0] == "swaks"
        for index, word in enumerate(words[:-1])
        if word == "--to"
    }
    if not recipients:
        return ["the walkthrough sends no message (no swaks --to)"]
    domains = set(re.split(r"[\s,]+", settings["virtual_mailbox_domains"]))
    local = set(re.split(r"[\s,]+", settings.get("mydestination", "")))
    base = settings["virtual_mailbox_base"].rstrip("/")
    mailbox_map = re.fullmatch(r"inline:\{(.*)\}", settings["virtual_mailbox_maps"].strip())
    if mailbox_map is None:
        return [f"virtual_mailbox_maps = {settings['virtual_mailbox_maps']!r}: not inline:{{...}}"]
    # inline:{ {key=value}, {key=value} } or inline:{key=value, key=value}
    entries = re.findall(r"\{([^{}]*)\}", mailbox_map[1]) or mailbox_map[1].split(",")
    mailboxes = {
        key.strip(): value.strip()
        for key, equals, value in (entry.partition("=") for entry in entries)
        if equals
    }
    for recipient in sorted(recipients):
        domain = recipient.rpartition("@")[2]
        if domain not in domains:
            problems.append(f"{recipient}: {domain} is not in virtual_mailbox_domains")
        if domain in local:
            problems.append(f"{recipient}: {domain} is also in mydestination")
        mailbox = mailboxes.get(recipient)
        if mailbox is None:
            problems.append(f"{recipient}: not a key of virtual_mailbox_maps")
        elif not mailbox.endswith("/"):
            problems.append(f"{recipient}: mailbox {mailbox!r} is not a Maildir (no final /)")
        elif f"{base}/{mailbox}new/" not in walkthrough:
            problems.append(f"the page never says the message lands in {base}/{mailbox}new/")

    if not PurePosixPath(base).is_absolute():
        problems.append(f"virtual_mailbox_base = {base!r}: not an absolute path")
    created = {
        word.rstrip("/")
        for block in blocks
        for words in shell_commands(block)
        if words[0] == "mkdir" or words[:2] == ["install", "-d"]
        for word in words[1:]
        if word.startswith("/")
    }
    if base not in created:
        problems.append(f"virtual_mailbox_base {base!r} is not created by the walkthrough")
    users = {
        words[-1] for block in blocks for words in shell_commands(block) if words[0] == "useradd"
    }
    for name, flag in (("virtual_uid_maps", "-u"), ("virtual_gid_maps", "-g")):
        value = settings[name]
        match = re.fullmatch(rf"static:(?:\d+|\$\(id {flag} (\S+)\))", value)
        if match is None:
            problems.append(f"{name} = {value!r}: not static:UID (or static:$(id {flag} USER))")
        elif match[1] is not None and match[1] not in users:
            problems.append(f"{name} = {value!r}: user {match[1]!r} is not created (useradd)")
    return problems


def test_the_postfix_walkthrough_sets_every_maildir_setting() -> None:
    assert walkthrough_problems(POSTFIX_PAGE.read_text(encoding="utf-8")) == []


def _without_line_containing(page: str, text: str) -> str:
    lines = page.split("\n")
    kept = [line for line in lines if text not in line]
    assert len(kept) == len(lines) - 1, f"{text!r} is not on exactly one line"
    return "\n".join(kept)


@pytest.mark.parametrize("setting", MAILDIR_SETTINGS)
def test_a_walkthrough_without_a_maildir_setting_is_caught(setting: str) -> None:
    page = POSTFIX_PAGE.read_text(encoding="utf-8")
    broken = _without_line_containing(page, f'"{setting} = ')
    # The line may end the postconf command; what is left must still parse.
    broken = broken.replace(" \\\n   postfix reload", "\n   postfix reload")
    assert f"{setting} is not set" in walkthrough_problems(broken)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "alice@contoso.com=contoso.com/alice/",
            "bob@contoso.com=contoso.com/bob/",
            "alice@contoso.com: not a key of virtual_mailbox_maps",
        ),
        ("contoso.com/alice/} }", "contoso.com/alice} }", "is not a Maildir"),
        (
            '"virtual_mailbox_domains = contoso.com"',
            '"virtual_mailbox_domains = contoso.net"',
            "contoso.com is not in virtual_mailbox_domains",
        ),
        (
            "install -d -o vmail -g vmail /var/mail/vhosts",
            "install -d -o vmail /srv/mail",
            "is not created by the walkthrough",
        ),
        ("static:$(id -g vmail)", "static:$(id -g mailer)", "user 'mailer' is not created"),
        (
            "/var/mail/vhosts/contoso.com/alice/new/",
            "/var/mail/contoso.com/alice/new/",
            "never says the message lands in /var/mail/vhosts/contoso.com/alice/new/",
        ),
    ],
)
def test_an_inconsistent_walkthrough_is_caught(old: str, new: str, problem: str) -> None:
    page = POSTFIX_PAGE.read_text(encoding="utf-8")
    assert page.count(old) == 1, old
    problems = walkthrough_problems(page.replace(old, new))
    assert any(problem in p for p in problems), problems


# --- one CA path across the tutorial and the Postfix page -------------------------------


@dataclass(frozen=True)
class Mention:
    page: str
    line: int
    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.kind}: {self.text}"


# A CA certificate's file: a .pem whose name has a "ca" part (partners-ca.pem, ca.pem).
_CA_PEM = re.compile(r"(?<![\w./$-])((?:[\w.-]*/)*(?:\w+[-_.])*ca(?:[-_.]\w+)*\.pem)\b")


def ca_mentions(name: str, page: str) -> Iterator[Mention]:
    """Every place a page names the partners' CA file, in code and in prose:

    - a Postfix ``*_CAfile`` setting's value (``smtpd_tls_CAfile = ...``, ``-o
      smtp_tls_CAfile=...``);
    - the policy's ``ca_file = "..."`` (relative to the policy file);
    - an ``openssl`` command's ``-CA``/``-CAfile`` argument, and the ``-out`` of a
      self-signed ``openssl req -x509`` (the CA being minted);
    - any other ``.pem`` path whose file name has a ``ca`` part (``partners-ca.pem``).
    """

    def at(offset: int, kind: str, text: str) -> Mention:
        return Mention(name, line_of(page, offset), kind, text)

    for match in re.finditer(r"\b(\w*_CAfile)\s*=\s*([^\s`'\",]+)", page):
        yield at(match.start(2), f"Postfix {match[1]}", match[2])
    for match in re.finditer(r"\bca_file\s*=\s*([\"'])(.*?)\1", page):
        yield at(match.start(2), "policy ca_file", match[2])
    for match in re.finditer(r"(?<![\w-])-CA(?:file)?\s+([^\s`'\"]+)", page):
        yield at(match.start(1), "openssl -CA", match[1])
    for block in fenced_blocks(page):
        for words in shell_commands(block.text):
            if words[:2] == ["openssl", "req"] and "-x509" in words and "-out" in words[:-1]:
                path = words[words.index("-out") + 1]
                yield at(max(0, page.find(f"-out {path}")), "CA minted", path)
    for match in _CA_PEM.finditer(page):
        yield at(match.start(1), "CA file", match[1])


def policy_directory(pages: dict[str, str]) -> tuple[str | None, list[str]]:
    """The one directory the pages install the policy in (``--policy /.../x.toml``)."""
    paths = {
        match[1]
        for page in pages.values()
        for match in re.finditer(r"--policy\s+(/[^\s`'\"]+\.toml)", page)
    }
    directories = {str(PurePosixPath(path).parent) for path in paths}
    if len(directories) != 1:
        return None, [f"the policy is installed in {sorted(directories)}, not one directory"]
    return directories.pop(), []


def ca_path_problems(pages: dict[str, str]) -> tuple[list[str], list[Mention]]:
    """Whether every CA-file mention of ``pages`` names one and the same file.

    Absolute paths (a Postfix setting, an openssl argument, prose) must be that one
    path; the policy's ``ca_file`` resolved against the policy's directory must be it
    too; a relative mention (a bare ``partners-ca.pem`` in a working directory, the
    repository's ``examples/fabrikam/partners-ca.pem``) is a copy of that file and must
    have its file name."""
    directory, problems = policy_directory(pages)
    mentions = [m for name, page in pages.items() for m in ca_mentions(name, page)]
    resolved: dict[str, list[Mention]] = {}
    relative: list[Mention] = []
    for mention in mentions:
        path = PurePosixPath(mention.text)
        if mention.kind == "policy ca_file" and not path.is_absolute() and directory:
            path = PurePosixPath(directory) / path
        if path.is_absolute():
            resolved.setdefault(str(path), []).append(mention)
        elif mention.kind.startswith("Postfix"):
            problems.append(f"{mention}: a Postfix CA file must be an absolute path")
        else:
            relative.append(mention)
    if len(resolved) != 1:
        problems.append(
            "the CA file is not one path: "
            + "; ".join(
                f"{path} at {', '.join(map(str, where))}" for path, where in resolved.items()
            )
        )
        return problems, mentions
    (the_path,) = resolved
    for mention in relative:
        if PurePosixPath(mention.text).name != PurePosixPath(the_path).name:
            problems.append(f"{mention}: not a copy of {the_path} (another file name)")
    return problems, mentions


def _ca_pages() -> dict[str, str]:
    return {page.name: page.read_text(encoding="utf-8") for page in (TUTORIAL_PAGE, POSTFIX_PAGE)}


def test_the_tutorial_and_the_postfix_page_name_one_ca_file() -> None:
    problems, mentions = ca_path_problems(_ca_pages())
    assert problems == [], "\n".join(problems)
    # The check saw what these pages are about: each gives Postfix its CA file and the
    # policy its ca_file, and the Postfix page mints the CA at that path.
    kinds = {(m.page, m.kind) for m in mentions}
    for page in ("tutorial.md", "postfix.md"):
        assert (page, "Postfix smtpd_tls_CAfile") in kinds
        assert (page, "policy ca_file") in kinds
    assert ("tutorial.md", "Postfix smtp_tls_CAfile") in kinds
    assert ("postfix.md", "CA minted") in kinds
    assert ("postfix.md", "openssl -CA") in kinds


def _one_changed(page_name: str, old: str, new: str, nth: int = 0) -> dict[str, str]:
    pages = _ca_pages()
    text = pages[page_name]
    starts = [m.start() for m in re.finditer(re.escape(old), text)]
    assert len(starts) > nth, (page_name, old)
    start = starts[nth]
    pages[page_name] = text[:start] + new + text[start + len(old) :]
    return pages


@pytest.mark.parametrize(
    ("page", "old", "new", "nth"),
    [
        # main.cf's smtpd_tls_CAfile, in either page.
        ("postfix.md", "= /etc/tlsconnector/partners-ca.pem", "= /etc/postfix/partners-ca.pem", 0),
        ("tutorial.md", "= /etc/tlsconnector/partners-ca.pem", "= /etc/ssl/certs/ca-bundle.crt", 0),
        # postfix-config's master.cf option in the tutorial.
        ("tutorial.md", "=/etc/tlsconnector/partners-ca.pem", "=/etc/tlsconnector/other-ca.pem", 0),
        # The policy's ca_file.
        ("tutorial.md", 'ca_file = "partners-ca.pem"', 'ca_file = "fabrikam-ca.pem"', 0),
        ("postfix.md", 'ca_file = "partners-ca.pem"', 'ca_file = "/etc/ssl/partners.pem"', 0),
        # Where the walkthrough mints the CA, and signs with it.
        ("postfix.md", "-out /etc/tlsconnector/partners-ca.pem", "-out /root/lab.pem", 0),
        ("postfix.md", "-CA /etc/tlsconnector/partners-ca.pem", "-CA /root/lab.pem", 0),
        # The tutorial's file the reader saves, and the prose naming the path.
        ("tutorial.md", "Save it as `partners-ca.pem`", "Save it as `fabrikam-ca.pem`", 0),
        ("postfix.md", "(at `/etc/tlsconnector/partners-ca.pem`", "(at `/etc/ssl/lab-ca.pem`", 0),
        # The policy moved elsewhere on one page only.
        (
            "tutorial.md",
            "--policy /etc/tlsconnector/policy.toml",
            "--policy /etc/tc/policy.toml",
            1,
        ),
    ],
)
def test_a_second_ca_path_is_caught(page: str, old: str, new: str, nth: int) -> None:
    problems, _ = ca_path_problems(_one_changed(page, old, new, nth))
    assert problems, f"{page}: {old!r} -> {new!r} went unnoticed"


# --- references to the specification's sections are links -----------------------------

# A section number: 5, 5.3, 4.2.1.10.
_NUMBER = r"\d+(?:\.\d+)*"
_JOINER = r"\s*(?:,|and|or|/|&|to|-|\u2013)\s*(?:§\s*)?"
_MENTION = re.compile(
    rf"(?<![\w.§])(?:[Ss]ections?\s+|§+\s*)(?P<numbers>{_NUMBER}(?:{_JOINER}{_NUMBER})*)(?![\w.]*\w)"
)
# A number that continues a linked mention outside its link: "[section 6](...)/7".
_CONTINUED = re.compile(rf"^\s*(?:/|&|and|or)\s*(?:§\s*)?{_NUMBER}\b")
# Another document's section: RFC 3207 section 4, RFC 5280 §4.2.1.10, BCP 14 section 2.
_OTHER_DOCUMENT = re.compile(r"\b(?:RFC|BCP|STD)\s*\d+\s*,?\s*$")
_LINK = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]*)\)")
# Pages not scanned: the specification itself (its own text cites its sections, "see
# section 2", as the specification's source does) and the changelog (an include of
# CHANGELOG.md, a record of what changed, not a page of the manual).
SECTION_EXEMPT_PAGES = ("specification.md", "changelog.md")


def spec_anchors(spec: str) -> dict[str, str]:
    """Section number -> anchor of its heading (MyST's slug, myst_heading_anchors)."""
    anchors = {}
    for match in re.finditer(r"^## (\d+)\. (.+)$", spec, flags=re.M):
        heading = f"{match[1]}. {match[2]}".strip().lower()
        slug = re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")
        anchors[match[1]] = slug
    return anchors


def section_reference_problems(name: str, page: str, anchors: dict[str, str]) -> list[str]:
    """Every mention of a section of the specification, outside code, that is not a
    link to that section's heading.

    A mention is "section N", "sections N and M", "section N/M", "§N" (N like 5 or
    5.3). It must lie inside the text of a Markdown link to
    ``specification.md#ANCHOR``, where ANCHOR is the heading of section N's first
    number (``[section 5.3](specification.md#5-inbound-evaluation-partner-connectors)``);
    a number joined to a link from outside it (``[section 6](...)/7``) is a mention
    without a link. Not mentions:

    - another document's sections: "RFC 3207 section 4", "RFC 9525 section 6.3 (and
      RFC 6125 section 6.4.4)" (the RFC, BCP or STD number right before);
    - "section" without a number: a part of a config or policy file ("the ``[trust]``
      section"), "this section";
    - text in fenced code blocks, inline code and HTML comments: literal text (a
      module tree, a log line) that cannot hold a link;
    - the pages of SECTION_EXEMPT_PAGES.
    """
    text = prose(page)
    links = [(m.start("text"), m.end("text"), m["target"], m) for m in _LINK.finditer(text)]
    problems = []

    def where(offset: int) -> str:
        return f"{name}:{line_of(page, offset)}"

    for mention in _MENTION.finditer(text):
        if _OTHER_DOCUMENT.search(text[max(0, mention.start() - 80) : mention.start()]):
            continue
        quoted = " ".join(mention[0].split())
        around = [link for link in links if link[0] <= mention.start() and mention.end() <= link[1]]
        if not around:
            problems.append(f"{where(mention.start())}: {quoted!r} is not a link")
            continue
        target = around[0][2]
        first = re.match(r"\d+", mention["numbers"])
        assert first is not None
        anchor = anchors.get(first[0])
        if anchor is None:
            problems.append(
                f"{where(mention.start())}: {quoted!r}: the specification has no such section"
            )
        elif target != f"specification.md#{anchor}":
            problems.append(
                f"{where(mention.start())}: {quoted!r} links to {target!r},"
                f" not specification.md#{anchor}"
            )
    for _start, _end, target, link in links:
        tail = _CONTINUED.match(text[link.end() :])
        if target.startswith("specification.md") and tail is not None:
            problems.append(
                f"{where(link.end())}: {link[0] + tail[0]!r}: the number after the link is not a link"
            )
    return problems


def _section_pages() -> list[Path]:
    pages = sorted(p for p in DOCS.glob("*.md") if p.name not in SECTION_EXEMPT_PAGES)
    assert len(pages) > 20  # the docs are there
    return pages


@pytest.mark.parametrize("page", _section_pages(), ids=lambda page: page.name)
def test_spec_section_references_are_links(page: Path) -> None:
    anchors = spec_anchors(SPEC_PAGE.read_text(encoding="utf-8"))
    assert set(anchors) >= {str(n) for n in range(1, 12)}
    problems = section_reference_problems(page.name, page.read_text(encoding="utf-8"), anchors)
    assert problems == [], "\n".join(problems)


def test_the_pages_do_link_spec_sections() -> None:
    """The check above has something to look at: the pages cite sections as links."""
    linked = sum(
        len(re.findall(r"\[[Ss]ections? \d[^\]]*\]\(specification\.md#", p.read_text("utf-8")))
        for p in _section_pages()
    )
    assert linked >= 20


SPEC_ANCHORS_FOR_SNIPPETS = {
    "5": "5-inbound-evaluation-partner-connectors",
    "6": "6-outbound",
    "7": "7-certificate-chain-validation",
}


@pytest.mark.parametrize(
    "snippet",
    [
        "The candidates of section 5 are the enabled ones.",
        "As specification §7 says.",
        "See sections 5 and 7.",
        "Judged as in section 6/7.",
        "Judged ([section 6](specification.md#6-outbound)/7: CN only).",
        "See [section 5.3](specification.md#7-certificate-chain-validation).",
        "See [section 7](postfix.md#name-constrained-cas-behind-postfix).",
        "See [section 13](specification.md#13-nothing).",
        "Rule of the\nspecification's section\n7, wrapped.",
        "A [link](specification.md) then section 7.",
        "After `code` comes section 5.",
    ],
)
def test_an_unlinked_or_mislinked_spec_section_is_caught(snippet: str) -> None:
    assert section_reference_problems("x.md", snippet, SPEC_ANCHORS_FOR_SNIPPETS) != []


@pytest.mark.parametrize(
    "snippet",
    [
        "Specification [section 5.3](specification.md#5-inbound-evaluation-partner-connectors).",
        "[Section 7](specification.md#7-certificate-chain-validation) of the specification.",
        "A public MX accepts plaintext (RFC 3207 section 4).",
        "| RFC 9525 section 6.3 (and RFC 6125 section 6.4.4) | ... |",
        "RFC 5280 §4.2.1.10 constrains SANs.",
        "The `[trust]` section of the policy; this section; the sections below.",
        "```\n_inbound.py   evaluate_inbound (section 5)\n```",
        "   ```\n   grep 'section 7' log\n   ```",
        "Logged as `see section 7`.",
        "<!--\nsection 7 is checked here\n-->",
        "[section 3](specification.md#3-x) rules 1-6.",
    ],
)
def test_what_is_not_an_unlinked_spec_section(snippet: str) -> None:
    anchors = {**SPEC_ANCHORS_FOR_SNIPPETS, "3": "3-x"}
    assert section_reference_problems("x.md", snippet, anchors) == []


# --- long code lines wrap --------------------------------------------------------------


def css_rules(css: str) -> list[tuple[list[str], dict[str, str]]]:
    """(selectors, declarations) of each plain rule of a stylesheet, comments removed."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    rules = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        declarations = {}
        for declaration in body.split(";"):
            name, colon, value = declaration.partition(":")
            if colon:
                declarations[name.strip().lower()] = value.strip().lower()
        rules.append(([s.strip() for s in selectors.split(",")], declarations))
    return rules


def _targets_pre(selector: str) -> bool:
    """The selector's subject is a ``pre`` element (``article div.highlight pre``)."""
    return re.search(r"(?:^|[\s>+~])pre(?:[.#:\[][^\s>+~]*)?$", selector) is not None


def code_wrap_problems(css: str) -> list[str]:
    """A rule on ``pre`` must keep indentation and wrap lines (``white-space:
    pre-wrap``) and break a long token (``overflow-wrap: anywhere`` or ``break-word``,
    or its old name ``word-wrap``); no rule on ``pre`` may turn wrapping off again."""
    wrapping = False
    problems = []
    for selectors, declarations in css_rules(css):
        if not any(_targets_pre(selector) for selector in selectors):
            continue
        white_space = declarations.get("white-space", "").replace("!important", "").strip()
        overflow_wrap = (
            (declarations.get("overflow-wrap") or declarations.get("word-wrap") or "")
            .replace("!important", "")
            .strip()
        )
        if white_space and white_space not in ("pre-wrap", "break-spaces"):
            problems.append(f"{', '.join(selectors)}: white-space: {white_space} does not wrap")
        if overflow_wrap and overflow_wrap not in ("anywhere", "break-word"):
            problems.append(f"{', '.join(selectors)}: overflow-wrap: {overflow_wrap}")
        if white_space in ("pre-wrap", "break-spaces") and overflow_wrap in (
            "anywhere",
            "break-word",
        ):
            wrapping = True
    if not wrapping:
        problems.append("no rule on pre with white-space: pre-wrap and overflow-wrap: anywhere")
    return problems


def test_code_blocks_wrap_long_lines() -> None:
    assert code_wrap_problems(CODE_CSS.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "css",
    [
        "",
        "article div.highlight pre { white-space: pre; overflow-wrap: anywhere; }",
        "article div.highlight pre { white-space: pre-wrap; }",
        "article div.highlight pre { overflow-wrap: anywhere; }",
        "article div.highlight { white-space: pre-wrap; overflow-wrap: anywhere; }",
        "/* pre { white-space: pre-wrap; overflow-wrap: anywhere; } */",
        "pre { white-space: pre-wrap; overflow-wrap: anywhere; }\npre.x { white-space: nowrap; }",
    ],
)
def test_css_that_does_not_wrap_is_caught(css: str) -> None:
    assert code_wrap_problems(css) != []


def sphinx_css_problems(conf: str, static: Path, stylesheet: str) -> list[str]:
    """docs/conf.py (read, not run: it imports Sphinx) registers ``stylesheet``: listed
    in ``html_css_files``, found in a directory of ``html_static_path``."""
    values: dict[str, object] = {}
    for node in ast.parse(conf).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("html_css_files", "html_static_path"):
                try:
                    values[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    values[target.id] = None
    css_files = values.get("html_css_files")
    static_path = values.get("html_static_path")
    problems = []
    names = [
        entry if isinstance(entry, str) else entry[0]
        for entry in (css_files if isinstance(css_files, list | tuple) else ())
        if isinstance(entry, str) or (isinstance(entry, tuple) and entry)
    ]
    if stylesheet not in names:
        problems.append(f"html_css_files = {css_files!r}: no {stylesheet!r}")
    directories = static_path if isinstance(static_path, list | tuple) else ()
    if not any(
        isinstance(directory, str) and (static / directory / stylesheet).is_file()
        for directory in directories
    ):
        problems.append(f"html_static_path = {static_path!r}: no directory holding {stylesheet}")
    return problems


def test_the_docs_load_the_code_stylesheet() -> None:
    assert sphinx_css_problems(CONF_PY.read_text(encoding="utf-8"), DOCS, CODE_CSS.name) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('html_css_files = ["tables.css", "code.css"]', 'html_css_files = ["tables.css"]'),
        ('html_static_path = ["_static"]', 'html_static_path = ["static"]'),
        ('html_static_path = ["_static"]', "html_static_path = []"),
    ],
)
def test_a_conf_without_the_code_stylesheet_is_caught(old: str, new: str) -> None:
    conf = CONF_PY.read_text(encoding="utf-8")
    assert conf.count(old) == 1, old
    assert sphinx_css_problems(conf.replace(old, new), DOCS, CODE_CSS.name) != []
