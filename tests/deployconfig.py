"""Write relconsole config files that point at the test bed."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path

import tomli_w
from testbed import SUPERVISORCTL, TestBed


def write_config(
    tmp_path: Path,
    bed: TestBed,
    origin_url: str,
    *,
    service: str = "svc",
    hosts: Sequence[str] | None = None,
    user: str = "root",
    sudo: bool = False,
    checks: Sequence[dict] | None = None,
    programs: Sequence[str] | None = None,
    path: str | None = None,
    known_hosts: Path | None = None,
    keep_releases: int = 3,
    settings: dict | None = None,
    extra_hosts: dict | None = None,
) -> Path:
    """A config with every bed host as [hosts.hN] and one service deploying to ``hosts``."""
    host_names = list(hosts or [h.name for h in bed.hosts])
    doc = {
        "settings": {
            "state_dir": str(tmp_path / "state"),
            "known_hosts": str(known_hosts or bed.known_hosts),
            "connect_timeout": 5,
            "command_timeout": 60,
            # The machine's own ~/.ssh/config must not steer the bed's hosts.
            "ssh_config": "",
            **(settings or {}),
        },
        "hosts": {
            h.name: {
                "address": h.address,
                "port": h.port,
                "user": user,
                "key": str(bed.client_key),
                "supervisorctl": SUPERVISORCTL,
                "sudo": sudo,
            }
            for h in bed.hosts
        },
        "services": {
            service: {
                "repo": origin_url,
                "branch": "main",
                "hosts": host_names,
                "path": path or f"/srv/{service}",
                "programs": list(programs if programs is not None else [service]),
                "keep_releases": keep_releases,
                "checks": list(
                    checks
                    if checks is not None
                    else [{"name": "tests", "run": "sh tests/test_ok.sh"}]
                ),
                "files": [{"src": "deploy/supervisor/*.conf", "dest": "/etc/supervisor/conf.d"}],
            }
        },
    }
    doc["hosts"].update(extra_hosts or {})
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "config.toml"
    config.write_bytes(tomli_w.dumps(doc).encode())
    return config


#: Where the sample web app (gitorigin.web_service_files) listens on each host's address.
PORT = 8080


def write_ship_config(
    tmp_path: Path,
    bed: TestBed,
    origin_url: str,
    *,
    host_settings: dict | None = None,
    start_delay: float = 0.0,
    **service,
) -> Path:
    """The bed's config for svc without checks, with the shipping keys given (shared,
    setup, health, rolling, pause); every host gets its ADDRESS and PORT as vars, and
    its shared `.env` (ADDRESS, PORT, TAG, DELAY: seconds the app waits before it
    listens) for the sample web app is written."""
    config = write_config(tmp_path, bed, origin_url, checks=[], **(host_settings or {}))
    path = "/srv/svc"
    for host in bed.hosts:
        env = host.path(f"{path}/shared/.env")
        env.parent.mkdir(parents=True, exist_ok=True)
        env.write_text(
            f"ADDRESS={host.address}\nPORT={PORT}\nTAG={host.name}\nDELAY={start_delay}\n"
        )
    doc = tomllib.loads(config.read_text())
    for host in bed.hosts:
        doc["hosts"][host.name]["vars"] = {"ADDRESS": host.address, "PORT": str(PORT)}
    config.write_bytes(tomli_w.dumps(doc).encode())
    update_service(config, **service)
    return config


def update_service(config: Path, **keys) -> None:
    """Set keys of [services.svc] in a written config (None: remove the key)."""
    doc = tomllib.loads(config.read_text())
    service = doc["services"]["svc"]
    service.update(keys)
    for key in [k for k, v in keys.items() if v is None]:
        del service[key]
    config.write_bytes(tomli_w.dumps(doc).encode())
