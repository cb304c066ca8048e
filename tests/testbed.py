"""A real test bed for end-to-end tests: fake hosts on loopback addresses.

Each fake host is a real OpenSSH sshd listening on its own 127.R.0.x address,
running in its own mount namespace in which a per-host folder is bind-mounted
over /srv and another over /etc/supervisor.  A real supervisord per host is
started *over ssh*, so it lives in that host's namespace and sees that host's
/srv and /etc/supervisor.  Users, /etc/sudoers.d and everything else are
shared with the real machine.

Layout of a bed on the real filesystem (base_dir/bed-R/):
    client_key, client_key.pub  key authorized for root, deploy and nopw
    authorized_keys, known_hosts, empty_bashrc
    h1/srv/             what h1 sees as /srv
    h1/etc-supervisor/  what h1 sees as /etc/supervisor
    h1/ssh_host_ed25519_key, h1/sshd_config, h1/sshd.pid, h1/sshd.log
                        (outside the bind mounts: the host cannot see them)

Needs root, util-linux (unshare, mount), openssh-server and sudo.

Notes for test writers:
- Commands over ssh get sshd's default PATH: `python3` there is Debian's
  /usr/bin/python3, which has no supervisor; hence SUPERVISORCTL uses
  sys.executable.  That lives under /root (mode 0700), so the deploy user
  must run it with sudo, as on a host where the socket is root-only.
- accepted_connections() counts from zero after each reset(), and neither
  reset() nor program_pid() opens ssh connections (they talk XML-RPC to
  supervisord directly), so a test can count relconsole's connections.
- Each ssh connection costs ~0.13 s here, mostly the loopback TCP
  delayed-ACK (40 ms) meeting Nagle in the handshake.
"""

from __future__ import annotations

import http.client
import os
import posixpath
import pwd
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

SSHD = "/usr/sbin/sshd"
PORT = 2222
SUPERVISOR_CONF = "/etc/supervisor/supervisord.conf"
SUPERVISORCTL = f"{sys.executable} -m supervisor.supervisorctl -c {SUPERVISOR_CONF}"
SUPERVISORD = f"{sys.executable} -m supervisor.supervisord -c {SUPERVISOR_CONF}"
STOPPED_STATES = ("STOPPED", "EXITED", "FATAL", "UNKNOWN")  # as in supervisor.states
SUDOERS_FILE = Path("/etc/sudoers.d/relconsole-test")
SUDOERS = (
    "# Written by relconsole's tests/testbed.py\n"
    "deploy ALL=(ALL:ALL) NOPASSWD: ALL\n"
    "nopw ALL=(ALL:ALL) ALL\n"
)

SUPERVISORD_CONF_TEXT = """\
[unix_http_server]
file=/etc/supervisor/run/supervisor.sock
chmod=0700

[supervisord]
logfile=/etc/supervisor/supervisord.log
pidfile=/etc/supervisor/supervisord.pid
childlogdir=/etc/supervisor/log
directory=/

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix:///etc/supervisor/run/supervisor.sock

[include]
files = /etc/supervisor/conf.d/*.conf
"""

SSHD_CONFIG_TEXT = """\
ListenAddress {address}:{port}
HostKey {host_key}
PidFile {pid_file}
# sshd reads AuthorizedKeysFile as the target user, and the bed lives under a
# root-only (0700) pytest temp dir, so deploy/nopw could not read it.  The
# AuthorizedKeysCommand runs as root instead and serves the same file to all.
AuthorizedKeysFile none
AuthorizedKeysCommand /bin/cat {authorized_keys}
AuthorizedKeysCommandUser root
UsePAM no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
# VERBOSE logs one "Accepted publickey" line per connection.
LogLevel VERBOSE
# Tests open many connections at once; don't let sshd drop some of them.
MaxStartups 100
# For the benchmarks' scp and Fabric put (relconsole itself never uses SFTP).
Subsystem sftp internal-sftp
"""


class TestBedError(RuntimeError):
    pass


class SSHCommandError(subprocess.CalledProcessError):
    """FakeHost.ssh(check=True) failed; the message shows the output."""

    def __init__(self, host: str, user: str, command: str, proc: subprocess.CompletedProcess):
        super().__init__(proc.returncode, proc.args, proc.stdout, proc.stderr)
        self.where = f"{user}@{host}"
        self.command = command

    def __str__(self) -> str:
        return f"ssh {self.where} {self.command!r} exited {self.returncode}:\n{self.stdout}{self.stderr}"


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a local command, raising with its output when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)
    if proc.returncode != 0:
        raise TestBedError(f"{argv} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def process_alive(pid: int) -> bool:
    """Whether pid is a live process (a zombie counts as dead).

    The daemons' parent is PID 1, which may take a while to reap them, so
    kill(pid, 0) alone would still find a killed daemon.
    """
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _pid_alive(pid_file: Path) -> int | None:
    """The pid in pid_file if that process is alive."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if process_alive(pid) else None


RPC_ERRORS = (OSError, xmlrpc.client.Error, http.client.HTTPException)


def _supervisor_rpc(pid: int):
    # Reach the socket through supervisord's own view of the filesystem (its
    # mount namespace): a short path whatever base_dir is, as unix socket
    # paths must stay under 108 bytes.
    url = f"unix:///proc/{pid}/root/etc/supervisor/run/supervisor.sock"
    return xmlrpc.client.ServerProxy(
        "http://127.0.0.1", SupervisorTransport(None, None, url)
    ).supervisor


def _empty_dir(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _wait_for(predicate, timeout: float, what: str, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TestBedError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def ensure_system() -> None:
    """Machine-wide setup shared by all beds; idempotent.

    Users and sudoers are global (only /srv, /etc/supervisor and /root/.bashrc
    are per host), so this just makes sure they exist.
    """
    if os.geteuid() != 0:
        raise TestBedError("the test bed needs root (mount namespaces, sshd, useradd)")
    for tool in (SSHD, "/usr/bin/ssh", "/usr/bin/ssh-keygen", "/usr/bin/sudo", "/usr/bin/unshare"):
        if not os.access(tool, os.X_OK):
            raise TestBedError(
                f"{tool} is missing: run scripts/test (installs openssh-server and sudo)"
            )
    # Mount points for the per-host bind mounts, and sshd's privsep dir.
    Path("/etc/supervisor").mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    for user in ("deploy", "nopw"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            # Exit 9: another test session created it just now.
            add = subprocess.run(
                ["useradd", "--create-home", "--shell", "/bin/bash", user],
                capture_output=True,
                text=True,
            )
            if add.returncode not in (0, 9):
                raise TestBedError(f"useradd {user} failed: {add.stderr}")
        # useradd leaves the account locked ("!"), and sshd without PAM refuses
        # locked accounts even for key logins; "*" = no password, not locked.
        _run(["usermod", "-p", "*", user])
    if not SUDOERS_FILE.exists() or SUDOERS_FILE.read_text() != SUDOERS:
        tmp = SUDOERS_FILE.with_name(
            f".relconsole-test.{os.getpid()}"
        )  # sudo ignores names with a dot
        tmp.write_text(SUDOERS)
        tmp.chmod(0o440)
        _run(["visudo", "-c", "-q", "-f", str(tmp)])
        tmp.replace(SUDOERS_FILE)


@dataclass
class FakeHost:
    name: str
    address: str
    port: int
    root: Path
    # Shared with the bed; needed to ssh in.
    known_hosts: Path = field(repr=False)
    client_key: Path = field(repr=False)
    empty_bashrc: Path = field(repr=False)

    @property
    def sshd_log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def _sshd_pid_file(self) -> Path:
        return self.root / "sshd.pid"

    @property
    def _supervisord_pid_file(self) -> Path:
        return self.root / "etc-supervisor" / "supervisord.pid"

    def path(self, remote_path: str) -> Path:
        """Real-filesystem path of what the host sees as /srv/... or /etc/supervisor/..."""
        normal = posixpath.normpath(remote_path)
        for prefix, folder in (("/srv", "srv"), ("/etc/supervisor", "etc-supervisor")):
            if normal == prefix or normal.startswith(prefix + "/"):
                return self.root / folder / normal[len(prefix) :].lstrip("/")
        raise ValueError(f"{remote_path!r} is not under /srv or /etc/supervisor on {self.name}")

    def ssh_argv(self, user: str = "root", known_hosts: Path | None = None) -> list[str]:
        """The openssh client command line to reach this host (append a command)."""
        return [
            "ssh",
            "-F", "/dev/null",  # ignore /etc/ssh/ssh_config (SendEnv, GSSAPI...)
            "-i", str(self.client_key),
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=5",
            # The default sntrup761 key exchange costs the client ~55 ms per
            # connection; tests open many.
            "-o", "KexAlgorithms=curve25519-sha256",
            "-o", "LogLevel=ERROR",
            "-p", str(self.port),
            f"{user}@{self.address}",
        ]  # fmt: skip

    def ssh(
        self, command: str, user: str = "root", check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*self.ssh_argv(user), command],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise SSHCommandError(self.name, user, command, proc)
        return proc

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess:
        return self.ssh(" ".join([SUPERVISORCTL, *map(shlex.quote, args)]), check=False)

    def supervisor_rpc(self):
        """supervisord's XML-RPC API (the `supervisor.` namespace), without ssh.

        For the bed's own housekeeping and for tests that poll: it is ~50x
        faster than a supervisorctl over ssh and opens no ssh connection.
        """
        pid = _pid_alive(self._supervisord_pid_file)
        if pid is None:
            raise TestBedError(f"supervisord of {self.name} is not running")
        return _supervisor_rpc(pid)

    def program_pid(self, program: str) -> int | None:
        """The pid of a RUNNING program (as `supervisorctl status` shows), else None."""
        try:
            info = self.supervisor_rpc().getProcessInfo(program)
        except xmlrpc.client.Fault:  # BAD_NAME: no such program
            return None
        return info["pid"] if info["statename"] == "RUNNING" else None

    def accepted_connections(self) -> int:
        """Connections accepted since the last reset() (the log is truncated there)."""
        try:
            return self.sshd_log.read_text(errors="replace").count("Accepted publickey")
        except FileNotFoundError:
            return 0

    # --- lifecycle -------------------------------------------------------

    def _prepare(self) -> None:
        """Write this host's folders, host key and sshd_config (first start only)."""
        etc = self.root / "etc-supervisor"
        for folder in (self.root / "srv", etc / "conf.d", etc / "run", etc / "log"):
            folder.mkdir(parents=True, exist_ok=True)
        (etc / "supervisord.conf").write_text(SUPERVISORD_CONF_TEXT)
        host_key = self.root / "ssh_host_ed25519_key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(host_key)])
        (self.root / "sshd_config").write_text(
            SSHD_CONFIG_TEXT.format(
                address=self.address,
                port=self.port,
                host_key=host_key,
                pid_file=self._sshd_pid_file,
                authorized_keys=self.client_key.parent / "authorized_keys",
            )
        )

    def host_key_line(self) -> str:
        """This host's known_hosts line: "[addr]:port keytype key"."""
        keytype, key = (self.root / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        return f"[{self.address}]:{self.port} {keytype} {key}"

    def start_sshd(self) -> None:
        """Start sshd in a fresh mount namespace; return once it listens.

        A restarted sshd gets a new namespace, but with the same bind mounts,
        so it sees the same /srv and /etc/supervisor as before (and as the
        supervisord still running in the old namespace).
        """
        if _pid_alive(self._sshd_pid_file):
            return
        self._sshd_pid_file.unlink(missing_ok=True)
        binds = [
            f"mount --bind {self.root}/srv /srv",
            f"mount --bind {self.root}/etc-supervisor /etc/supervisor",
        ]
        if Path("/root/.bashrc").exists():
            # root's .bashrc runs `pyenv init` on every ssh command (~0.1 s
            # and a global lock); hide it inside the fake host.
            binds.append(f"mount --bind {self.empty_bashrc} /root/.bashrc")
        script = " && ".join([*binds, f"exec {SSHD} -f {self.root}/sshd_config -E {self.sshd_log}"])
        # sshd checks its config, daemonizes, and only then binds: the parent
        # exiting 0 says nothing about the port.  The pid file is written
        # after the listen socket is bound, so wait for that instead.
        _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])

        def ready() -> bool:
            if self._sshd_pid_file.exists():
                return True
            log = self.sshd_log.read_text(errors="replace") if self.sshd_log.exists() else ""
            if "fatal" in log or "Cannot bind" in log:
                raise TestBedError(
                    f"sshd of {self.name} ({self.address}:{self.port}) failed:\n{log}"
                )
            return False

        _wait_for(ready, 10, f"sshd of {self.name} on {self.address}:{self.port}")

    def stop_sshd(self) -> None:
        """Kill the listening sshd: new connections are refused.

        Connections already open keep their own sshd processes, as on a real
        host where the ssh service is stopped.
        """
        pid = _pid_alive(self._sshd_pid_file)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        _wait_for(lambda: not _pid_alive(self._sshd_pid_file), 5, f"sshd of {self.name} to stop")

    def start_supervisord(self) -> None:
        """Start supervisord over ssh, so it runs inside this host's namespace."""
        if _pid_alive(self._supervisord_pid_file):
            return
        # supervisord opens its socket before daemonizing, so it answers
        # supervisorctl as soon as this returns.  Its stdio must not hold the
        # ssh channel open.
        self.ssh(f"{SUPERVISORD} </dev/null >/dev/null 2>&1")
        _wait_for(lambda: _pid_alive(self._supervisord_pid_file), 5, f"supervisord of {self.name}")

    def stop_supervisord(self) -> None:
        """Shut supervisord down; it stops its programs before exiting."""
        pid = _pid_alive(self._supervisord_pid_file)
        if pid is None:
            return
        try:
            _supervisor_rpc(pid).shutdown()
        except RPC_ERRORS:
            os.kill(pid, signal.SIGTERM)

        def gone() -> bool:
            if not process_alive(pid):
                return True
            try:
                _supervisor_rpc(pid).getState()  # wakes its poll loop (see _supervisor_update)
            except RPC_ERRORS:  # it is going away
                pass
            return False

        _wait_for(gone, 15, f"supervisord of {self.name} to stop")

    def reset(self) -> None:
        self.start_sshd()
        _empty_dir(self.root / "srv")
        _empty_dir(self.root / "etc-supervisor" / "conf.d")
        if _pid_alive(self._supervisord_pid_file):
            self._supervisor_update()
        else:
            self.start_supervisord()
        _empty_dir(self.root / "etc-supervisor" / "log")
        # Truncate, not delete: sshd appends (O_APPEND) to its open file, so
        # accepted_connections() counts from zero in each test.
        self.sshd_log.write_text("")

    def _supervisor_update(self) -> None:
        """What `supervisorctl update` does: stop and remove the program
        groups whose config is gone or changed, add the new ones."""
        rpc = self.supervisor_rpc()
        added, changed, removed = rpc.reloadConfig()[0]
        gone = set(changed + removed)
        for group in gone:
            rpc.stopProcessGroup(group, False)

        # Don't let supervisord wait for the stop (wait=True): it often notices
        # a child's exit only at its next 1 s poll timeout.  Each request we
        # make wakes its loop, so polling gets the stop seen in milliseconds.
        def stopped() -> bool:
            return all(
                p["group"] not in gone or p["statename"] in STOPPED_STATES
                for p in rpc.getAllProcessInfo()
            )

        _wait_for(stopped, 15, f"programs on {self.name} to stop")
        for group in gone:
            rpc.removeProcessGroup(group)
        for group in added + changed:
            rpc.addProcessGroup(group)


class TestBed:
    __test__ = False  # not a pytest test class

    def __init__(self, hosts: list[FakeHost], root: Path, known_hosts: Path, client_key: Path):
        self.hosts = hosts
        self.root = root
        self.known_hosts = known_hosts
        self.client_key = client_key
        self.python = sys.executable

    def host(self, name: str) -> FakeHost:
        return next(h for h in self.hosts if h.name == name)

    def _each(self, method) -> None:
        """Run method(host) for every host in parallel, re-raising the first error."""
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            for future in [pool.submit(method, h) for h in self.hosts]:
                future.result()

    def reset(self) -> None:
        self._each(FakeHost.reset)

    def close(self) -> None:
        def stop(host: FakeHost) -> None:
            host.stop_supervisord()
            host.stop_sshd()

        try:
            self._each(stop)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _pick_octet(n_hosts: int) -> int:
    """A second octet R such that 127.R.0.11.. are all free on PORT.

    Random per bed, so the leftovers of a crashed run (or another bed running
    at the same time) don't collide.  R=0 is avoided: 127.0.0.x is crowded.
    """
    for _ in range(50):
        octet = random.randint(1, 254)
        if all(_port_free(f"127.{octet}.0.{11 + i}", PORT) for i in range(n_hosts)):
            return octet
    raise TestBedError(f"no free 127.R.0.x:{PORT} found")


def start_testbed(n_hosts: int, base_dir: Path) -> TestBed:
    ensure_system()
    octet = _pick_octet(n_hosts)
    root = Path(base_dir) / f"bed-{octet}"
    root.mkdir(parents=True)
    client_key = root / "client_key"
    _run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "relconsole-test",
            "-f",
            str(client_key),
        ]
    )
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    (root / "empty_bashrc").write_text("")
    known_hosts = root / "known_hosts"
    hosts = [
        FakeHost(
            name=f"h{i + 1}",
            address=f"127.{octet}.0.{11 + i}",
            port=PORT,
            root=root / f"h{i + 1}",
            known_hosts=known_hosts,
            client_key=client_key,
            empty_bashrc=root / "empty_bashrc",
        )
        for i in range(n_hosts)
    ]
    bed = TestBed(hosts, root, known_hosts, client_key)
    try:
        bed._each(FakeHost._prepare)
        known_hosts.write_text("".join(h.host_key_line() + "\n" for h in hosts))
        bed._each(FakeHost.start_sshd)
        bed._each(FakeHost.start_supervisord)
    except BaseException:
        bed.close()
        raise
    return bed
