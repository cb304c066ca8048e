"""``relconsole --demo``: a sandbox that shows relconsole working with no servers.

Under the user's data directory it makes (once) and reuses:

    demo/repo/web/              a git repository of a small web app, ``web``
    demo/hosts/web1, web2/      two local hosts: each a root folder standing in for
                                ``/`` with its own supervisord (supervisor from PyPI)
                                and its own ``srv/web/shared/.env`` (the port its app
                                listens on, 127.0.0.1 only, and the tag it answers with)
    demo/config.toml            written with tomli-w; hosts are ``address = "local"``
    demo/state/                 relconsole's state (workspaces, history)

The service ships as a real one does: ``.env`` and ``logs/`` shared, a setup command
that writes a build stamp, an HTTP health probe, and one host at a time
(``rolling = 1``). No sshd, no root and no network beyond loopback are needed. Edit
``demo/repo/web/app.py``, commit, and build again to watch a new release roll out;
``curl http://127.0.0.1:PORT/`` shows which host and build answers.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
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
#: The port each host's app listens on when it is free at the sandbox's creation.
PORTS = {"web1": 8101, "web2": 8102}
#: What a build writes into each release: when and from what it was built.
STAMP = 'printf "built %s from %.7s\\n" "$(date -u +%FT%TZ)" "$RELCONSOLE_SHA" > BUILD_STAMP'
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
    _commit_files(path, "web: first version")


def _commit_files(path: Path, message: str) -> None:
    """Write the demo service's files into the repository at ``path`` and commit."""
    import git

    files = _service_files()
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    repo = git.Repo(path)
    repo.index.add(list(files))
    repo.index.commit(message)


def _env_file(root: Path) -> Path:
    """The host's shared ``.env`` (relconsole links it into every release)."""
    return root / "srv" / SERVICE / "shared" / ".env"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_env(root: Path, host: str) -> None:
    """Write the host's ``.env`` once, as an operator would on a server; later runs of
    the demo keep it (and the port in it)."""
    env = _env_file(root)
    if env.exists():
        return
    port = PORTS[host] if _free(PORTS[host]) else _any_free_port()
    env.parent.mkdir(parents=True, exist_ok=True)
    env.write_text(f"PORT={port}\nTAG={host}\n")


def host_port(root: Path, host: str) -> str:
    """The port in the host's ``.env`` (before the sandbox made one: the default)."""
    env = _env_file(root)
    lines = env.read_text().splitlines() if env.exists() else [f"PORT={PORTS[host]}"]
    for line in lines:
        name, _, value = line.partition("=")
        if name.strip() == "PORT":
            return value.strip()
    raise RuntimeError(f"no PORT in {env}")


def _upgrade_repo(path: Path) -> None:
    """A sandbox made by an older relconsole has a service that is no web app: commit
    this version's files over it (its history keeps the old ones)."""
    _commit_files(path, "web: a web app now (relconsole demo upgrade)")


def _config(base: Path) -> dict:
    checks_python = shlex.quote(_python())
    return {
        "settings": {"state_dir": "state", "poll_interval": 2.0},
        "hosts": {
            host: {
                "address": "local",
                "root": f"hosts/{host}",
                "supervisorctl": supervisorctl_command(base / "hosts" / host),
                "vars": {"PORT": host_port(base / "hosts" / host, host)},
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
                "shared": ["logs/", ".env"],
                "setup": [{"name": "stamp", "run": STAMP}],
                "health": [
                    {
                        "name": "http",
                        "url": "http://127.0.0.1:${PORT}/healthz",
                        "expect": "ok",
                        "timeout": 15,
                    }
                ],
                "rolling": 1,
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
    elif "healthz" not in (repo / "app.py").read_text(errors="replace"):
        _upgrade_repo(repo)
    for host in HOSTS:
        root = base / "hosts" / host
        for sub in ("etc/supervisor/conf.d", "etc/supervisor/log", "srv"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        _ensure_env(root, host)
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
    for host in HOSTS:  # all at once: each supervisord takes a second or so to stop
        pid = _pid(base / "hosts" / host)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)  # supervisord stops its programs, then itself
            stopped.append(host)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        running = [h for h in stopped if _pid(base / "hosts" / h) is not None]
        if not running:
            break
        for host in running:
            _wake(_socket_path(base / "hosts" / host, host))
        time.sleep(0.05)
    return stopped


def _wake(socket_path: str) -> None:
    """Make a supervisord turn its loop now. It handles a signal, and reaps a program
    that exited, only when its loop turns: once a second, or when its socket has
    something to read, such as a new connection."""
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(socket_path)
        except OSError:  # gone already, or not listening any more
            pass
