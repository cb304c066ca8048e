"""Real git origin repositories for tests, and a tiny deployable service.

An Origin is a bare repository (`path`, the URL to clone from, HEAD -> main)
plus a private work clone next to it where commits are made and then pushed,
as a developer would.  Clones of `path` see exactly what was pushed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import git

_AUTHOR = {"user.name": "relconsole tests", "user.email": "tests@relconsole.invalid"}


class Origin:
    def __init__(self, path: Path, work: Path):
        self.path = path  # bare repo: clone from here
        self.work = work  # work clone: where commits are made
        self._repo = git.Repo(work)

    @property
    def url(self) -> str:
        return str(self.path)

    def commit(
        self, files: dict[str, str | bytes | None], message: str, branch: str = "main"
    ) -> str:
        """Write files (paths relative to the repo root; None deletes one),
        commit them on branch (created from main if new), push, return the sha.

        A file whose content starts with "#!" is made executable.
        """
        repo = self._repo
        if branch in repo.heads:
            repo.heads[branch].checkout()
        elif repo.heads:  # new branch from main
            repo.create_head(branch, repo.heads["main"]).checkout()
        else:  # first commit: the unborn HEAD is already "main"
            if branch != "main":
                raise ValueError("the first commit of an origin must be on main")
        for name, content in files.items():
            target = self.work / name
            if content is None:
                repo.git.rm("-q", "--", name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
            if content[:2] in ("#!", b"#!"):
                target.chmod(0o755)
            # git add (not index.add) so the executable bit is recorded.
            repo.git.add("--", name)
        repo.git.commit("--allow-empty", "-m", message)
        repo.git.push("origin", f"{branch}:refs/heads/{branch}")
        return repo.head.commit.hexsha

    def delete_branch(self, branch: str) -> None:
        """Delete branch on the origin (and in the work clone)."""
        if branch == "main":
            raise ValueError("main is the origin's HEAD; don't delete it")
        repo = self._repo
        repo.git.push("origin", "--delete", branch)
        if repo.active_branch.name == branch:
            repo.heads["main"].checkout()
        repo.delete_head(branch, force=True)

    def sha(self, branch: str = "main") -> str:
        """The sha of branch on the origin."""
        return git.Repo(self.path).commit(branch).hexsha


def make_origin(base: Path, name: str = "svc") -> Origin:
    """An empty origin at base/{name}.git (commit something before cloning)."""
    base = Path(base)
    bare = base / f"{name}.git"
    git.Repo.init(bare, bare=True, initial_branch="main")
    work_repo = git.Repo.clone_from(str(bare), base / f"{name}-work")
    with work_repo.config_writer() as config:
        for key, value in _AUTHOR.items():
            section, option = key.split(".")
            config.set_value(section, option, value)
    # Cloning an empty repo leaves HEAD unborn on the remote's default,
    # which may not be main on every git; make it main.
    work_repo.git.symbolic_ref("HEAD", "refs/heads/main")
    return Origin(bare, base / f"{name}-work")


def sample_service_files(
    service: str, path: str, message: str = "v1", crash: bool = False, check_fails: bool = False
) -> dict[str, str]:
    """The files of a tiny deployable service, to be deployed to `path`
    (releases under {path}/releases, the live one at {path}/current).

    - app.py prints "{service} started version=<VERSION> revision=<REVISION>"
      (REVISION is the file a deploy may write; "-" if absent) and sleeps
      forever; with crash=True it prints "{service} crashing" to stderr and
      exits 1 at once.
    - VERSION contains `message`, so tests can tell releases apart.
    - deploy/supervisor/{service}.conf runs it under supervisord.
    - tests/test_ok.sh is a check that passes (fails with check_fails=True).
    """
    app = textwrap.dedent(
        f"""\
        import pathlib
        import sys
        import time

        here = pathlib.Path(__file__).parent


        def read(name):
            try:
                return (here / name).read_text().strip()
            except FileNotFoundError:
                return "-"


        print("{service} started version=%s revision=%s" % (read("VERSION"), read("REVISION")), flush=True)
        if {crash!r}:
            print("{service} crashing", file=sys.stderr, flush=True)
            sys.exit(1)
        while True:
            time.sleep(3600)
        """
    )
    conf = program_conf(service, path, f"/usr/bin/python3 -u {path}/current/app.py")
    check = textwrap.dedent(
        f"""\
        #!/bin/sh
        # The service's check: run from the repository root.
        set -e
        test -s VERSION
        python3 -c "import ast; ast.parse(open('app.py').read())"
        {'echo "check failed on purpose" >&2; exit 1' if check_fails else 'echo "checks passed"'}
        """
    )
    return {
        "app.py": app,
        "VERSION": message + "\n",
        f"deploy/supervisor/{service}.conf": conf,
        "tests/test_ok.sh": check,
    }


def web_service_files(service: str, path: str, version: str = "v1") -> dict[str, str]:
    """A small stdlib HTTP service, to be deployed to `path` with `.env` and `logs/`
    shared (issue 11): what the shipping tests roll out.

    - app.py reads ADDRESS, PORT, TAG and DELAY from `.env` in its working directory
      (the release's link to the host's shared file), waits DELAY seconds (an app that
      takes a while to start), listens on ADDRESS:PORT and answers
      `/` with "<TAG> <VERSION> <REVISION> <BUILD_STAMP>" and `/healthz` with "ok",
      appending each request to logs/access.log.
    - VERSION holds `version`. A version containing "sick" answers `/healthz` with 503
      "sick"; one containing "sick-on-<tag>" does so only on that host.
    - deploy/supervisor/{service}.conf runs it under supervisord, from current.
    """
    app = textwrap.dedent(
        """\
        import http.server
        import pathlib
        import time


        def read(name):
            try:
                return pathlib.Path(name).read_text().strip()
            except FileNotFoundError:
                return "-"


        env = dict(
            line.split("=", 1) for line in read(".env").splitlines() if "=" in line
        )
        TAG, VERSION = env["TAG"], read("VERSION")
        SICK = VERSION == "sick" or VERSION == "sick-on-" + TAG
        ANSWER = " ".join([TAG, VERSION, read("REVISION"), read("BUILD_STAMP")])


        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/healthz":
                    status, body = (503, "sick") if SICK else (200, "ok")
                else:
                    status, body = 200, ANSWER
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with open("logs/access.log", "a") as log:
                    log.write("%s %d\\n" % (self.path, status))

            def log_message(self, *args):
                pass


        time.sleep(float(env.get("DELAY", "0")))  # an app that takes a while to start
        server = http.server.ThreadingHTTPServer((env["ADDRESS"], int(env["PORT"])), Handler)
        print("%s %s listening on %s:%s" % (TAG, VERSION, env["ADDRESS"], env["PORT"]), flush=True)
        server.serve_forever()
        """
    )
    conf = program_conf(service, path, "/usr/bin/python3 -u app.py")
    return {"app.py": app, "VERSION": version + "\n", f"deploy/supervisor/{service}.conf": conf}


def program_conf(service: str, path: str, command: str) -> str:
    """The supervisord program of a sample service, run from its live release."""
    return textwrap.dedent(
        f"""\
        [program:{service}]
        command={command}
        directory={path}/current
        startsecs=1
        autorestart=true
        startretries=2
        stopwaitsecs=5
        stdout_logfile=/etc/supervisor/log/{service}.out.log
        stderr_logfile=/etc/supervisor/log/{service}.err.log
        """
    )
