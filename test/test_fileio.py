"""Atomic writes: short temporary names, the process umask, no overwrite on request, and the
clean-up of what a killed writer leaves (a real kill -9 of a real writer process)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gsbp_ros.fileio import (
    TEMP_PREFIX,
    FileExistsRefused,
    atomic_path,
    atomic_write,
    remove_stale_temp_files,
    temp_name,
)

ROOT = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_temp_names_are_short_whatever_the_target():
    for target in ("a.ply", "x" * 246 + ".ply", "noext", "f." + "s" * 40):
        name = temp_name(target)
        assert name.startswith(TEMP_PREFIX) and len(name) <= 42, name
    assert temp_name("a.ply") != temp_name("a.ply")
    assert temp_name("a.ply").endswith(".ply")


def test_a_250_character_name_can_be_written(tmp_path):
    name = "n" * 246 + ".ply"
    assert len(name) == 250
    with atomic_write(tmp_path / name) as f:
        f.write(b"data")
    assert (tmp_path / name).read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_files_get_the_process_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "w.bin") as f:
            f.write(b"1")
        with atomic_path(tmp_path / "p.bin") as tmp:
            tmp.write_bytes(b"2")
    finally:
        os.umask(old)
    for name in ("w.bin", "p.bin"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, (name, oct(_mode(tmp_path / name)))


def test_overwrite_false_keeps_the_existing_file(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(FileExistsRefused), atomic_write(target, "w", overwrite=False) as f:
        f.write("new")
    assert target.read_text() == "old"
    with pytest.raises(FileExistsRefused), atomic_path(target, overwrite=False) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]  # no temporary left
    with atomic_write(tmp_path / "fresh.txt", "w", overwrite=False) as f:
        f.write("x")
    assert (tmp_path / "fresh.txt").read_text() == "x"
    with atomic_write(target, "w") as f:  # the default replaces
        f.write("new")
    assert target.read_text() == "new"


def test_overwrite_false_is_atomic_against_a_file_that_appears_meanwhile(tmp_path):
    target = tmp_path / "race.txt"
    with pytest.raises(FileExistsRefused), atomic_write(target, "w", overwrite=False) as f:
        f.write("mine")
        target.write_text("theirs")  # another writer wins while this one writes
    assert target.read_text() == "theirs"


def test_a_live_writers_temporary_file_is_kept(tmp_path):
    with atomic_write(tmp_path / "live.bin") as f:
        f.write(b"partial")
        (tmp,) = tmp_path.glob(f"{TEMP_PREFIX}*")
        assert remove_stale_temp_files(tmp_path) == []
        assert tmp.exists()
    assert not tmp.exists() and (tmp_path / "live.bin").read_bytes() == b"partial"


def test_only_this_packages_temporary_files_are_removed(tmp_path):
    (tmp_path / f"{TEMP_PREFIX}0123456789abcdef.ply").write_bytes(b"debris")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / f"{TEMP_PREFIX}fedcba9876543210.tmp").write_bytes(b"debris")
    (tmp_path / ".other.tmp").write_bytes(b"someone else's")
    (tmp_path / "keep.ply").write_bytes(b"a result")
    removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [f"{TEMP_PREFIX}0123456789abcdef.ply"]
    assert (tmp_path / "sub" / f"{TEMP_PREFIX}fedcba9876543210.tmp").exists()
    assert len(remove_stale_temp_files(tmp_path, recursive=True)) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".other.tmp", "keep.ply", "sub"]
    assert remove_stale_temp_files(tmp_path / "missing") == []


WRITER = textwrap.dedent(
    """
    import sys, time
    from gsbp_ros.fileio import atomic_write
    with atomic_write(sys.argv[1]) as f:
        f.write(b"x" * 1000)
        f.flush()
        print("half written", flush=True)
        time.sleep(600)  # killed here
        f.write(b"y" * 1000)
    """
)


def test_kill_9_mid_write_leaves_debris_that_the_next_start_removes(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = _readline(proc, timeout=60)
        assert line == "half written"
        (debris,) = tmp_path.glob(f"{TEMP_PREFIX}*")
        assert remove_stale_temp_files(tmp_path) == []  # the writer still lives: kept
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert debris.stat().st_size == 1000  # what a killed writer leaves ...
    assert target.read_bytes() == b"previous"  # ... never replaces the target
    assert remove_stale_temp_files(tmp_path) == [debris]  # and the next start removes it
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while reader.is_alive() and time.monotonic() < deadline:
        reader.join(0.1)
    return box[0].strip() if box else ""
