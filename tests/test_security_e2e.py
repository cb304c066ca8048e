"""Secrets stay out of every output; relconsole's state is private to its user."""

from __future__ import annotations

import json
import os
import stat

from deployconfig import write_config
from gitorigin import sample_service_files
from test_build_e2e import cli

from relconsole.history import History

TOKEN = "s3cr3t-Tok3n-value"


def secret_config(bed, origin, tmp_path, **kwargs):
    path = write_config(
        tmp_path,
        bed,
        origin.url,
        hosts=["h1"],
        checks=[
            {"name": "uses token", "run": 'echo "token is $TOKEN"; echo "[bold]$TOKEN[/]" >&2'}
        ],
        **kwargs,
    )
    text = path.read_text().replace(
        "[services.svc]\n", '[services.svc]\nsecrets = { TOKEN = "env:RC_TEST_TOKEN" }\n'
    )
    path.write_text(text)
    return path


def test_secret_reaches_the_check_but_is_masked_everywhere(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", f"v1 {TOKEN}"), f"v1 mentions {TOKEN}")
    config = secret_config(bed, origin, tmp_path)
    env = dict(os.environ, RC_TEST_TOKEN=TOKEN)

    text = cli("--config", str(config), "--build", "svc", env=env)
    as_json = cli("--config", str(config), "--build", "svc", "--json", env=env)

    assert text.returncode == 0, text.stdout + text.stderr
    assert "[check] token is ****" in text.stdout  # the check got the value, we print the mask
    assert as_json.returncode == 0
    assert any(
        json.loads(line).get("line") == "token is ****" for line in as_json.stdout.splitlines()
    )
    rows = History(tmp_path / "state").list("svc")
    logs = [History(tmp_path / "state").get("svc", r["number"])["log"] for r in rows]
    for output in (text.stdout, text.stderr, as_json.stdout, *logs, json.dumps(rows)):
        assert TOKEN not in output
    assert "token is ****" in logs[0]


def test_missing_secret_fails_the_build_clearly(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = secret_config(bed, origin, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "RC_TEST_TOKEN"}

    proc = cli("--config", str(config), "--build", "svc", env=env)

    assert proc.returncode == 1
    assert "secret TOKEN: environment variable RC_TEST_TOKEN is not set" in proc.stdout
    assert not (bed.hosts[0].path("/srv/svc") / "releases").exists()


def test_secret_literal_in_config_is_refused(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = secret_config(bed, origin, tmp_path)
    config.write_text(config.read_text().replace('"env:RC_TEST_TOKEN"', f'"{TOKEN}"'))

    proc = cli("--config", str(config), "--build", "svc")

    assert proc.returncode == 2
    assert "services.svc" in proc.stderr and "secrets" in proc.stderr
    assert TOKEN not in proc.stderr


def test_state_dir_is_private_to_the_user(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"])
    assert cli("--config", str(config), "--build", "svc").returncode == 0

    state = tmp_path / "state"
    for path in [state, *state.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def _keygen_fingerprint(host) -> str:
    import subprocess

    out = subprocess.run(
        ["ssh-keygen", "-lf", str(host.root / "ssh_host_ed25519_key.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[1]  # SHA256:...


def test_trust_shows_the_fingerprint_and_adds_the_key_only_after_yes(bed, origin, tmp_path):
    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    known = tmp_path / "kh" / "known_hosts"
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"], known_hosts=known)
    h1 = bed.hosts[0]

    refused = cli("--config", str(config), "--trust", "h1", input="n\n")
    assert refused.returncode == 1 and not known.exists()
    assert f"256 {_keygen_fingerprint(h1)} [{h1.address}]:{h1.port} (ED25519)" in refused.stdout

    accepted = cli("--config", str(config), "--trust", "h1", input="yes\n")
    assert accepted.returncode == 0, accepted.stdout
    assert known.read_text().startswith(f"[{h1.address}]:{h1.port} ssh-ed25519 ")
    assert cli("--config", str(config), "--build", "svc").returncode == 0  # now it connects
    again = cli("--config", str(config), "--trust", "h1", "--yes")
    assert again.returncode == 0 and "already trusted" in again.stdout
    assert len(known.read_text().splitlines()) == 1


def test_trust_never_replaces_a_changed_key(bed, origin, tmp_path):
    import subprocess

    origin.commit(sample_service_files("svc", "/srv/svc", "v1"), "v1")
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    h1 = bed.hosts[0]
    known = tmp_path / "known_hosts"
    forged = f"[{h1.address}]:{h1.port} " + " ".join(
        other.with_suffix(".pub").read_text().split()[:2]
    )
    known.write_text(forged + "\n")
    config = write_config(tmp_path, bed, origin.url, hosts=["h1"], known_hosts=known)

    proc = cli("--config", str(config), "--trust", "h1", "--yes")

    assert proc.returncode == 1
    assert "HOST KEY CHANGED" in proc.stdout and _keygen_fingerprint(h1) in proc.stdout
    assert "ssh-keygen -R" in proc.stdout
    assert known.read_text() == forged + "\n"
