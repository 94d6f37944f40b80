"""The one reader of sandbox trees (``runs/sandboxes/hostile.py``) against trees an agent made hostile: links to
host files in the tree, in subfolders and as the folder itself, hard links, FIFOs, device nodes, sockets, and a
folder swapped for a link in a loop while the tree is walked and read. Nothing is followed, nothing outside the
tree is read, and nothing the tree does raises anything but ``Unreadable``.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from runs.sandboxes import hostile

MARKER = b"host-secret-for-the-hostile-tree-tests"


@pytest.fixture
def host(tmp_path) -> Path:
    """A host folder beside the tree, holding the secret."""
    folder = tmp_path / "host"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(MARKER)
    (folder / "summary.md").write_bytes(MARKER)
    return folder


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "app"
    (root / "results" / "sub").mkdir(parents=True)
    (root / "results" / "ok.txt").write_bytes(b"fine")
    (root / "results" / "sub" / "deep.txt").write_bytes(b"deep")
    return root


def read_all(root: Path, under: str = "") -> dict[str, bytes | str]:
    """What a careful collector gets: each walked file's bytes, or why it was refused."""
    got: dict[str, bytes | str] = {}
    for entry in hostile.walk(root, under):
        prefix = f"{under}/" if under else ""
        try:
            if entry.refused:
                raise hostile.Unreadable(entry.path, entry.refused)
            got[entry.path] = hostile.read(root, prefix + entry.path, 1 << 20)
        except hostile.Unreadable as exc:
            got[entry.path] = exc.reason
    return got


def test_a_plain_tree_is_walked_and_read(tree):
    assert read_all(tree, "results") == {"ok.txt": b"fine", "sub/deep.txt": b"deep"}
    assert [e.path for e in hostile.walk(tree)] == ["results/ok.txt", "results/sub/deep.txt"]
    assert hostile.tree_bytes(tree) == 8


def test_links_to_host_files_are_refused_not_followed(tree, host):
    (tree / "results" / "summary.md").symlink_to(host / "summary.md")
    (tree / "results" / "sub" / "leak.txt").symlink_to(host / "secret.txt")
    (tree / "results" / "hostdir").symlink_to(host)
    (tree / "results" / "etc").symlink_to("/etc")
    (tree / "results" / "relative").symlink_to("../../host/secret.txt")
    got = read_all(tree, "results")
    assert got["summary.md"] == got["sub/leak.txt"] == got["relative"] == hostile.LINK
    assert got["hostdir"] == got["etc"] == hostile.LINK  # listed as links, never entered
    assert not any(isinstance(v, bytes) and MARKER in v for v in got.values())
    for path in ("results/summary.md", "results/sub/leak.txt", "results/hostdir/secret.txt", "results/etc/passwd"):
        with pytest.raises(hostile.Unreadable) as refused:
            hostile.read(tree, path, 1 << 20)
        assert refused.value.reason in (hostile.LINK, hostile.NOT_A_FOLDER), path


def test_a_results_folder_that_is_itself_a_link_holds_nothing(tree, host):
    import shutil

    shutil.rmtree(tree / "results")
    (tree / "results").symlink_to(host)
    assert list(hostile.walk(tree, "results")) == []
    with pytest.raises(hostile.Unreadable) as refused:
        hostile.read(tree, "results/summary.md", 1 << 20)
    assert refused.value.reason == hostile.LINK
    assert [e.path for e in hostile.walk(tree)] == ["results"]  # the link itself, refused


def test_hard_links_fifos_sockets_and_devices_are_never_read(tree, host):
    results = tree / "results"
    os.link(host / "secret.txt", results / "hard.txt")
    os.mkfifo(results / "validation_report.json")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(results / "sock"))
        made_device = os.geteuid() == 0
        if made_device:
            os.mknod(results / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            os.mknod(results / "disk", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
        started = time.monotonic()
        got = read_all(tree, "results")
    assert time.monotonic() - started < 5  # no FIFO held the reader
    assert got["hard.txt"] == hostile.HARD_LINK
    assert got["validation_report.json"] == got["sock"] == hostile.SPECIAL
    if made_device:
        assert got["null"] == got["disk"] == hostile.SPECIAL
    with pytest.raises(hostile.Unreadable):
        hostile.read(tree, "results/validation_report.json", 100)


def test_files_over_the_limit_are_refused_and_paths_cannot_climb(tree):
    (tree / "results" / "big.bin").write_bytes(b"x" * 101)
    with pytest.raises(hostile.Unreadable) as refused:
        hostile.read(tree, "results/big.bin", 100)
    assert refused.value.reason == hostile.TOO_LARGE and str(refused.value) == "results/big.bin is over 100 bytes"
    assert hostile.read(tree, "results/big.bin", 101) == b"x" * 101
    with pytest.raises(hostile.Unreadable) as missing:
        hostile.read(tree, "results/gone.txt", 100)
    assert missing.value.missing
    for bad in ("../host/secret.txt", "/etc/passwd", "results/../../host/secret.txt"):
        with pytest.raises(ValueError):
            hostile.read(tree, bad, 100)


def test_nothing_is_read_across_into_another_filesystem():
    """/proc is mounted on / here: a tree rooted at / does not reach into it (as it would not into a mount an agent
    made appear in its tree), though /proc read as a tree of its own does."""
    assert os.stat("/").st_dev != os.stat("/proc").st_dev
    assert hostile.read(Path("/proc"), "1/comm", 100)
    with pytest.raises(hostile.Unreadable) as refused:
        hostile.read(Path("/"), "proc/1/comm", 100)
    assert refused.value.reason == hostile.OTHER_FILESYSTEM
    assert list(hostile.walk(Path("/"), "proc")) == []


def test_a_folder_swapped_for_a_link_in_a_loop_never_yields_a_host_byte(tree, host):
    """A thread swaps results/sub for a link to the host folder (which holds files of the same names) as fast as it
    can, and renames whole folders away, while the tree is walked and read over and over."""
    results = tree / "results"
    (results / "sub" / "secret.txt").write_bytes(b"mine")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            try:
                os.rename(results / "sub", results / "sub.real")
                os.symlink(host, results / "sub")
                os.unlink(results / "sub")
                os.rename(results / "sub.real", results / "sub")
                os.rename(results, tree / "results.away")
                os.symlink(host, results)
                os.unlink(results)
                os.rename(tree / "results.away", results)
            except OSError:
                pass

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 3
        rounds = 0
        while time.monotonic() < deadline:
            rounds += 1
            for value in read_all(tree, "results").values():
                assert not (isinstance(value, bytes) and MARKER in value)
                seen.add(value if isinstance(value, str) else "read")
            for name in ("results/sub/secret.txt", "results/sub/summary.md", "results/summary.md"):
                try:
                    assert MARKER not in hostile.read(tree, name, 1 << 20)
                    seen.add("read")
                except hostile.Unreadable as exc:
                    seen.add(exc.reason)
            assert hostile.tree_bytes(tree) < len(MARKER) * 10
    finally:
        stop.set()
        swapper.join(5)
    assert rounds > 50 and "read" in seen and seen & {hostile.LINK, hostile.MISSING, hostile.NOT_A_FOLDER}, (
        rounds,
        seen,
    )


def test_the_writer_replaces_what_is_in_the_way_and_writes_through_no_link(tree, host):
    import io

    (tree / "assets").mkdir()
    (tree / "assets" / "data.csv").symlink_to(host / "secret.txt")
    (tree / "assets" / "dir").symlink_to(host)
    hostile.write(tree, "assets/data.csv", io.BytesIO(b"a,b\n"))
    assert (tree / "assets" / "data.csv").read_bytes() == b"a,b\n" and not (tree / "assets" / "data.csv").is_symlink()
    assert (host / "secret.txt").read_bytes() == MARKER
    with pytest.raises(OSError):
        hostile.write(tree, "assets/dir/new.txt", io.BytesIO(b"x"))
    assert not (host / "new.txt").exists()
    hostile.write(tree, "assets/nested/deeper/file.txt", io.BytesIO(b"deep"))
    assert (tree / "assets" / "nested" / "deeper" / "file.txt").read_bytes() == b"deep"
