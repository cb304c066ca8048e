"""Unit tests for relconsole.config: pure, no network, no ssh."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relconsole.config import (
    Check,
    Config,
    ConfigError,
    FileUpload,
    Host,
    Service,
    find_config_path,
    load_config,
    parse_config,
    validate_branch,
    validate_name,
    validate_program,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
CFG = Path("/etc/relconsole/config.toml")  # a fake location: nothing is read from it

MINIMAL = """
[hosts.web1]
address = "10.0.0.11"

[hosts.web2]
address = "10.0.0.12"

[services.api]
repo = "git@example.com:acme/api.git"
hosts = ["web1", "web2"]
"""


def parse(text: str, path: Path = CFG) -> Config:
    return parse_config(text, path)


def error(text: str, path: Path = CFG) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path)
    message = str(info.value)
    assert "\n" not in message and len(message.splitlines()) == 1
    return info.value


def with_service(body: str, hosts: str = "") -> str:
    """MINIMAL's hosts plus one service [services.api] with the given body."""
    return (
        '[hosts.web1]\naddress = "10.0.0.11"\n[hosts.web2]\naddress = "10.0.0.12"\n'
        + hosts
        + "\n[services.api]\n"
        + body
    )


def with_host(body: str) -> str:
    return f'[hosts.web1]\n{body}\n[services.api]\nrepo = "/r"\nhosts = ["web1"]\n'


# --------------------------------------------------------------------------- defaults


def test_minimal_config_defaults():
    cfg = parse(MINIMAL)
    assert cfg.path == CFG
    s = cfg.settings
    assert s.state_dir == Path("/etc/relconsole/.relconsole")
    assert s.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert s.known_hosts.is_absolute()
    assert (s.poll_interval, s.connect_timeout, s.command_timeout) == (2.0, 10.0, 300.0)
    assert all(isinstance(v, float) for v in (s.poll_interval, s.connect_timeout))

    web1 = cfg.hosts["web1"]
    assert web1 == Host(
        name="web1",
        address="10.0.0.11",
        port=None,  # left to ssh_config, else 22 (hosts/route.py)
        user=None,  # left to ssh_config, else the local user
        key=None,
        supervisorctl="supervisorctl",
        sudo=False,
        root=None,
    )
    assert not web1.is_local
    assert web1.label == "10.0.0.11"

    api = cfg.services["api"]
    assert api == Service(
        name="api",
        repo="git@example.com:acme/api.git",
        hosts=("web1", "web2"),
        branch="main",
        path="/srv/api",
        programs=(),
        keep_releases=5,
        checks=(),
        files=(),
    )
    assert [h.name for h in cfg.hosts_of(api)] == ["web1", "web2"]


def test_empty_document_is_an_empty_config():
    cfg = parse("")
    assert cfg.hosts == {} and cfg.services == {}
    assert cfg.settings.state_dir == CFG.parent / ".relconsole"


def test_dataclasses_are_frozen():
    cfg = parse(MINIMAL)
    with pytest.raises(AttributeError):
        cfg.settings.poll_interval = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.hosts["web1"].port = 2222  # type: ignore[misc]


def test_service_dataclass_fills_default_path():
    assert Service(name="x", repo="/r", hosts=("h",)).path == "/srv/x"
    assert Service(name="x", repo="/r", hosts=("h",), path="/opt/x").path == "/opt/x"


def test_full_config_values():
    cfg = parse(
        """
[settings]
state_dir = "/var/lib/relconsole"
known_hosts = "/etc/ssh/ssh_known_hosts"
poll_interval = 0.5
connect_timeout = 3
command_timeout = 60.5

[hosts.web1]
address = "web1.example.com"
port = 2222
user = "deploy"
key = "/keys/id_ed25519"
supervisorctl = "supervisorctl -c /etc/supervisor/supervisord.conf"
sudo = true

[services.api]
repo = "https://example.com/acme/api.git"
branch = "release/2024.1"
hosts = ["web1"]
path = "/opt/api/"
programs = ["api", "workers:*", "grp:worker-1"]
keep_releases = 2
checks = [
  { name = "style", run = "ruff check .", timeout = 600 },
  { name = "tests", run = "pytest -q" },
]

[[services.api.files]]
src = "deploy/supervisor/*.conf"
dest = "/etc/supervisor/conf.d/"

[[services.api.files]]
src = "nginx/api.conf"
dest = "/etc/nginx/sites-enabled"
"""
    )
    s = cfg.settings
    assert s.state_dir == Path("/var/lib/relconsole")
    assert s.known_hosts == Path("/etc/ssh/ssh_known_hosts")
    assert (s.poll_interval, s.connect_timeout, s.command_timeout) == (0.5, 3.0, 60.5)
    assert isinstance(s.connect_timeout, float)
    h = cfg.hosts["web1"]
    assert (h.port, h.user, h.key, h.sudo) == (2222, "deploy", Path("/keys/id_ed25519"), True)
    assert h.supervisorctl == "supervisorctl -c /etc/supervisor/supervisord.conf"
    assert h.label == "deploy@web1.example.com:2222"
    api = cfg.services["api"]
    assert api.branch == "release/2024.1"
    assert api.path == "/opt/api"  # a trailing "/" is normalised away
    assert api.programs == ("api", "workers:*", "grp:worker-1")
    assert api.keep_releases == 2
    assert api.checks == (
        Check("style", "ruff check .", 600.0),
        Check("tests", "pytest -q", 900.0),
    )
    assert api.files == (
        FileUpload("deploy/supervisor/*.conf", "/etc/supervisor/conf.d"),
        FileUpload("nginx/api.conf", "/etc/nginx/sites-enabled"),
    )


def test_ipv6_address_label_is_bracketed():
    cfg = parse(with_host('address = "::1"\nuser = "deploy"'))
    assert cfg.hosts["web1"].address == "::1"
    assert cfg.hosts["web1"].label == "deploy@[::1]"


# --------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_config_directory(tmp_path, monkeypatch):
    monkeypatch.chdir("/")  # the cwd must not matter
    cfg_path = tmp_path / "conf" / "config.toml"
    cfg = parse(
        """
[settings]
state_dir = "state"
known_hosts = "../kh"

[hosts.web1]
address = "10.0.0.1"
key = "keys/id"

[hosts.box]
address = "local"
root = "./sandbox/box"

[services.api]
repo = "../src/api"
hosts = ["web1", "box"]
""",
        cfg_path,
    )
    base = tmp_path / "conf"
    assert cfg.settings.state_dir == base / "state"
    assert cfg.settings.known_hosts == tmp_path / "kh"
    assert cfg.hosts["web1"].key == base / "keys" / "id"
    box = cfg.hosts["box"]
    assert box.root == base / "sandbox" / "box"
    assert box.is_local
    assert box.label == f"local:{base / 'sandbox' / 'box'}"
    assert cfg.services["api"].repo == str(tmp_path / "src" / "api")


def test_relative_config_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = parse(MINIMAL, Path("config.toml"))
    assert cfg.path == tmp_path / "config.toml"
    assert cfg.settings.state_dir == tmp_path / ".relconsole"


def test_tilde_is_expanded(monkeypatch):
    monkeypatch.setenv("HOME", "/home/tester")
    cfg = parse(
        with_host('address = "h"\nkey = "~/.ssh/id_rsa"') + '[settings]\nknown_hosts = "~/kh"\n'
    )
    assert cfg.hosts["web1"].key == Path("/home/tester/.ssh/id_rsa")
    assert cfg.settings.known_hosts == Path("/home/tester/kh")


@pytest.mark.parametrize(
    "repo",
    [
        "git@example.com:acme/api.git",
        "example.com:acme/api.git",
        "ssh://git@example.com:2222/acme/api.git",
        "https://example.com/acme/api.git",
        "file:///srv/git/api.git",
    ],
)
def test_repo_urls_are_kept_as_is(repo):
    cfg = parse(with_service(f'repo = "{repo}"\nhosts = ["web1"]'))
    assert cfg.services["api"].repo == repo


@pytest.mark.parametrize(
    ("repo", "expected"),
    [
        ("/srv/git/api", "/srv/git/api"),
        ("api", "/etc/relconsole/api"),
        ("./repos/api.git", "/etc/relconsole/repos/api.git"),
        ("../api", "/etc/api"),
        ("./a:b", "/etc/relconsole/a:b"),  # a "/" before the ":" makes it a path, like git
    ],
)
def test_local_repo_paths_are_made_absolute(repo, expected):
    cfg = parse(with_service(f'repo = "{repo}"\nhosts = ["web1"]'))
    assert cfg.services["api"].repo == expected


def test_local_host_root_absolute_is_kept():
    cfg = parse(with_host('address = "local"\nroot = "/tmp/sandbox"'))
    assert cfg.hosts["web1"].root == Path("/tmp/sandbox")


# --------------------------------------------------------------------------- the sample


def test_sample_config_at_repo_root_loads():
    cfg = load_config(REPO_ROOT / "config.toml")
    assert set(cfg.hosts) == {"web1", "web2", "bastion"}
    api = cfg.services["api"]
    assert api.hosts == ("web1", "web2")
    assert api.checks and api.files and api.programs
    assert cfg.settings.state_dir == REPO_ROOT / ".relconsole"


def test_sample_config_documents_every_key():
    text = (REPO_ROOT / "config.toml").read_text()
    for key in (
        "state_dir",
        "known_hosts",
        "poll_interval",
        "connect_timeout",
        "command_timeout",
        "ssh_config",
        "address",
        "port",
        "user",
        "key",
        "supervisorctl",
        "sudo",
        "root",
        "jump",
        "forward_agent",
        "repo",
        "branch",
        "hosts",
        "path",
        "programs",
        "keep_releases",
        "checks",
        "name",
        "run",
        "timeout",
        "src",
        "dest",
        "secrets",
        "key_passphrase",
        "vars",
        "shared",
        "setup",
        "setup_secrets",
        "health",
        "url",
        "tcp",
        "expect",
        "rolling",
        "pause",
        "confirm",
        "branches",
        "on",
        "format",
        "services",
    ):
        assert re.search(rf"(^|[\s{{,#]){key} =", text, re.MULTILINE), f"{key} is not in the sample"
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"no comment on: {line}"


# --------------------------------------------------------------------------- error messages


def test_unknown_key_suggests_the_close_one():
    err = error(with_service('repo = "/r"\nhostz = ["web1"]'))
    assert str(err) == (
        "/etc/relconsole/config.toml: [services.api] key 'hostz': unknown key (did you mean 'hosts'?)"
    )
    assert (err.table, err.key, err.line) == ("services.api", "hostz", None)
    assert err.message == "unknown key (did you mean 'hosts'?)"


def test_unknown_key_without_close_match_lists_allowed():
    err = error("[settings]\nfrobnicate = 1\n")
    assert str(err).endswith(
        "[settings] key 'frobnicate': unknown key (allowed: state_dir, "
        "known_hosts, poll_interval, connect_timeout, command_timeout, lock_ttl, ssh_config, "
        "max_parallel)"
    )


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("prot", "port"),
        ("adress", "address"),
        ("Address", "address"),
        ("supervisor_ctl", "supervisorctl"),
        ("rooot", "root"),
    ],
)
def test_did_you_mean_for_host_keys(typo, meant):
    err = error(with_host(f'address = "h"\n{typo} = 1'))
    assert str(err).endswith(f"key '{typo}': unknown key (did you mean '{meant}'?)")


def test_unknown_top_level_key():
    err = error('[service.api]\nrepo = "x"\n')
    assert "key 'service': unknown key (did you mean 'services'?)" in str(err)
    assert err.table is None


def test_settings_key_outside_settings():
    err = error("poll_interval = 1\n" + MINIMAL)
    assert str(err).endswith(
        "key 'poll_interval': unknown key at the top level (it belongs under [settings])"
    )


def test_unknown_key_in_host_and_in_check_entry():
    err = error(with_host('address = "h"\nprot = 22'))
    assert "[hosts.web1] key 'prot': unknown key (did you mean 'port'?)" in str(err)
    err = error(
        with_service(
            'repo = "/r"\nhosts = ["web1"]\nchecks = [{name = "a", run = "b", timout = 3}]'
        )
    )
    assert str(err).endswith(
        "[services.api] key 'checks' (entry 1), key 'timout': unknown key (did you mean 'timeout'?)"
    )
    assert err.table == "services.api.checks[0]"


def test_undefined_host():
    err = error(with_service('repo = "/r"\nhosts = ["web1", "web9"]'))
    assert str(err) == (
        "/etc/relconsole/config.toml: [services.api] key 'hosts': "
        "host 'web9' is not defined in [hosts] (defined: web1, web2)"
    )
    assert (err.table, err.key) == ("services.api", "hosts")


def test_undefined_host_when_no_hosts():
    err = error('[services.api]\nrepo = "/r"\nhosts = ["web1"]\n')
    assert "host 'web1' is not defined in [hosts] (defined: none)" in str(err)


def test_wrong_type_port():
    err = error(with_host('address = "h"\nport = "22"'))
    assert str(err).endswith("[hosts.web1] key 'port': expected an integer, got string \"22\"")
    assert (err.table, err.key) == ("hosts.web1", "port")


def test_syntax_error_has_line_and_column():
    text = '[hosts.web1]\naddress = "h"\n\n[services.api]\nrepo = "/r"\nhosts = ["web1"]\nbranch main\n'
    err = error(text)
    assert err.line == 7 and err.column is not None
    assert str(err) == (
        f"/etc/relconsole/config.toml: line 7, column {err.column}: "
        "TOML syntax error: Expected '=' after a key in a key/value pair"
    )


def test_syntax_error_at_end_of_document():
    err = error('[hosts.web1]\naddress = "h')
    assert err.line == 2
    assert "line 2: TOML syntax error at end of file: Unterminated string" in str(err)


def test_duplicate_table_is_a_syntax_error():
    err = error("[hosts.web1]\naddress = 'a'\n[hosts.web1]\naddress = 'b'\n")
    assert err.line == 3 and "TOML syntax error" in str(err)


def test_empty_hosts_list():
    err = error(with_service('repo = "/r"\nhosts = []'))
    assert str(err).endswith("[services.api] key 'hosts': must list at least one host")


def test_missing_run_in_check_entry():
    err = error(
        with_service(
            'repo = "/r"\nhosts = ["web1"]\nchecks = [{ name = "a", run = "true" }, { name = "b" }]'
        )
    )
    assert str(err) == (
        "/etc/relconsole/config.toml: [services.api] key 'checks' (entry 2): missing required key 'run'"
    )
    assert (err.table, err.key) == ("services.api.checks[1]", "run")


def test_missing_required_keys():
    assert str(error("[hosts.web1]\nport = 22\n")).endswith(
        "[hosts.web1]: missing required key 'address'"
    )
    assert str(error(with_service('hosts = ["web1"]'))).endswith(
        "[services.api]: missing required key 'repo'"
    )
    assert str(error(with_service('repo = "/r"'))).endswith(
        "[services.api]: missing required key 'hosts'"
    )
    err = error(with_service('repo = "/r"\nhosts = ["web1"]\n[[services.api.files]]\nsrc = "a"\n'))
    assert str(err).endswith("[services.api] key 'files' (entry 1): missing required key 'dest'")


def test_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "config.toml")
    assert str(info.value) == "config.toml: no such file (set --config or RELCONSOLE_CONFIG)"
    assert info.value.file == "config.toml"


def test_file_outside_cwd_is_shown_as_given(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "b" / "x.toml")
    assert str(info.value).startswith(f"{tmp_path / 'b' / 'x.toml'}: no such file")


def test_relative_given_path_is_shown_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = error("[hosts.web1]\nport = 1\n", Path("sub/config.toml"))
    assert str(err).startswith("sub/config.toml: [hosts.web1]")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_unreadable_path_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(Path("bad\x00name.toml"))


def test_load_config_reads_the_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL)
    cfg = load_config(path)
    assert cfg.path == path and set(cfg.services) == {"api"}


def test_non_utf8_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b'[hosts.web1]\naddress = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 2
    assert "not valid UTF-8" in str(info.value)


def test_utf8_bom_is_tolerated():
    assert parse_config(b"\xef\xbb\xbf" + MINIMAL.encode(), CFG).services


def test_lone_surrogate_in_str_input():
    err = error('[hosts.web1]\naddress = "\ud800"\n')
    assert "not valid Unicode" in str(err)


# --------------------------------------------------------------------------- types and shapes


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('address = "h"\nport = true', "key 'port': expected an integer, got boolean true"),
        ('address = "h"\nport = 22.0', "key 'port': expected an integer, got float 22.0"),
        ('address = "h"\nport = 0', "key 'port': must be between 1 and 65535, got 0"),
        ('address = "h"\nport = 65536', "key 'port': must be between 1 and 65535"),
        (
            'address = "h"\nsudo = "yes"',
            "key 'sudo': expected a boolean (true or false), got string",
        ),
        ('address = "h"\nsudo = 1', "key 'sudo': expected a boolean"),
        ("address = 10", "key 'address': expected a string, got integer 10"),
        ('address = "h"\nkey = ["a"]', "key 'key': expected a string, got array"),
        ('address = "h"\nuser = 1979-05-27', "key 'user': expected a string, got date 1979-05-27"),
        ('address = "h"\nsupervisorctl = ""', "key 'supervisorctl': must not be empty"),
        (
            'address = "h"\nsupervisorctl = "supervisorctl\\nrm -rf /"',
            "key 'supervisorctl': must not contain control characters",
        ),
        ('address = "h"\nroot = "/tmp/x"', "key 'root': only allowed with address = \"local\""),
        (
            'address = "local"',
            "[hosts.web1]: missing required key 'root' (required with address = \"local\")",
        ),
        ('address = "local"\nroot = ""', "key 'root': must not be empty"),
    ],
)
def test_host_errors(body, needle):
    err = error(with_host(body))
    assert "[hosts.web1]" in str(err)
    assert needle in str(err)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("poll_interval = 0", "key 'poll_interval': must be a number > 0"),
        ("poll_interval = -1.5", "key 'poll_interval': must be a number > 0"),
        ("poll_interval = nan", "key 'poll_interval': must be a number > 0"),
        ("connect_timeout = inf", "key 'connect_timeout': must be a number > 0"),
        ("connect_timeout = true", "key 'connect_timeout': expected a number, got boolean true"),
        ('command_timeout = "300"', "key 'command_timeout': expected a number, got string \"300\""),
        ("state_dir = 1", "key 'state_dir': expected a string, got integer 1"),
        ('state_dir = ""', "key 'state_dir': must not be empty"),
        ('known_hosts = "a\\u0000b"', "key 'known_hosts': must not contain control characters"),
    ],
)
def test_settings_errors(body, needle):
    err = error(f"[settings]\n{body}\n")
    assert str(err).startswith("/etc/relconsole/config.toml: [settings] ")
    assert needle in str(err)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("settings = 3", "key 'settings': expected a table, got integer 3"),
        ('hosts = "web1"', "key 'hosts': expected a table, got string \"web1\""),
        ('services = ["api"]', "key 'services': expected a table, got array"),
        (
            '[hosts]\nweb1 = "10.0.0.1"',
            "[hosts] key 'web1': expected a table (a [hosts.web1] section), got string",
        ),
        (
            "[services]\napi = 1",
            "[services] key 'api': expected a table (a [services.api] section), got integer 1",
        ),
        ('[[hosts.web1]]\naddress = "h"', "[hosts] key 'web1': expected a table"),
        ("[[settings]]\npoll_interval = 1", "key 'settings': expected a table, got array"),
    ],
)
def test_wrong_shapes_at_top(text, needle):
    assert needle in str(error(text))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            'repo = "/r"\nhosts = "web1"',
            "key 'hosts': expected an array of strings, got string \"web1\"",
        ),
        (
            'repo = "/r"\nhosts = ["web1", 2]',
            "key 'hosts': expected an array of strings, item 2 is integer 2",
        ),
        ('repo = "/r"\nhosts = ["web1", "web1"]', "key 'hosts': host 'web1' is listed twice"),
        (
            'repo = "/r"\nhosts = ["web1"]\nfiles = "x"',
            "key 'files': expected an array of tables, got string \"x\"",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nfiles = ["x"]',
            "key 'files' (entry 1): expected a table, got string \"x\"",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nchecks = { name = "a", run = "b" }',
            "key 'checks': expected an array of tables, got table",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nchecks = ["ruff check ."]',
            "key 'checks' (entry 1): expected a table, got string",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nchecks = [{ name = "", run = "x" }]',
            "key 'checks' (entry 1), key 'name': must not be empty",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nchecks = [{ name = "a", run = " " }]',
            "key 'checks' (entry 1), key 'run': must not be empty",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nchecks = [{ name = "a", run = 1 }]',
            "key 'checks' (entry 1), key 'run': expected a string, got integer 1",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nchecks = [{ name = "a", run = "x", timeout = 0 }]',
            "key 'checks' (entry 1), key 'timeout': must be a number > 0",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nchecks = [{ name = "a", run = "x", timeout = false }]',
            "key 'checks' (entry 1), key 'timeout': expected a number, got boolean false",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nchecks = [{ name = "a", run = "x" }, { name = "a", run = "y" }]',
            "key 'checks': check name 'a' is used twice",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nkeep_releases = 0',
            "key 'keep_releases': must be at least 1, got 0",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nkeep_releases = 5.0',
            "key 'keep_releases': expected an integer, got float 5.0",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nkeep_releases = true',
            "key 'keep_releases': expected an integer, got boolean true",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nprograms = "api"',
            "key 'programs': expected an array of strings",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nprograms = ["api", "api"]',
            "key 'programs': program 'api' is listed twice",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nprograms = ["api;reboot"]',
            "key 'programs': invalid program name 'api;reboot'",
        ),
        (
            'repo = "/r"\nhosts = ["web1"]\nbranch = 3',
            "key 'branch': expected a string, got integer 3",
        ),
        ('repo = ""\nhosts = ["web1"]', "key 'repo': must not be empty"),
        (
            'repo = "--upload-pack=touch /tmp/pwned"\nhosts = ["web1"]',
            "key 'repo': must not start with '-'",
        ),
        ('repo = "/r\\n"\nhosts = ["web1"]', "key 'repo': must not contain control characters"),
    ],
)
def test_service_errors(body, needle):
    err = error(with_service(body))
    assert "[services.api]" in str(err)
    assert needle in str(err)


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("srv/api", "must be an absolute path"),
        ("/", "must not be '/' itself"),
        ("/srv//api", "no '//'"),
        ("//srv/api", "no '//'"),
        ("/srv/../etc", "no '.' or '..' parts"),
        ("/srv/api/..", "no '.' or '..' parts"),
        ("/srv/./api", "no '.' or '..' parts"),
        ("/srv/api\\t", "must not contain control characters"),
        ("/srv/a\\u0000pi", "must not contain control characters"),
        ("", "must be an absolute path"),
    ],
)
def test_bad_service_path(path, needle):
    err = error(with_service(f'repo = "/r"\nhosts = ["web1"]\npath = "{path}"'))
    assert "[services.api] key 'path': " in str(err)
    assert needle in str(err)
    assert err.key == "path"


@pytest.mark.parametrize(
    ("src", "needle"),
    [
        ("../secrets/*", "must not contain '..'"),
        ("deploy/../../etc/passwd", "must not contain '..'"),
        ("deploy/..", "must not contain '..'"),
        ("..", "must not contain '..'"),
        ("/etc/passwd", "must be relative to the repository root"),
        ("", "must not be empty"),
    ],
)
def test_files_src_escaping_is_refused(src, needle):
    err = error(
        with_service(
            f'repo = "/r"\nhosts = ["web1"]\n[[services.api.files]]\nsrc = "{src}"\ndest = "/etc"\n'
        )
    )
    assert str(err).startswith(
        "/etc/relconsole/config.toml: [services.api] key 'files' (entry 1), key 'src': "
    )
    assert needle in str(err)
    assert (err.table, err.key) == ("services.api.files[0]", "src")


def test_files_src_with_dots_in_names_is_fine():
    cfg = parse(
        with_service(
            'repo = "/r"\nhosts = ["web1"]\n[[services.api.files]]\nsrc = "deploy/..conf/a..b"\ndest = "/etc/x"\n'
        )
    )
    assert cfg.services["api"].files[0].src == "deploy/..conf/a..b"


@pytest.mark.parametrize("dest", ["etc/x", "/", "/etc/../x", "/etc//x"])
def test_files_dest_must_be_normalised_absolute(dest):
    err = error(
        with_service(
            f'repo = "/r"\nhosts = ["web1"]\n[[services.api.files]]\nsrc = "a"\ndest = "{dest}"\n'
        )
    )
    assert "key 'files' (entry 1), key 'dest': " in str(err)


def test_hostile_branch_in_config_is_refused_with_clear_message():
    err = error(with_service('repo = "/r"\nhosts = ["web1"]\nbranch = "x;touch /tmp/pwned"'))
    assert str(err) == (
        "/etc/relconsole/config.toml: [services.api] key 'branch': invalid branch "
        "'x;touch /tmp/pwned': character ';' is not allowed (only letters, digits and . _ / + @ -)"
    )


def test_newline_in_value_stays_on_one_line():
    err = error(with_service('repo = "/r"\nhosts = ["web1"]\nbranch = "main\\nrm -rf /"'))
    assert "'main\\nrm -rf /'" in str(err)


def test_hostile_key_names_are_escaped():
    err = error('[settings]\n"evil\\nkey" = 1\n')
    assert "key 'evil\\nkey': unknown key" in str(err)
    err = error('[hosts."a\\nb"]\naddress = "h"\n')
    assert "[hosts] key 'a\\nb': invalid host name 'a\\nb'" in str(err)


# --------------------------------------------------------------------------- names


GOOD_NAMES = ["web1", "api", "A", "0", "web-1.example_2", "a..b", "x-"]
HOSTILE = [
    "",
    "-rf",
    "x;touch /tmp/pwned",
    "$(id)",
    "`id`",
    "a b",
    "a\nb",
    "a\tb",
    "'quoted'",
    '"quoted"',
    "a|b",
    "a&b",
    "a>b",
    "a/b",
    "../etc",
    ".hidden",
    "_x",
    "ünïcode",
    "a\x00b",
    "a*",
    "a:b",
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_validate_name_accepts(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", HOSTILE)
def test_validate_name_refuses(name):
    with pytest.raises(ValueError, match="invalid name"):
        validate_name(name)


def test_validate_name_kind_in_message():
    with pytest.raises(ValueError, match=r"^invalid service name '\$\(id\)'"):
        validate_name("$(id)", "service name")


def test_validate_name_refuses_trailing_newline():
    # re's "$" would accept "web1\n"; fullmatch must not
    with pytest.raises(ValueError):
        validate_name("web1\n")


@pytest.mark.parametrize("name", ["we b1", "-web1", "web1;id", ".web"])
def test_bad_host_and_service_names_in_config(name):
    err = error(f'[hosts."{name}"]\naddress = "h"\n')
    assert f"[hosts] key '{name}': invalid host name '{name}'" in str(err)
    err = error(f'[services."{name}"]\nrepo = "/r"\nhosts = []\n')
    assert f"[services] key '{name}': invalid service name '{name}'" in str(err)


@pytest.mark.parametrize(
    "program", ["api", "api_2", "web.worker-1", "workers:*", "workers:worker_0", "0"]
)
def test_validate_program_accepts(program):
    assert validate_program(program) == program


@pytest.mark.parametrize(
    "program",
    ["", ":api", "api:", "api:*x", "*", "a:b:c", "a b", "$(id)", "-api", "api\n", "grp:-x"],
)
def test_validate_program_refuses(program):
    with pytest.raises(ValueError, match="invalid program name"):
        validate_program(program)


@pytest.mark.parametrize(
    "branch",
    ["main", "release/1.2", "feature/x_y-z", "v1.0+build", "user@fix", "a.b", "HEAD-ish", "x/y/z"],
)
def test_validate_branch_accepts(branch):
    assert validate_branch(branch) == branch


@pytest.mark.parametrize(
    ("branch", "needle"),
    [
        ("x;touch /tmp/pwned", "character ';' is not allowed"),
        ("$(id)", "character '$' is not allowed"),
        ("`id`", "character '`' is not allowed"),
        ("main\n", "character '\\n' is not allowed"),
        ("a\nb", "character '\\n' is not allowed"),
        ("a\rb", "character '\\r' is not allowed"),
        ("a\x00b", "character '\\x00' is not allowed"),
        ("-main", "must not start with '-'"),
        ("--upload-pack=x", "character '=' is not allowed"),
        ("my branch", "character ' ' is not allowed"),
        ("'main'", 'character "\'" is not allowed'),
        ('"main"', "character '\"' is not allowed"),
        ("a|b", "character '|' is not allowed"),
        ("a&&b", "character '&' is not allowed"),
        ("a>b", "character '>' is not allowed"),
        ("a\\b", "is not allowed"),
        ("a~1", "character '~' is not allowed"),
        ("a^", "character '^' is not allowed"),
        ("a:b", "character ':' is not allowed"),
        ("a?", "character '?' is not allowed"),
        ("a*", "character '*' is not allowed"),
        ("a[b", "character '[' is not allowed"),
        ("ünï", "is not allowed"),
        ("a..b", "must not contain '..'"),
        ("a//b", "must not contain '//'"),
        ("a/", "must not end with '/'"),
        ("main.lock", "'.lock'"),
        ("a.lock/b", "'.lock'"),
        ("/main", "must not start with '/'"),
        (".hidden", "no part may start with '.'"),
        ("a/.b", "no part may start with '.'"),
        ("@", "must not be '@'"),
        ("", "must not be empty"),
    ],
)
def test_validate_branch_refuses(branch, needle):
    with pytest.raises(ValueError) as info:
        validate_branch(branch)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message and "\r" not in message and "\x00" not in message


def test_validate_branch_rejects_non_string():
    with pytest.raises(ValueError):
        validate_branch(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "address", ["10.0.0.11", "web1.example.com", "::1", "fe80::1", "h_1-x", "local"]
)
def test_good_addresses(address):
    body = f'address = "{address}"' + ('\nroot = "/tmp/x"' if address == "local" else "")
    assert parse(with_host(body)).hosts["web1"].address == address


@pytest.mark.parametrize(
    "address", ["", "-oProxyCommand=id", "a b", "$(id)", "[::1]", "h;id", "h\n", "user@host", "h/x"]
)
def test_bad_addresses(address):
    err = error(with_host(f'address = "{address}"'.replace("\n", "\\n")))
    assert "[hosts.web1] key 'address': invalid address" in str(err)


@pytest.mark.parametrize("user", ["deploy", "_svc", "a.b-c_d", "machine$"])
def test_good_users(user):
    assert parse(with_host(f'address = "h"\nuser = "{user}"')).hosts["web1"].user == user


@pytest.mark.parametrize("user", ["", "Deploy", "-x", "1x", "a b", "a;id", "$x", "a$b", "root\\n"])
def test_bad_users(user):
    err = error(with_host(f'address = "h"\nuser = "{user}"'))
    assert "[hosts.web1] key 'user': invalid user" in str(err)


# --------------------------------------------------------------------------- find_config_path


def test_find_config_path_precedence(tmp_path):
    env = {"RELCONSOLE_CONFIG": "/env/relconsole.toml"}
    assert find_config_path("/cli/c.toml", env, tmp_path) == Path("/cli/c.toml")
    assert find_config_path(None, env, tmp_path) == Path("/env/relconsole.toml")
    assert find_config_path(None, {}, tmp_path) == tmp_path / "config.toml"


def test_find_config_path_empty_values_count_as_unset(tmp_path):
    assert find_config_path("", {"RELCONSOLE_CONFIG": ""}, tmp_path) == tmp_path / "config.toml"
    assert find_config_path("", {"RELCONSOLE_CONFIG": "/e.toml"}, tmp_path) == Path("/e.toml")


def test_find_config_path_relative_values_are_relative_to_cwd(tmp_path, monkeypatch):
    assert find_config_path("conf/x.toml", {}, tmp_path) == tmp_path / "conf" / "x.toml"
    assert find_config_path(None, {"RELCONSOLE_CONFIG": "y.toml"}, tmp_path) == tmp_path / "y.toml"
    monkeypatch.chdir(tmp_path)
    assert find_config_path(None, {}) == tmp_path / "config.toml"


def test_find_config_path_expands_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/tester")
    assert find_config_path(None, {"RELCONSOLE_CONFIG": "~/r.toml"}, tmp_path) == Path(
        "/home/tester/r.toml"
    )


def test_find_config_path_uses_os_environ_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("RELCONSOLE_CONFIG", str(tmp_path / "from-env.toml"))
    assert find_config_path(None) == tmp_path / "from-env.toml"


# --------------------------------------------------------------------------- garbage in


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",
        b"\xff\xfe\x00",
        b"a=" + b"[" * 5000,
        b"a=" + b"{b=" * 3000,
        b"a = " + b"9" * 5000,
        b"a = 1979-99-99",
        b"[a]\n" * 3,
        b"a = [1, 'x', {b = 2}]",
        b"[[services]]\nrepo = 1",
        b"[[services.api]]\nrepo = 1",
        b"[services.api]\nchecks = [[1, 2]]",
        b"[services.api.checks]\nname = 'a'",
        b"[settings.state_dir]",
    ],
)
def test_garbage_raises_config_error_only(data):
    with pytest.raises(ConfigError) as info:
        parse_config(data, CFG)
    assert len(str(info.value).splitlines()) == 1


def test_config_error_pickles():
    import pickle

    err = error(with_service('repo = "/r"\nhosts = ["web9"]'))
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err)
    assert (copy.table, copy.key, copy.message, copy.file) == (
        err.table,
        err.key,
        err.message,
        err.file,
    )


def test_non_text_input_is_a_config_error():
    with pytest.raises(ConfigError):
        parse_config(12345, CFG)  # type: ignore[arg-type]


def _assert_config_or_config_error(data: str | bytes) -> None:
    try:
        cfg = parse_config(data, CFG)
    except ConfigError as exc:
        text = str(exc)
        assert text.startswith("/etc/relconsole/config.toml: ")
        assert len(text.splitlines()) == 1
    else:
        assert isinstance(cfg, Config)


FUZZ = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_arbitrary_bytes(data):
    _assert_config_or_config_error(data)


@FUZZ
@given(st.text(max_size=500))
def test_fuzz_arbitrary_text(text):
    _assert_config_or_config_error(text)


SAMPLE = (REPO_ROOT / "config.toml").read_bytes()

_snippets = st.sampled_from(
    [
        b"=",
        b"[",
        b"]",
        b"[[",
        b"]]",
        b'"',
        b"'",
        b"\n",
        b"{",
        b"}",
        b",",
        b"#",
        b".",
        b"-",
        b"true",
        b"0",
        b"-1",
        b"1.5",
        b"nan",
        b"inf",
        b"1979-05-27",
        b'""',
        b"[]",
        b"{}",
        b'".."',
        b'"/"',
        b'"local"',
        b'"web9"',
        b"\xff",
        b"\x00",
        b"\\u0000",
        b"hosts",
        b"services",
        b"settings",
        b"files",
        b"checks",
        b"port",
        b"root",
        b"address",
    ]
)


@st.composite
def mutated_sample(draw) -> bytes:
    data = bytearray(SAMPLE)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "swap_lines", "dup_line"]))
        pos = draw(st.integers(0, len(data)))
        if op == "delete":
            del data[pos : pos + draw(st.integers(1, 40))]
        elif op == "insert":
            data[pos:pos] = draw(_snippets | st.binary(min_size=1, max_size=8))
        elif op == "replace":
            end = pos + draw(st.integers(1, 10))
            data[pos:end] = draw(_snippets)
        else:
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "swap_lines":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines.insert(j, lines[i])
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@FUZZ
@given(mutated_sample())
def test_fuzz_mutated_valid_config(data):
    _assert_config_or_config_error(data)


# Structured fuzzing: well-formed TOML with values of every type in every place.
_scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["web1", "web2", "local", "/srv/x", "../x", "main", "api", "a:*", ""])
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["name", "run", "src", "dest", "timeout", "x"]), inner, max_size=3
        )
    ),
    max_leaves=8,
)
_service_keys = st.sampled_from(
    ["repo", "branch", "hosts", "path", "programs", "keep_releases", "checks", "files", "bogus"]
)
_host_keys = st.sampled_from(
    ["address", "port", "user", "key", "supervisorctl", "sudo", "root", "bogus"]
)


@FUZZ
@given(
    st.dictionaries(_host_keys, _values, max_size=4),
    st.dictionaries(_service_keys, _values, max_size=5),
    st.dictionaries(st.sampled_from(["poll_interval", "state_dir", "x"]), _values, max_size=2),
)
def test_fuzz_structured_values(host_overrides, service_overrides, settings_overrides):
    tomli_w = pytest.importorskip("tomli_w")
    doc = {
        "settings": dict(settings_overrides),
        "hosts": {"web1": {"address": "10.0.0.1", **host_overrides}},
        "services": {"api": {"repo": "/r", "hosts": ["web1"], **service_overrides}},
    }
    try:
        text = tomli_w.dumps(doc)
    except Exception:  # a value TOML cannot represent (e.g. nan in some versions)
        return
    _assert_config_or_config_error(text)


def test_no_textual_import():
    import subprocess

    code = "import sys, relconsole.config; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
