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
