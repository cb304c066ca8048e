"""``relconsole --demo``: a sandbox that shows relconsole working with no servers.

Under the user's data directory it makes (once) and reuses:

    demo/repo/web/              a git repository of a small service, ``web``
    demo/hosts/web1, web2/      two local hosts: each a root folder standing in for
                                ``/`` with its own supervisord (supervisor from PyPI)
    demo/config.toml            written with tomli-w; hosts are ``address = "local"``
    demo/state/                 relconsole's state (workspaces, history)

No sshd, no root and no network are needed. Edit ``demo/repo/web/app.py``, commit,
and build again to watch a new release roll out.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from relconsole.errors import RelconsoleError

#: The sample repository and host templates, shipped as package data.
FILES = resources.files("relconsole.demo") / "files"
SERVICE = "web"
HOSTS = ("web1", "web2")
# Unix socket paths must fit in 108 bytes; longer data dirs fall back to /tmp.
_MAX_SOCKET_PATH = 100


def demo_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "relconsole" / "demo"


def _python() -> str:
    return sys.executable


def _socket_path(root: Path, host: str) -> str:
    path = root / "etc" / "supervisor" / "supervisor.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return str(path)
    return f"/tmp/relconsole-demo-{os.getuid()}-{host}.sock"


def _template(name: str) -> Template:
    return Template((FILES / name).read_text("utf-8"))


def _supervisord_conf(root: Path, host: str) -> str:
    etc = root / "etc" / "supervisor"
    return _template("supervisord.conf.in").substitute(
        host=host, socket=_socket_path(root, host), etc=etc, root=root
    )


def supervisorctl_command(root: Path) -> str:
    conf = root / "etc" / "supervisor" / "supervisord.conf"
    return shlex.join([_python(), "-m", "supervisor.supervisorctl", "-c", str(conf)])


def _service_files() -> dict[str, str]:
    """The demo repository's files (package data under ``files/repo``), by path.

    A ``.in`` file is a template: ``$python`` becomes this interpreter. Its program
    config uses ``%(here)s`` (the conf.d folder it is installed in, expanded by
    supervisor per included file), so one config serves every host root.
    """
    found: dict[str, str] = {}
    for name, path in sorted(_walk(FILES / "repo", "")):
        text = path.read_text("utf-8")
        if name.endswith(".in"):
            name, text = name[:-3], Template(text).substitute(python=shlex.quote(_python()))
        found[name] = text
    return found


def _walk(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    """Every file under ``folder`` with its path relative to where the walk began."""
    files: list[tuple[str, Traversable]] = []
    for entry in folder.iterdir():
        if entry.name == "__pycache__":
            continue
        name = prefix + entry.name
        files += _walk(entry, name + "/") if entry.is_dir() else [(name, entry)]
    return files


def _make_repo(path: Path) -> None:
    import git

    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "relconsole demo")
        cfg.set_value("user", "email", "demo@relconsole.invalid")
    for name, text in _service_files().items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    repo.index.add(list(_service_files()))
    repo.index.commit("web: first version")


def _config(base: Path) -> dict:
    checks_python = shlex.quote(_python())
    return {
        "settings": {"state_dir": "state", "poll_interval": 2.0},
        "hosts": {
            host: {
                "address": "local",
                "root": f"hosts/{host}",
                "supervisorctl": supervisorctl_command(base / "hosts" / host),
            }
            for host in HOSTS
        },
        "services": {
            SERVICE: {
                "repo": "repo/web",
                "branch": "main",
                "hosts": list(HOSTS),
                "path": "/srv/web",
                "programs": ["web"],
                "keep_releases": 5,
                "checks": [
                    {"name": "compile", "run": f"{checks_python} -m py_compile app.py"},
                    {"name": "unit tests", "run": f"{checks_python} -m unittest -v"},
                ],
                "files": [{"src": "deploy/supervisor/*.conf", "dest": "/etc/supervisor/conf.d"}],
            }
        },
    }


def _pid(root: Path) -> int | None:
    pidfile = root / "etc" / "supervisor" / "supervisord.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _start_supervisord(root: Path) -> None:
    if _pid(root) is not None:
        return
    conf = root / "etc" / "supervisor" / "supervisord.conf"
    # supervisord daemonizes: it outlives this process, like a server's would.
    subprocess.run(
        [_python(), "-m", "supervisor.supervisord", "-c", str(conf)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while not Path(_socket_path(root, root.name)).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"supervisord of demo host {root.name} did not start; "
                f"see {root / 'etc/supervisor/supervisord.log'}"
            )
        time.sleep(0.05)


class DemoError(RelconsoleError):
    """The sandbox could not be made or started; the message says why."""


def ensure_demo(base: Path | None = None) -> Path:
    """Create the sandbox if needed, start its supervisords, return its config path.

    Raises :class:`DemoError`.
    """
    try:
        return _ensure_demo(base)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        raise DemoError(str(exc)) from None


def _ensure_demo(base: Path | None = None) -> Path:
    import tomli_w

    base = base or demo_dir()
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    repo = base / "repo" / SERVICE
    if not (repo / ".git").exists():
        _make_repo(repo)
    for host in HOSTS:
        root = base / "hosts" / host
        for sub in ("etc/supervisor/conf.d", "etc/supervisor/log", "srv"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "etc" / "supervisor" / "supervisord.conf").write_text(_supervisord_conf(root, host))
        _start_supervisord(root)
    config = base / "config.toml"
    config.write_text(
        "# The relconsole demo sandbox (made by relconsole --demo).\n"
        + tomli_w.dumps(_config(base))
    )
    return config


def stop_demo(base: Path | None = None) -> list[str]:
    """Stop the sandbox's supervisords (and so its programs). Returns the hosts stopped."""
    base = base or demo_dir()
    stopped = []
    for host in HOSTS:
        pid = _pid(base / "hosts" / host)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)  # supervisord stops its programs, then itself
        deadline = time.monotonic() + 15
        while _pid(base / "hosts" / host) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped.append(host)
    return stopped
