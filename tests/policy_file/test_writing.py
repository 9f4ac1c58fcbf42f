"""The policy writer (src/tlsconnector/policy_file/writing.py): what a reviewer reads is
what the file holds, in values and in comments."""

from __future__ import annotations

import tomllib

import pytest

from tlsconnector.policy_file.writing import comment_lines, dumps

HIDDEN = ["\u202e", "\u200b", "\u2066", "\x1b", "\x7f", "\u061c"]


@pytest.mark.parametrize("char", HIDDEN)
def test_a_hidden_character_in_a_value_is_written_as_an_escape(char: str) -> None:
    text = dumps({"inbound": [{"name": f"Fabrikam{char}Bank", "sender_domains": ["x.com"]}]})
    assert char not in text
    assert f"\\u{ord(char):04X}" in text
    assert f"Fabrikam{char}Bank" == tomllib.loads(text)["inbound"][0]["name"]


@pytest.mark.parametrize("char", HIDDEN)
def test_a_hidden_character_in_a_comment_is_written_as_an_escape(char: str) -> None:
    (line,) = comment_lines([f"From EOP: record 1, Fabrikam{char}Bank"])
    assert char not in line
    assert line.startswith("# ")
    assert {} == tomllib.loads(line)


def test_a_newline_in_a_comment_starts_another_comment_line() -> None:
    lines = comment_lines(["first\n[[inbound]]\nname = 'forged'"])
    assert all(line.startswith("#") for line in lines)
    assert {} == tomllib.loads("\n".join(lines))
