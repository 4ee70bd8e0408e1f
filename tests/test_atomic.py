"""Atomic writes: the final path holds the old file or the whole new one."""

import pytest

from napari_calcinosis._atomic import atomic_write


def test_writes_and_replaces(tmp_path):
    out = tmp_path / "sub" / "m.json"
    assert atomic_write(out, lambda p: p.write_text("one")) == out
    atomic_write(out, lambda p: p.write_text("two"))
    assert out.read_text() == "two"
    assert [f.name for f in out.parent.iterdir()] == ["m.json"]  # no temporary left behind


def test_a_failing_writer_leaves_the_old_file(tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"old")

    def half_then_fail(p):
        p.write_bytes(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(out, half_then_fail)
    assert out.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["m.safetensors"]


def test_the_writer_sees_the_final_suffix(tmp_path):
    seen = []
    atomic_write(tmp_path / "mask.png", lambda p: (seen.append(p), p.write_bytes(b"x")))
    assert seen[0].suffix == ".png" and seen[0].parent == tmp_path and seen[0].name.startswith(".")


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    from napari_calcinosis._atomic import remove_stale_temporaries, temporary_path

    out = tmp_path / "m.checkpoint.pt"
    left = temporary_path(out)
    left.write_bytes(b"half")
    other = tmp_path / ".other.tmp-1-ab.pt"
    other.write_bytes(b"not ours")
    assert remove_stale_temporaries(out) == [left]
    assert not left.exists() and other.exists()


def test_a_running_writers_temporary_file_is_left_alone(tmp_path):
    # Two runs writing one model: the second's start must not delete the file the first is
    # still writing (its rename would fail); a dead writer's file, or a day-old one, goes.
    import os
    import subprocess
    import sys
    import time

    from napari_calcinosis._atomic import remove_stale_temporaries

    out = tmp_path / "m.safetensors"
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # exited and reaped: its id names no process now
    try:
        running = tmp_path / f".m.tmp-{writer.pid}-0a1b2c3d.safetensors"
        dead = tmp_path / f".m.tmp-{ended.pid}-00000000.safetensors"
        old = tmp_path / f".m.tmp-{writer.pid}-ffffffff.safetensors"
        for p in (running, dead, old):
            p.write_bytes(b"half")
        os.utime(old, (time.time() - 2 * 86400,) * 2)
        assert sorted(remove_stale_temporaries(out)) == sorted([dead, old])
        assert running.exists()
    finally:
        writer.kill()
        writer.wait()
