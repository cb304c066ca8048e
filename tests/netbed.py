"""A test bed whose hosts sit behind a bastion, in network namespaces of its own.

    client ns ── veth ── bastion ns ── veth ── targets ns
    198.18.0.1/30     198.18.0.2/30
                      198.19.0.1/24        198.19.0.11, .12, ... /24

relconsole runs in the client namespace (:meth:`NetBed.client_argv`). That namespace
has its loopback and one veth to the bastion, and no route anywhere else: the
targets cannot be reached from it except through the bastion's sshd, and nothing it
sends can leave this machine. The bastion is an sshd in its own namespace (no IP
forwarding: a new namespace has it off). Each target is a tests/testbed.py FakeHost
(its own mount namespace, sshd, supervisord started over ssh), its sshd in the
targets' namespace listening on its own address, port 22.

The test process itself stays in the machine's namespace and never talks to these
addresses: it reads hosts' files through their bind-mounted folders, sshd logs from
disk, supervisord over its unix socket, and runs the bed's own ssh commands inside
the namespaces (``ip netns exec``). Namespaces are named per bed, so beds of
concurrent runs never meet; :meth:`NetBed.close` removes them.

Needs root and iproute2 (``ip netns``), besides what tests/testbed.py needs.
"""

from __future__ import annotations

import os
import random
import shutil
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testbed import (
    SSHD,
    FakeHost,
    TestBed,
    TestBedError,
    _pid_alive,
    _run,
    _wait_for,
    ensure_system,
)

CLIENT_ADDRESS = "198.18.0.1"
BASTION_ADDRESS = "198.18.0.2"
BASTION_INNER = "198.19.0.1"


def target_address(i: int) -> str:
    return f"198.19.0.{11 + i}"


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


@dataclass
class NetHost(FakeHost):
    """A FakeHost whose sshd (and the bed's own ssh to it) lives in ``netns``."""

    netns: str = ""

    def ssh_argv(self, user: str = "root", known_hosts: Path | None = None) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *super().ssh_argv(user, known_hosts)]

    def host_key_line(self) -> str:
        keytype, key = (self.root / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        return f"{known_hosts_name(self.address, self.port)} {keytype} {key}"

    def public_key(self) -> str:
        """``keytype base64`` of this host's key."""
        return " ".join((self.root / "ssh_host_ed25519_key.pub").read_text().split()[:2])

    def start_sshd(self) -> None:
        # FakeHost.start_sshd, started inside the namespace.
        if _pid_alive(self._sshd_pid_file):
            return
        self._sshd_pid_file.unlink(missing_ok=True)
        binds = [
            f"mount --bind {self.root}/srv /srv",
            f"mount --bind {self.root}/etc-supervisor /etc/supervisor",
        ]
        if Path("/root/.bashrc").exists():
            binds.append(f"mount --bind {self.empty_bashrc} /root/.bashrc")
        script = " && ".join([*binds, f"exec {SSHD} -f {self.root}/sshd_config -E {self.sshd_log}"])
        unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        _run(["ip", "netns", "exec", self.netns, *unshare])

        def ready() -> bool:
            if self._sshd_pid_file.exists():
                return True
            log = self.sshd_log.read_text(errors="replace") if self.sshd_log.exists() else ""
            if "fatal" in log or "Cannot bind" in log:
                raise TestBedError(f"sshd of {self.name} ({self.address}) failed:\n{log}")
            return False

        _wait_for(ready, 10, f"sshd of {self.name} on {self.address}:{self.port}")


class NetBed(TestBed):
    """Targets t1..tN behind ``bastion``; relconsole runs in ``client_ns``."""

    __test__ = False

    def __init__(
        self,
        hosts: list[NetHost],
        bastion: NetHost,
        root: Path,
        known_hosts: Path,
        client_key: Path,
        namespaces: dict[str, str],
    ):
        super().__init__(list(hosts), root, known_hosts, client_key)
        self.bastion = bastion
        self.namespaces = namespaces  # role -> namespace name

    @property
    def client_ns(self) -> str:
        return self.namespaces["client"]

    def in_ns(self, role: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[role], *argv]

    def client_argv(self, *argv: str) -> list[str]:
        """``argv`` run from the client's namespace, where relconsole runs."""
        return self.in_ns("client", *argv)

    def reset(self) -> None:
        super().reset()
        self.bastion.start_sshd()
        self.bastion.sshd_log.write_text("")

    def close(self) -> None:
        try:
            self.bastion.stop_sshd()
            super().close()
        finally:
            for ns in self.namespaces.values():
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(self.root, ignore_errors=True)


def _network(namespaces: dict[str, str], n_targets: int) -> None:
    client, bastion, targets = namespaces["client"], namespaces["bastion"], namespaces["targets"]
    for ns in namespaces.values():
        _run(["ip", "netns", "add", ns])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    # Each veth is made with both ends already in their namespaces: nothing appears in
    # the machine's own namespace, even for a moment.
    _run(
        ["ip", "link", "add", "c0", "netns", client, "type", "veth", "peer", "b0", "netns", bastion]
    )
    _run(
        [
            "ip",
            "link",
            "add",
            "b1",
            "netns",
            bastion,
            "type",
            "veth",
            "peer",
            "t0",
            "netns",
            targets,
        ]
    )
    addresses = [
        (client, "c0", f"{CLIENT_ADDRESS}/30"),
        (bastion, "b0", f"{BASTION_ADDRESS}/30"),
        (bastion, "b1", f"{BASTION_INNER}/24"),
        *[(targets, "t0", f"{target_address(i)}/24") for i in range(n_targets)],
    ]
    for ns, dev, address in addresses:
        _run(["ip", "-n", ns, "addr", "add", address, "dev", dev])
    for ns, dev in ((client, "c0"), (bastion, "b0"), (bastion, "b1"), (targets, "t0")):
        _run(["ip", "-n", ns, "link", "set", dev, "up"])


def start_netbed(n_targets: int, base_dir: Path) -> NetBed:
    """Targets t1..tN (198.19.0.11, ...) behind a bastion (198.18.0.2:22)."""
    ensure_system()
    if not shutil.which("ip"):
        raise TestBedError("ip (iproute2) is missing: apt-get install iproute2")
    tag = "rc" + "".join(random.choices(string.ascii_lowercase + string.digits, k=6))
    namespaces = {role: f"{tag}-{role[0]}" for role in ("client", "bastion", "targets")}
    root = Path(base_dir) / f"netbed-{tag}"
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
    known_hosts = root / "bed_known_hosts"  # the bed's own; tests write relconsole's

    def host(name: str, address: str, ns: str) -> NetHost:
        return NetHost(
            name=name,
            address=address,
            port=22,
            root=root / name,
            known_hosts=known_hosts,
            client_key=client_key,
            empty_bashrc=root / "empty_bashrc",
            netns=namespaces[ns],
        )

    targets = [host(f"t{i + 1}", target_address(i), "targets") for i in range(n_targets)]
    bastion = host("bastion", BASTION_ADDRESS, "bastion")
    bed = NetBed(targets, bastion, root, known_hosts, client_key, namespaces)
    try:
        _network(namespaces, n_targets)
        for h in [bastion, *targets]:
            h._prepare()
        known_hosts.write_text("".join(h.host_key_line() + "\n" for h in [bastion, *targets]))
        bastion.start_sshd()
        bed._each(NetHost.start_sshd)
        bed._each(NetHost.start_supervisord)
    except BaseException:
        bed.close()
        raise
    return bed


def start_ssh_agent(folder: Path) -> tuple[int, Path]:
    """A real ssh-agent listening on ``folder/agent.sock``: (pid, socket)."""
    sock = folder / "agent.sock"
    out = _run(["ssh-agent", "-a", str(sock), "-s"]).stdout
    for part in out.replace(";", "\n").split():
        if part.startswith("SSH_AGENT_PID="):
            return int(part.split("=", 1)[1]), sock
    raise TestBedError(f"ssh-agent said no pid: {out}")


def stop_ssh_agent(pid: int) -> None:
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        pass
