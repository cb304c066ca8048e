"""Delta uploads: the change set (pure), and a delta release equal to a full upload's
on scripted hosts (real sh, tar and python3 on a folder per host)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from deltarepo import commit_all, listing, v1_files, v2_changes
from fakehost import connector, fake_config, fake_hosts
from gitorigin import make_origin

from relconsole.config import SetupCommand, SharedPath
from relconsole.events import Output
from relconsole.pipeline import run_build
from relconsole.stages.delta import Entry, change_set, parse_ls_tree

F, X, L, T = "100644", "100755", "120000", "040000"
A, B, C = "a" * 40, "b" * 40, "c" * 40


def e(mode: str, oid: str) -> Entry:
    return Entry(mode, oid)


def test_unchanged_files_are_linked_changed_ones_sent_and_deletes_counted():
    old = {"keep": e(F, A), "edit": e(F, A), "gone": e(F, C), "d": e(T, B), "d/x": e(F, C)}
    new = {"keep": e(F, A), "edit": e(F, B), "d": e(T, B), "d/x": e(F, C)}
    change = change_set(old, new)
    assert [(link.path, link.source) for link in change.link] == [("d/x", "d/x"), ("keep", "keep")]
    assert change.send == ("d", "edit")  # folders always travel (tar makes them)
    assert (change.changed, change.deleted) == (1, 1)


def test_a_renamed_file_is_linked_from_its_old_path():
    change = change_set({"old name": e(F, A)}, {"new name": e(F, A)})
    assert [(link.path, link.source) for link in change.link] == [("new name", "old name")]
    assert (change.changed, change.deleted) == (1, 1)


def test_a_mode_change_sends_the_file_a_link_would_change_the_old_release_too():
    change = change_set({"run.sh": e(F, A)}, {"run.sh": e(X, A)})
    assert change.link == () and change.send == ("run.sh",)


def test_symlinks_and_type_changes_travel():
    old = {"link": e(L, A), "f2d": e(F, B), "d2f": e(T, C), "d2f/in": e(F, A)}
    new = {"link": e(L, A), "f2d": e(T, C), "f2d/in": e(F, C), "d2f": e(F, C)}
    change = change_set(old, new)
    assert change.link == ()  # no file of the old tree has the content of f2d/in or d2f
    assert set(change.send) == {"link", "f2d", "f2d/in", "d2f"}


def test_nothing_at_or_under_a_shared_entry_is_linked():
    """The previous release holds a link to the shared store there, not the tree's file."""
    old = {"logs": e(T, A), "logs/.keep": e(F, A), ".env": e(F, B), "logsx": e(F, C)}
    change = change_set(old, dict(old), shared=["logs", ".env"])
    assert [link.path for link in change.link] == ["logsx"]
    assert set(change.send) == {"logs", "logs/.keep", ".env"}


def test_the_same_content_elsewhere_does_not_serve_from_under_a_shared_entry():
    change = change_set({"logs/a": e(F, A)}, {"b": e(F, A)}, shared=["logs"])
    assert change.link == () and change.send == ("b",)


def test_a_path_with_a_dot_dot_part_is_never_linked():
    """A crafted tree may hold one; a link through it would land outside the release."""
    tree = {"a/../../x": e(F, A), "b": e(F, B)}
    change = change_set(tree, {**tree, "c": e(F, A)})
    assert [(link.path, link.source) for link in change.link] == [("b", "b")]
    assert change.send == ("a/../../x", "c")


def test_ls_tree_records_without_relconsoles_own_paths_and_with_any_name():
    raw = b"".join(
        f"{mode} {kind} {oid}\t".encode() + path + b"\0"
        for mode, kind, oid, path in [
            (F, "blob", A, b"REVISION"),
            (T, "tree", B, b".relconsole"),
            (F, "blob", A, b".relconsole/files/0/x"),
            (F, "blob", A, b"sub/REVISION"),
            (F, "blob", C, b"new\nline \xff"),
            (T, "tree", B, b".relconsolex"),
        ]
    )
    assert parse_ls_tree(raw) == {
        "sub/REVISION": e(F, A),
        os.fsdecode(b"new\nline \xff"): e(F, C),
        ".relconsolex": e(T, B),
    }


@pytest.fixture
def two_releases(tmp_path):
    """v1 on h1 and h2 (full); then v2 on all three: h1 and h2 by delta, h3 whole."""
    origin = make_origin(tmp_path / "origin")
    commit_all(origin, v1_files(), "v1")
    hosts = fake_hosts(tmp_path / "hosts", "h1", "h2", "h3", programs=["svc"])
    config = fake_config(tmp_path, hosts, origin.url)
    service = dataclasses.replace(
        config.services["svc"],
        shared=(SharedPath("logs", True),),
        setup=(SetupCommand("vendor", 'mkdir -p vendor && echo "$RELCONSOLE_SHA" > vendor/stamp'),),
    )
    config = dataclasses.replace(config, services={"svc": service})

    def build(**kwargs):
        events = []
        done = run_build(config, "svc", events.append, connector=connector(hosts), **kwargs)
        assert done.ok, done.error
        lines = {
            e.host: e.line
            for e in events
            if isinstance(e, Output) and e.host and "unpacked" in e.line
        }
        return done, lines

    first, _ = build(only_hosts=["h1", "h2"])
    return origin, hosts, build, first


def release_of(host, release: str) -> Path:
    return host.path(f"/srv/svc/releases/{release}")


def listed(host, release: str) -> dict[str, tuple]:
    return listing(release_of(host, release), host.path("/"))


def test_a_delta_release_is_the_tree_a_full_upload_makes(two_releases):
    origin, hosts, build, first = two_releases
    commit_all(origin, v2_changes(), "v2")

    second, lines = build()

    assert lines["h1"].startswith(f"delta from {first.release}: "), lines
    assert lines["h3"].startswith("full upload (no release on the host)"), lines
    full = listed(hosts["h3"], second.release)
    assert listed(hosts["h1"], second.release) == full
    assert full["vendor/stamp"][0] == "file" and full["logs"][0] == "link"
    assert "dir_to_link" in full and full["dir_to_link"][:2] == ("link", b"sub")


def test_a_previous_release_changed_on_the_host_is_not_used(two_releases):
    origin, hosts, build, first = two_releases
    kept = release_of(hosts["h2"], first.release) / "keep.txt"
    kept.unlink()
    kept.write_text("KEPT\n")  # same size, other bytes
    commit_all(origin, v2_changes(), "v2")

    second, lines = build()

    assert "cannot serve: files of" in lines["h2"] and lines["h2"].startswith("full upload"), lines
    assert lines["h1"].startswith("delta from"), lines
    assert (release_of(hosts["h2"], second.release) / "keep.txt").read_text() == "kept\n"
    assert listed(hosts["h2"], second.release) == listed(hosts["h3"], second.release)


def test_a_previous_release_whose_revision_differs_or_that_is_gone_is_not_used(two_releases):
    origin, hosts, build, first = two_releases
    (release_of(hosts["h1"], first.release) / "REVISION").write_text("0" * 40 + "\n")
    commit_all(origin, v2_changes(), "v2")

    _, lines = build()

    assert lines["h1"].startswith("full upload (the deployed commit 000000000000 is not in"), lines
    assert lines["h2"].startswith("delta from"), lines


def test_the_host_script_runs_on_any_python3_and_travels_shell_quoted():
    import ast

    from relconsole.stages.delta import APPLY_SOURCE

    ast.parse(APPLY_SOURCE, feature_version=(3, 6))
    assert "'" not in APPLY_SOURCE
    assert APPLY_SOURCE.isascii()  # Python 3.6 under a C locale reads -c as ASCII


def test_hosts_on_different_releases_each_get_a_delta_from_their_own_made_once(
    two_releases, monkeypatch
):
    from relconsole.stages import delta as dl

    origin, hosts, build, first = two_releases
    commit_all(origin, {b"VERSION": b"v1.5\n", b"keep.txt": None}, "v1.5")
    middle, _ = build(only_hosts=["h1"])
    commit_all(origin, v2_changes(), "v2")
    made = []
    write_delta = dl.write_delta
    monkeypatch.setattr(dl, "write_delta", lambda *a: made.append(a[1]) or write_delta(*a))

    second, lines = build()

    assert lines["h1"].startswith(f"delta from {middle.release}: "), lines
    assert lines["h2"].startswith(f"delta from {first.release}: "), lines
    assert lines["h3"].startswith("full upload"), lines
    assert len(made) == 2  # one per deployed commit
    full = listed(hosts["h3"], second.release)
    assert listed(hosts["h1"], second.release) == full == listed(hosts["h2"], second.release)
