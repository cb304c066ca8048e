"""The engine and the headless path never import Textual (checked in a fresh interpreter).

Every module outside ``relconsole.ui`` (and ``relconsole.app``, the console's door) is
imported, one after the other, in one fresh interpreter that notes after each import
whether Textual is loaded: none may pull it in. A module that does is named as the one
with which Textual first appeared (every later one then fails too). import-linter's
contracts in pyproject.toml say the same statically; this proves it at run time. (One
interpreter per module proved the same in 7 s instead of 0.5 s of the fast tier.)
"""

import json
import pkgutil
import subprocess
import sys

import pytest

import relconsole

CONSOLE = ("relconsole.ui", "relconsole.app")
HEADLESS = sorted(
    m.name
    for m in pkgutil.walk_packages(relconsole.__path__, "relconsole.")
    if not m.name.startswith(CONSOLE)
    # not modules to import: the helper runs on hosts, __main__ runs the CLI
    and m.name not in ("relconsole.status.remote_helper", "relconsole.__main__")
)


def test_every_package_is_walked():
    assert {
        "relconsole.pipeline",
        "relconsole.cli",
        "relconsole.hosts.ssh",
        "relconsole.status.poller",
        "relconsole.headless.commands",
    } <= set(HEADLESS)


@pytest.fixture(scope="module")
def textual_after() -> dict[str, bool]:
    """For each module of ``HEADLESS``, imported in that order in one fresh interpreter:
    whether Textual was loaded once it was imported."""
    code = (
        "import importlib, json, sys\n"
        "seen = {}\n"
        f"for name in {HEADLESS!r}:\n"
        "    importlib.import_module(name)\n"
        "    seen[name] = 'textual' in sys.modules\n"
        "print(json.dumps(seen))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", HEADLESS)
def test_module_does_not_import_textual(module, textual_after):
    assert not textual_after[module], f"Textual was first loaded with {module} or before it"


def test_headless_help_does_not_import_textual_or_the_engine():
    code = (
        "import sys\nfrom relconsole.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('textual', 'paramiko', 'git') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_completion_names_load_nothing_of_the_loader_or_the_engine(tmp_path):
    """A TAB starts relconsole --complete-names: it reads the TOML and nothing more."""
    config = tmp_path / "config.toml"
    config.write_text('[services.api]\nrepo = "x"\nhosts = []\n')
    code = (
        "import sys\nfrom relconsole.cli import main\n"
        f"main(['--config', {str(config)!r}, '--complete-names', 'services'])\n"
        "heavy = ('textual', 'paramiko', 'git', 'relconsole.config', 'relconsole.hosts')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines() == ["api", "[]"]


def test_the_pipeline_loads_gitpython_only_when_a_checkout_begins():
    """GitPython is ~40 ms of a build's start: the first event comes before it loads."""
    code = (
        "import sys, relconsole.pipeline, relconsole.headless.commands; print('git' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_checking_routes_without_an_ssh_config_file_loads_no_paramiko(tmp_path):
    """paramiko is ~90 ms of a build's start: without an ssh_config file to parse,
    working out the routes (before the first event) must not load it."""
    config = tmp_path / "config.toml"
    config.write_text(
        '[settings]\nssh_config = ""\n[hosts.h1]\naddress = "127.0.0.9"\njump = "bastion@127.0.0.10"\n'
        '[services.api]\nrepo = "x"\nhosts = ["h1"]\n'
    )
    code = (
        "import sys, relconsole.pipeline\n"
        "from relconsole.config import load_config\n"
        "from relconsole.hosts.connect import check_routes\n"
        f"config = load_config({str(config)!r})\n"
        "check_routes(config.hosts.values(), config.settings)\n"
        "print('paramiko' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
