"""The engine and the headless path never import Textual (checked in a fresh interpreter).

Every module outside ``relconsole.ui`` (and ``relconsole.app``, the console's door) is
imported on its own: none may pull in Textual. import-linter's contracts in
pyproject.toml say the same statically; this proves it at run time.

One fresh interpreter per module (in a shared one, a module importing Textual would
hide whether the next one does too), all started at once: ~40 interpreters one after
the other were the slowest part of the fast tier.
"""

import os
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

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


def import_alone(module: str) -> subprocess.CompletedProcess:
    code = f"import sys, {module}; print('textual' in sys.modules)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.fixture(scope="module")
def imported_alone(request) -> dict[str, subprocess.CompletedProcess]:
    """Each selected module imported in its own fresh interpreter, concurrently."""
    selected = [
        item.callspec.params["module"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    workers = 2 * (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(selected, pool.map(import_alone, selected)))


@pytest.mark.parametrize("module", HEADLESS)
def test_module_does_not_import_textual(module, imported_alone):
    out = imported_alone[module]
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


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
