"""docs/config.md against the loader: the keys, their types and defaults, the examples
and the bad values, all read from the reference and checked on the real loader.

The loader's side is walked from its schemas (``relconsole.config.schema_keys``), so a
key added to any schema, nested tables included, is named here until it is documented.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
import tomli_w

from relconsole import config as config_module
from relconsole.config import ConfigError, SchemaKey, parse_config, schema_keys

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "config.md"
FIELDS = ("type", "default", "allowed", "example", "bad value")

#: Where a documented example is tried: a config that loads, and the table of each
#: header in it (the names the reference's messages use: web1, api, team). No health
#: probe: a probe has exactly one of url, tcp and run, so each example gives its own.
BASE = {
    "hosts": {
        "web1": {"address": "10.0.0.11", "vars": {"PORT": "8000"}},
        "bastion": {"address": "bastion.example.com"},
    },
    "services": {
        "api": {
            "repo": "git@example.com:acme/api.git",
            "hosts": ["web1"],
            "checks": [{"name": "tests", "run": "python3 -m pytest -q"}],
            "files": [{"src": "deploy/supervisor/*.conf", "dest": "/etc/supervisor/conf.d"}],
            "setup": [{"name": "deps", "run": "pip install -r requirements.txt -t vendor"}],
        }
    },
    "notify": {"team": {"url": "env:TEAM_WEBHOOK_URL"}},
}


def documented() -> dict[tuple[str, str], dict[str, str]]:
    """(table header, key) → {field: text} from the reference's ## and ### headings."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    table = None
    fields: dict[str, str] = {}  # the fields of the key being read
    for line in REFERENCE.read_text().splitlines():
        if m := re.fullmatch(r"## `(\[.+\])`", line):
            table, fields = m[1], {}
        elif m := re.fullmatch(r"### `([^`]+)`", line):
            assert table is not None, f"key {m[1]} before any table heading"
            fields = out.setdefault((table, m[1]), {})
        elif line.startswith("## "):
            table = None
        elif (m := re.match(r"- \*\*([a-z ]+)\*\*: (.*)", line)) and table is not None:
            fields[m[1]] = m[2]
    return out


DOCUMENTED = documented()
ACCEPTED = {(k.table, k.key): k for k in schema_keys()}


def test_the_reference_documents_exactly_the_keys_the_loader_accepts():
    missing = sorted(set(ACCEPTED) - set(DOCUMENTED))
    stale = sorted(set(DOCUMENTED) - set(ACCEPTED))
    assert not missing, "accepted by the loader, missing from docs/config.md: " + ", ".join(
        f"{table} {key}" for table, key in missing
    )
    assert not stale, "in docs/config.md, unknown to the loader: " + ", ".join(
        f"{table} {key}" for table, key in stale
    )


def test_every_schema_and_top_level_table_is_walked():
    """A new *_SCHEMA or top-level table the walk does not reach would hide its keys."""
    schemas = {
        name: value
        for name, value in vars(config_module).items()
        if name.endswith("_SCHEMA") and isinstance(value, dict)
    }
    reached: list[int] = []

    def walk(schema: dict) -> None:
        reached.append(id(schema))
        for spec in schema.values():
            if spec.entries is not None:
                walk(spec.entries)

    for root in config_module.SCHEMA_ROOTS.values():
        walk(root)
    unreached = sorted(name for name, schema in schemas.items() if id(schema) not in reached)
    assert not unreached, f"schemas not reachable from config.SCHEMA_ROOTS: {unreached}"
    roots = {path.split(".")[0] for path in config_module.SCHEMA_ROOTS}
    assert roots == set(config_module.TOP_LEVEL), "add new top-level tables to SCHEMA_ROOTS"


@pytest.mark.parametrize("where", sorted(ACCEPTED), ids=lambda w: f"{w[0]}{w[1]}")
def test_each_key_has_every_field_with_the_loaders_type_and_default(where):
    if where not in DOCUMENTED:
        pytest.skip("reported by the drift test")
    fields, key = DOCUMENTED[where], ACCEPTED[where]
    assert set(FIELDS) <= set(fields), f"{where}: missing {set(FIELDS) - set(fields)}"
    assert fields["type"].startswith(key.kind), f"{where}: type is {key.kind!r}"
    default = fields["default"]
    if key.required:
        assert default.startswith("required"), where
    elif key.default is not None:
        assert default.startswith(f"`{key.default}`"), f"{where}: default is {key.default}"
    else:
        assert not default.startswith(("`", "required")), f"{where}: says what absence means"


def _snippets(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def _apply(table: str, lines: list[str]) -> dict:
    """BASE with ``lines`` (TOML key = value) set in the table of header ``table``:
    NAME is BASE's first name there, an array of tables its first entry."""
    doc = copy.deepcopy(BASE)
    node: dict = doc
    parts = table.strip("[]").split(".")
    for i, part in enumerate(parts):
        if part == "NAME":
            node = node[next(iter(node))]
            continue
        last_of_array = table.startswith("[[") and i == len(parts) - 1
        child = node.setdefault(part, [{}] if last_of_array else {})
        node = child[0] if isinstance(child, list) else child
    for line in lines:
        node.update(tomllib.loads(line))
    return doc


def _load(doc: dict) -> None:
    parse_config(tomli_w.dumps(doc), Path("config.toml"))


def test_the_base_config_loads():
    _load(BASE)


@pytest.mark.parametrize("where", sorted(DOCUMENTED), ids=lambda w: f"{w[0]}{w[1]}")
def test_each_example_loads(where):
    example = DOCUMENTED[where].get("example", "")
    lines = _snippets(example)
    assert lines, f"{where}: no example"
    assert any(line.split("=")[0].strip() == where[1] for line in lines), where
    _load(_apply(where[0], lines))


@pytest.mark.parametrize("where", sorted(DOCUMENTED), ids=lambda w: f"{w[0]}{w[1]}")
def test_each_bad_value_fails_with_the_documented_message(where):
    bad = DOCUMENTED[where].get("bad value", "")
    given, arrow, said = bad.partition("→")
    assert arrow, f"{where}: bad value is `LINE` → `MESSAGE`"
    (message,) = _snippets(said)
    with pytest.raises(ConfigError) as info:
        _load(_apply(where[0], _snippets(given)))
    assert str(info.value) == message


def test_schema_keys_names_nested_tables_and_defaults():
    keys = {(k.table, k.key): k for k in schema_keys()}
    assert keys[("[[services.NAME.checks]]", "timeout")] == SchemaKey(
        "[[services.NAME.checks]]", "timeout", "a number", False, "900"
    )
    assert keys[("[services.NAME]", "secrets")].default == "{}"
    assert keys[("[hosts.NAME]", "address")].required
    assert keys[("[settings]", "state_dir")].default == '".relconsole"'
