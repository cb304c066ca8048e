"""The baseline: the deploy script a team writes with Fabric instead of relconsole.

    python3 bench/fabric_baseline.py --repo WORKDIR --service NAME --path /srv/NAME \
        --key KEY [--supervisorctl CMD] root@ADDR:PORT ...

What such scripts do (no checks, no lock, no verification, no history): bring a local
clone up to date and ``git archive`` it, then on every host at once (a Fabric
``ThreadingGroup``): upload the tar, extract it into a new release folder, install the
service's supervisor conf, switch the ``current`` symlink, ``supervisorctl update`` and
``supervisorctl restart``. A plain script: Fabric's defaults otherwise (it runs as a
process of its own, imports included, as a team's script does).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import tempfile
import time

from fabric import ThreadingGroup


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True, help="a local clone of the service")
    ap.add_argument("--service", required=True)
    ap.add_argument("--path", required=True, help="the service's folder on the hosts")
    ap.add_argument("--key", required=True)
    ap.add_argument("--supervisorctl", default="supervisorctl")
    ap.add_argument("hosts", nargs="+", help="user@address:port")
    args = ap.parse_args()

    git = ["git", "-C", args.repo]
    subprocess.run([*git, "fetch", "-q", "origin"], check=True)
    subprocess.run([*git, "reset", "-q", "--hard", "origin/main"], check=True)
    release = time.strftime("%Y%m%d%H%M%S") + f"-{time.time_ns() % 10**6:06d}"
    base = shlex.quote(args.path)
    rel = f"{base}/releases/{release}"
    ctl = args.supervisorctl
    with tempfile.NamedTemporaryFile(suffix=".tar") as tar:
        subprocess.run([*git, "archive", "-o", tar.name, "HEAD"], check=True)
        group = ThreadingGroup(*args.hosts, connect_kwargs={"key_filename": args.key})
        # Beside the releases (the loopback bed's hosts share this machine's /tmp).
        remote_tar = f"{args.path}/.upload-{release}.tar"
        group.put(tar.name, remote_tar)
        group.run(
            f"mkdir -p {rel} && tar -xf {remote_tar} -C {rel} && rm -f {remote_tar}"
            f" && cp {rel}/deploy/supervisor/{args.service}.conf /etc/supervisor/conf.d/"
            f" && ln -sfn {rel} {base}/current.new && mv -T {base}/current.new {base}/current",
            hide=True,
        )
        group.run(f"{ctl} update && {ctl} restart {shlex.quote(args.service)}", hide=True)
        group.close()


if __name__ == "__main__":
    main()
