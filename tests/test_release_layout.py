"""Pure tests of the release layout commands: quoting, parsing, pruning."""

import shlex
import subprocess
from datetime import UTC, datetime

from relconsole import release as rel
from relconsole.config import FileUpload


def test_release_ids_sort_by_time_and_name_the_commit():
    sha = "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d"
    early = rel.new_release_id(sha, datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    late = rel.new_release_id(sha, datetime(2026, 11, 2, 3, 4, 5, tzinfo=UTC))
    assert early == "20260102-030405.006-1a2b3c4"
    assert early < late
    assert rel.RELEASE_ID.match(early)
    # Issue 14: two builds of one commit in the same second get two folders.
    same_second = rel.new_release_id(sha, datetime(2026, 1, 2, 3, 4, 5, 7000, tzinfo=UTC))
    assert same_second != early and early < same_second
    # Ids of earlier versions (no milliseconds) still read as releases, and sort first.
    assert rel.RELEASE_ID.match("20260102-030405-1a2b3c4") and early > "20260102-030405-1a2b3c4"


def test_paths_with_shell_metacharacters_are_quoted(tmp_path):
    base = str(tmp_path / "we ird;$(touch pwned)`id`")
    cmd = rel.switch_command(
        base, "20260102-030405-1a2b3c4", [FileUpload("a", str(tmp_path / "d st"))]
    )
    # The command must mention the path only as one quoted word.
    assert shlex.quote(base + "/current") in cmd
    (tmp_path / "we ird;$(touch pwned)`id`" / "releases" / "20260102-030405-1a2b3c4").mkdir(
        parents=True
    )
    subprocess.run(["sh", "-c", cmd], check=True, cwd=tmp_path)
    assert not (tmp_path / "pwned").exists()
    link = tmp_path / "we ird;$(touch pwned)`id`" / "current"
    assert link.is_symlink() and link.resolve().name == "20260102-030405-1a2b3c4"


def test_switch_reports_previous_and_replaces_link(tmp_path):
    base = str(tmp_path)
    for r in ("20260101-000000-aaaaaaa", "20260102-000000-bbbbbbb"):
        (tmp_path / "releases" / r).mkdir(parents=True)
    first = subprocess.run(
        ["sh", "-c", rel.switch_command(base, "20260101-000000-aaaaaaa", [])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert rel.parse_previous(first.stdout) is None
    second = subprocess.run(
        ["sh", "-c", rel.switch_command(base, "20260102-000000-bbbbbbb", [])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert rel.parse_previous(second.stdout) == "20260101-000000-aaaaaaa"
    assert (tmp_path / "current").resolve().name == "20260102-000000-bbbbbbb"
    assert not list(tmp_path.glob(".current-*"))


def test_switch_installs_staged_files_and_fails_on_unwritable_dest(tmp_path):
    release = "20260101-000000-aaaaaaa"
    staged = tmp_path / "releases" / release / ".relconsole" / "files" / "0"
    staged.mkdir(parents=True)
    (staged / "web.conf").write_text("[program:web]\n")
    dest = tmp_path / "conf.d"
    ok = subprocess.run(
        ["sh", "-c", rel.switch_command(str(tmp_path), release, [FileUpload("x", str(dest))])]
    )
    assert ok.returncode == 0 and (dest / "web.conf").read_text() == "[program:web]\n"
    (tmp_path / "current").unlink()
    bad = subprocess.run(
        [
            "sh",
            "-c",
            rel.switch_command(str(tmp_path), release, [FileUpload("x", "/proc/no/such")]),
        ],
        capture_output=True,
    )
    assert bad.returncode != 0
    assert not (tmp_path / "current").exists(), "current must not switch when files fail"


def test_parse_releases_ignores_foreign_names():
    out = (
        "current=/srv/api/releases/20260103-000000-ccccccc\n"
        "20260101-000000-aaaaaaa\nnotes.txt\n20260103-000000-ccccccc\n20260102-000000-bbbbbbb\n"
    )
    current, releases = rel.parse_releases(out)
    assert current == "20260103-000000-ccccccc"
    assert releases == [
        "20260101-000000-aaaaaaa",
        "20260102-000000-bbbbbbb",
        "20260103-000000-ccccccc",
    ]


def test_prune_keeps_newest_and_never_current_or_previous():
    rs = [f"2026010{i}-000000-aaaaaaa" for i in range(1, 8)]
    # current is an old release (after a rollback), previous older still.
    doomed = rel.releases_to_prune(rs, keep=2, current=rs[2], previous=rs[0])
    assert doomed == [rs[1], rs[3], rs[4]]
    assert rel.releases_to_prune(rs[:2], keep=5, current=rs[1], previous=rs[0]) == []


def test_prune_command_only_touches_release_ids():
    assert (
        rel.prune_command("/srv/a", ["../../etc", "20260101-000000-aaaaaaa"])
        == "rm -rf /srv/a/releases/20260101-000000-aaaaaaa"
    )
    assert rel.prune_command("/srv/a", ["../../etc"]) is None


def test_extract_is_all_or_nothing_and_cleans_up_after_itself(tmp_path):
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        blob = b"x" * 100_000
        info = tarfile.TarInfo("app.py")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    whole = data.getvalue()
    base = str(tmp_path / "s p;ace")
    good, cut = "20260101-000000-aaaaaaa", "20260102-000000-bbbbbbb"

    # Cut off mid-stream, as by a dropped connection: nothing is left, not even partially.
    bad = subprocess.run(
        ["sh", "-c", rel.extract_command(base, cut)], input=whole[:50_000], capture_output=True
    )
    assert bad.returncode != 0
    assert sorted(p.name for p in (tmp_path / "s p;ace" / "releases").iterdir()) == []

    # A partial directory left by a shell that was killed is cleared by the next upload.
    (tmp_path / "s p;ace" / "releases" / f"{rel.PARTIAL_PREFIX}{cut}").mkdir()
    ok = subprocess.run(["sh", "-c", rel.extract_command(base, good)], input=whole)
    assert ok.returncode == 0
    assert sorted(p.name for p in (tmp_path / "s p;ace" / "releases").iterdir()) == [good]
    assert (tmp_path / "s p;ace" / "releases" / good / "app.py").stat().st_size == 100_000

    again = subprocess.run(
        ["sh", "-c", rel.extract_command(base, good)], input=whole, capture_output=True
    )
    assert again.returncode != 0 and b"already exists" in again.stderr
    assert rel.parse_releases("\n".join([good, f"{rel.PARTIAL_PREFIX}{cut}"])) == (None, [good])
