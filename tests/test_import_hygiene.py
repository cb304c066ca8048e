"""The engine and the headless path never import Textual (checked in a fresh interpreter).

Every module outside ``relconsole.ui`` (and ``relconsole.app``, the console's door) is
imported on its own: none may pull in Textual. import-linter's contracts in
pyproject.toml say the same statically; this proves it at run time.
"""

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


@pytest.mark.parametrize("module", HEADLESS)
def test_module_does_not_import_textual(module):
    code = f"import sys, {module}; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_headless_help_does_not_import_textual_or_the_engine():
    code = (
        "import sys\nfrom relconsole.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('textual', 'paramiko', 'git') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
