"""Issue 14 item 15 on the real bed: known_hosts with marker lines.

A ``@revoked`` line for the key a host's sshd really presents refuses that host before
anything changes anywhere, naming the host and the key, with no traceback; a file
with ``@cert-authority`` lines (and lines nobody can read) still builds.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from deployconfig import write_config
from gitorigin import sample_service_files
from test_build_e2e import cli, current_release


def fingerprint(host) -> str:
    """``SHA256:…`` of the key the host's sshd presents, as ssh-keygen shows it."""
    pub = host.root / "ssh_host_ed25519_key.pub"
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[1]


def tree(host, path: str = "/srv/svc") -> dict[str, str]:
    """Every path under the service's folder with what it is (a link's target, a
    file's size): what "nothing changed on the host" compares."""
    root = host.path(path)
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder, name)
            rel = str(p.relative_to(root))
            found[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else str(p.lstat().st_size)
    return found


def test_a_revoked_host_key_refuses_the_build_before_any_host_changes(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url)
    first = cli("--config", str(config), "--build", "svc")
    assert first.returncode == 0, first.stdout + first.stderr
    origin.commit({"VERSION": "v2\n"}, "v2")
    h2 = bed.host("h2")
    keytype, key = h2.host_key_line().split()[1:]
    revoking = tmp_path / "known_hosts"
    # The normal entries stay: the @revoked line alone must refuse h2's key.
    revoking.write_text(bed.known_hosts.read_text() + f"@revoked * {keytype} {key}\n")
    config = write_config(tmp_path, bed, origin.url, known_hosts=revoking)
    before = {h.name: (tree(h), h.program_pid("svc")) for h in bed.hosts}

    refused = cli("--config", str(config), "--build", "svc")

    out = refused.stdout + refused.stderr
    assert refused.returncode == 1, out
    assert "Traceback" not in out and "BUILD FAILED" in out
    assert (
        f"cannot reach h2: {h2.address}:{h2.port}: host key "
        f"{keytype} {fingerprint(h2)} of [{h2.address}]:{h2.port} is marked @revoked in "
        f"{revoking}; refusing to connect — nothing was changed"
    ) in out
    for host in bed.hosts:  # nothing changed anywhere: no release, no lock, no restart
        assert (tree(host), host.program_pid("svc")) == before[host.name], host.name

    # --trust never adds it back
    trust = cli("--config", str(config), "--trust", "h2", "--yes")
    assert trust.returncode != 0, trust.stdout + trust.stderr
    assert "offers a key marked @revoked" in trust.stdout + trust.stderr
    assert "Traceback" not in trust.stdout + trust.stderr
    assert revoking.read_text().count(key) == 2  # its entry and the @revoked line, no more


def test_cert_authority_and_unreadable_lines_do_not_stop_a_build(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    ca_key = bed.client_key.with_suffix(".pub").read_text().split()[1]  # any valid key
    known = tmp_path / "known_hosts"
    known.write_text(
        f"@cert-authority *.corp.example,[127.*]:* ssh-ed25519 {ca_key}\n"
        "# a comment, an empty line, a marker nobody knows, a key type nobody knows\n\n"
        f"@future-marker * ssh-ed25519 {ca_key}\n"
        "[10.9.9.9]:22 ssh-unknown-v9 AAAAB3NzaC1yc2EAAAADAQABAAA\n"
        "this line is not a host key at all\n" + bed.known_hosts.read_text()
    )
    config = write_config(tmp_path, bed, origin.url, known_hosts=known)

    built = cli("--config", str(config), "--build", "svc")

    assert built.returncode == 0, built.stdout + built.stderr
    assert "Traceback" not in built.stdout + built.stderr
    releases = {current_release(h) for h in bed.hosts}
    assert len(releases) == 1 and None not in releases
    for host in bed.hosts:
        assert host.program_pid("svc") is not None, host.name
    doctor = cli("--config", str(config), "--doctor")  # says what it ignored, per host
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    for host in bed.hosts:
        assert (
            f"the @cert-authority lines for {host.name} are ignored: relconsole checks the "
            "plain keys known_hosts lists, not host certificates"
        ) in doctor.stdout
