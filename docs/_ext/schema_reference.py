"""Generate the policy file reference from the shipped JSON Schema, at build time.

docs/policy-reference.md holds the prose and one marker line; when Sphinx reads that
page, the marker is replaced by a section per table (``[trust]``, ``[[inbound]]``,
``[[outbound]]``) and an entry per key: TOML type, default, whether it is required,
allowed values, limits, the schema's description, and the rules that combine keys
(the schema's ``if``/``then``/``else``). The schema is the one the package ships
(src/tlsconnector/policy_file/policy.schema.json, printed by ``tlsconnector schema``), so the
reference cannot drift from what editors validate.

The renderer knows every schema keyword the file uses and refuses any other one
(``SchemaReferenceError``): a new kind of rule in the schema fails the docs build
instead of silently disappearing from the reference.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MARKER = "<!-- policy-reference: generated from src/tlsconnector/policy_file/policy.schema.json -->"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "src" / "tlsconnector"
SCHEMA = PACKAGE_DIR / "policy_file" / "policy.schema.json"
DOCNAME = "policy-reference"

# Keywords the renderer turns into text; "x-taplo" (editor hints) and "title" are
# deliberately not shown: they carry no rule.
_KEY_KEYWORDS = frozenset(
    {
        "$ref",
        "type",
        "description",
        "default",
        "enum",
        "const",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "items",
    }
)
_TABLE_KEYWORDS = frozenset(
    {"title", "description", "type", "additionalProperties", "required", "properties", "allOf"}
)
_IGNORED = frozenset({"x-taplo", "title"})

_TYPE_NAMES = {"string": "string", "boolean": "boolean", "integer": "integer", "number": "float"}
_ITEM_NAMES = {"domainPattern": "domain patterns", "certificateName": "certificate names"}


class SchemaReferenceError(Exception):
    """The schema uses something the reference cannot render faithfully."""


def toml_value(value: Any) -> str:
    """A JSON value written as TOML, for defaults and allowed values.

    >>> toml_value(True), toml_value("partner"), toml_value([]), toml_value(["a", 1])
    ('true', '"partner"', '[]', '["a", 1]')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise SchemaReferenceError(f"no TOML form for the value {value!r}")


def prose(text: str) -> str:
    r"""Schema text as Markdown: ``*``, ``|``, ``_``, ``<`` and brackets literal; code kept.

    >>> print(prose("exact > longest *.suffix > * (`a|b`)"))
    exact > longest \*.suffix > \* (`a|b`)
    """
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(
        part if part.startswith("`") else re.sub(r"([*|_<\[\]\\])", r"\\\1", part) for part in parts
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _code(text: str) -> str:
    """Inline code that survives any backticks in ``text``."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Merge a ``$ref`` (local ``#/$defs/...`` only) with the keywords beside it."""
    if "$ref" not in node:
        return dict(node), ""
    ref = node["$ref"]
    prefix = "#/$defs/"
    if not isinstance(ref, str) or not ref.startswith(prefix):
        raise SchemaReferenceError(f"only local $defs references are rendered, not {ref!r}")
    name = ref.removeprefix(prefix)
    target = schema["$defs"][name]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return merged, name


def _check_keywords(where: str, node: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(node) - allowed - _IGNORED)
    if unknown:
        raise SchemaReferenceError(f"{where}: schema keywords not rendered: {', '.join(unknown)}")


def _type_text(
    schema: Mapping[str, Any], key: str, node: Mapping[str, Any]
) -> tuple[str, list[str]]:
    """The TOML type of a key, and extra lines about its items (arrays)."""
    kind = node.get("type")
    if kind in _TYPE_NAMES:
        return _TYPE_NAMES[kind], []
    if kind == "array":
        items, ref_name = _resolve(schema, node.get("items", {}))
        _check_keywords(f"{key} items", items, _KEY_KEYWORDS)
        item_type = items.get("type")
        if item_type not in _TYPE_NAMES:
            raise SchemaReferenceError(f"{key}: array items of type {item_type!r}")
        noun = _ITEM_NAMES.get(ref_name, f"{_TYPE_NAMES[item_type]}s")
        extra = []
        if "description" in items:
            extra.append(f"Each item: {prose(items['description'])}")
        if "pattern" in items:
            extra.append(f"Each item must match the pattern {_code(items['pattern'])}.")
        return f"array of {noun}", extra
    raise SchemaReferenceError(f"{key}: type {kind!r} is not rendered")


def _key_entry(
    schema: Mapping[str, Any],
    table: str,
    key: str,
    raw: Mapping[str, Any],
    required: bool,
    anchor_prefix: str,
) -> list[str]:
    node, ref_name = _resolve(schema, raw)
    _check_keywords(f"{table}.{key}", node, _KEY_KEYWORDS)
    description = node.get("description")
    if not description:
        raise SchemaReferenceError(f"{table}.{key} has no description")
    type_text, item_lines = _type_text(schema, f"{table}.{key}", node)
    if ref_name in _ITEM_NAMES and node.get("type") == "string":
        type_text = f"string ({_ITEM_NAMES[ref_name][:-1]})"
    facts = [f"- **Type**: {type_text}"]
    if required:
        facts.append("- **Required**: yes")
    elif "default" in node:
        facts.append(f"- **Default**: {_code(toml_value(node['default']))}")
    else:
        facts.append("- **Default**: absent (the key is optional and has no value)")
    if "enum" in node:
        values = ", ".join(_code(toml_value(value)) for value in node["enum"])
        facts.append(f"- **Allowed values**: {values}")
    if "const" in node:
        facts.append(f"- **Allowed value**: {_code(toml_value(node['const']))}")
    limits = []
    if "minLength" in node:
        limits.append(f"at least {_plural(node['minLength'], 'character')}")
    if "maxLength" in node:
        limits.append(f"at most {_plural(node['maxLength'], 'character')}")
    if "minItems" in node:
        limits.append(f"at least {_plural(node['minItems'], 'item')}")
    if "pattern" in node:
        limits.append(f"matches the pattern {_code(node['pattern'])}")
    if limits:
        facts.append(f"- **Limits**: {'; '.join(limits)}")
    facts.extend(f"- {line}" for line in item_lines)
    return [
        f"({anchor_prefix}-{key.replace('_', '-')})=",
        f"### {_code(key)}",
        "",
        prose(description),
        "",
        *facts,
        "",
    ]


def _condition_text(table: str, clause: Mapping[str, Any]) -> str:
    """The ``if`` of a rule: "`key = value`" or "`key` is set"."""
    _check_keywords(f"{table} if", clause, frozenset({"properties", "required"}))
    properties = clause.get("properties", {})
    required = clause.get("required", [])
    parts = []
    for key in required:
        if key in properties:
            prop = properties[key]
            _check_keywords(f"{table} if {key}", prop, frozenset({"const"}))
            parts.append(_code(f"{key} = {toml_value(prop['const'])}"))
        else:
            parts.append(f"{_code(key)} is set")
    if set(properties) - set(required) or not parts:
        raise SchemaReferenceError(f"{table}: a condition on an absent key is not rendered")
    return " and ".join(parts)


def _consequence_text(table: str, clause: Mapping[str, Any]) -> str:
    """The ``then``/``else`` of a rule, as one sentence."""
    _check_keywords(f"{table} then", clause, frozenset({"properties", "required"}))
    properties = clause.get("properties", {})
    sentences = []
    keys = list(clause.get("required", []))
    keys += [key for key in properties if key not in keys]
    for key in keys:
        words = []
        if key in clause.get("required", []):
            words.append("is required")
        prop = properties.get(key, {})
        _check_keywords(f"{table} then {key}", prop, frozenset({"const", "minItems"}))
        if "const" in prop:
            words.append(f"must be {_code(toml_value(prop['const']))}")
        if prop.get("minItems") == 1:
            words.append("must not be empty")
        elif "minItems" in prop:
            words.append(f"must have at least {_plural(prop['minItems'], 'item')}")
        sentences.append(f"{_code(key)} {' and '.join(words)}")
    return "; ".join(sentences)


def _rules(table: str, all_of: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for rule in all_of:
        _check_keywords(f"{table} allOf", rule, frozenset({"if", "then", "else"}))
        condition = _condition_text(table, rule["if"])
        if "then" in rule:
            lines.append(f"- When {condition}: {_consequence_text(table, rule['then'])}.")
        if "else" in rule:
            lines.append(f"- Unless {condition}: {_consequence_text(table, rule['else'])}.")
    return lines


def _table_section(
    schema: Mapping[str, Any], heading: str, anchor: str, table: Mapping[str, Any]
) -> list[str]:
    _check_keywords(heading, table, _TABLE_KEYWORDS)
    if table.get("type") != "object" or table.get("additionalProperties") is not False:
        raise SchemaReferenceError(f"{heading}: only closed tables are rendered")
    required = set(table.get("required", []))
    lines = [f"({anchor})=", f"## {_code(heading)}", "", prose(table["description"]), ""]
    lines.append(
        "Keys, in the order the schema lists them. Any other key is an error "
        "(the schema says `additionalProperties: false`, and the loader agrees)."
    )
    lines.append("")
    summary = ["| key | type | default |", "|---|---|---|"]
    entries: list[str] = []
    for key, raw in table["properties"].items():
        node, _ = _resolve(schema, raw)
        type_text, _ = _type_text(schema, key, node)
        default = (
            "required"
            if key in required
            else _code(toml_value(node["default"]))
            if "default" in node
            else "absent"
        )
        target = f"{anchor}-{key.replace('_', '-')}"
        summary.append(f"| [{_code(key)}](#{target}) | {type_text} | {default} |")
        entries.extend(_key_entry(schema, heading, key, raw, key in required, anchor))
    lines += [*summary, ""]
    rules = _rules(heading, table.get("allOf", []))
    if rules:
        lines += ["Rules that combine keys:", "", *rules, ""]
    return lines + entries


def render(schema: Mapping[str, Any]) -> str:
    """The reference as MyST Markdown: one section per table, one entry per key."""
    _check_keywords("policy", schema, _TABLE_KEYWORDS | {"$schema", "$defs"})
    lines = ["The file has three kinds of table:", ""]
    sections: list[str] = []
    for name, raw in schema["properties"].items():
        if raw.get("type") == "object":
            heading, table = f"[{name}]", raw
            lines.append(f"- [{_code(heading)}](#policy-{name}): {prose(raw['description'])}")
        elif raw.get("type") == "array":
            _check_keywords(name, raw, frozenset({"type", "description", "items"}))
            heading = f"[[{name}]]"
            table, _ = _resolve(schema, raw["items"])
            summary = prose(raw["description"])
            lines.append(f"- [{_code(heading)}](#policy-{name}), any number of them: {summary}")
        else:
            raise SchemaReferenceError(f"top-level key {name!r} is neither a table nor an array")
        sections += _table_section(schema, heading, f"policy-{name}", table)
    return "\n".join([*lines, "", *sections])


def load_schema(path: Path = SCHEMA) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def _on_source_read(app: Any, docname: str, source: list[str]) -> None:
    if docname != DOCNAME:
        return
    if MARKER not in source[0]:
        raise SchemaReferenceError(f"{docname}.md lacks the marker line {MARKER}")
    app.env.note_dependency(str(SCHEMA))
    source[0] = source[0].replace(MARKER, render(load_schema()))


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _on_source_read)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
