"""Training survives kill -9: the CLI is killed at a random moment, then ``--resume`` finishes it."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import napari_calcinosis
from napari_calcinosis import load_model

EPOCHS, STEPS = 6, 4
TRAIN = [
    "train", "--phantoms", "3", "--val-phantoms", "1", "--epochs", str(EPOCHS), "--steps-per-epoch", str(STEPS),
    "--batch-size", "2", "--crop-px", "64", "--device", "cpu", "--checkpoint-every", "0",
]


def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "napari_calcinosis", *TRAIN, "--out", str(out), *extra]


def _env() -> dict:
    # The subprocess imports this very copy of the package, whatever is installed.
    src = str(Path(napari_calcinosis.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_kill_9_at_a_random_step_then_resume_finishes(tmp_path):
    import torch

    seed = random.randrange(1_000_000)
    rnd = random.Random(seed)
    why = f"(kill seed {seed})"
    out = tmp_path / "m.safetensors"
    ckpt = tmp_path / "m.checkpoint.pt"
    # One checkpoint per step (--checkpoint-every 0); kill after one of the first half of them,
    # at a random moment of the step that follows: in training, validation or a file write.
    kill_after = rnd.randint(1, EPOCHS * STEPS // 2)
    proc = subprocess.Popen(_cli(out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        writes, last_inode, deadline = 0, None, time.monotonic() + 120
        while writes < kill_after and proc.poll() is None and time.monotonic() < deadline:
            try:
                inode = ckpt.stat().st_ino  # a new inode per atomic replace
            except FileNotFoundError:
                inode = None
            if inode is not None and inode != last_inode:
                writes, last_inode = writes + 1, inode
            time.sleep(0.005)
        time.sleep(rnd.uniform(0.0, 0.3))
        assert proc.poll() is None, f"training ended before it was killed {why}: {proc.stderr.read().decode()[-500:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # Whatever the moment: the model file is absent or whole, and the checkpoint is whole.
    if out.exists():
        load_model(out)
    stopped = torch.load(ckpt, weights_only=True)
    assert stopped["step"] < EPOCHS * STEPS, why

    done = subprocess.run(_cli(out, "--resume"), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{why} {done.stderr[-1000:]}"
    assert "model written to" in done.stdout
    model = load_model(out)
    assert 0.0 <= model.card["validation"]["dice_mean"] <= 1.0  # a few tiny steps may not find bone yet
    final = torch.load(ckpt, weights_only=True)
    assert final["epoch"] == EPOCHS and final["step"] == EPOCHS * STEPS, why
    # The history carries on from the killed run: every epoch once, in order.
    assert [h["epoch"] for h in final["history"]] == list(range(1, EPOCHS + 1)), why
    assert final["history"][: len(stopped["history"])] == stopped["history"], why
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.checkpoint.pt", "m.json", "m.safetensors"], why


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="needs POSIX SIGINT")
@pytest.mark.parametrize(("signum", "code", "said", "how"), [
    ("SIGINT", 130, "interrupted", "Ctrl+C"),  # what Ctrl+C in the terminal sends
    ("SIGTERM", 143, "terminated (SIGTERM)", "SIGTERM"),  # a batch scheduler's time limit
])
def test_ctrl_c_keeps_a_checkpoint_then_resume_finishes(tmp_path, signum, code, said, how):
    import torch

    out = tmp_path / "m.safetensors"
    ckpt = tmp_path / "m.checkpoint.pt"
    proc = subprocess.Popen(_cli(out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"training ended before Ctrl+C: {proc.stderr.read()[-500:]}"
        proc.send_signal(getattr(signal, signum))
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr[-1000:]
    assert f"{said}: a checkpoint was written; give the same command with --resume" in stderr
    stopped = torch.load(ckpt, weights_only=True)
    assert 0 < stopped["step"] < EPOCHS * STEPS
    assert f"interrupted ({how}) at step" in load_model(out).card["training"]["ended"]
    if signum == "SIGINT":
        return  # the same checkpoint, resumed as SIGTERM's below and kill -9's above (CI's time)
    done = subprocess.run(_cli(out, "--resume"), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "finished: 6 epochs, 24 steps" in done.stdout, done.stderr[-1000:]
    assert torch.load(ckpt, weights_only=True)["step"] == EPOCHS * STEPS


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="needs POSIX SIGINT")
def test_ctrl_c_during_a_validation_keeps_a_checkpoint_then_resume_finishes(tmp_path, monkeypatch, capsys):
    # Ctrl+C while an epoch's validation ran wrote no checkpoint (the last one was due only
    # every 30 s), and the command said "before the first step, nothing to resume".
    from napari_calcinosis import cli
    from napari_calcinosis import train as train_module

    real = train_module.train_segmenter

    def ctrl_c_at_the_first_validation(*args, progress, **kwargs):
        sent = []

        def report(p):
            progress(p)
            if p.phase == "validate" and not sent:
                sent.append(p.step)
                os.kill(os.getpid(), signal.SIGINT)

        return real(*args, progress=report, **kwargs)

    monkeypatch.setattr(train_module, "train_segmenter", ctrl_c_at_the_first_validation)
    command = [a for a in TRAIN if a not in ("--checkpoint-every", "0")] + ["--out", str(tmp_path / "m.safetensors")]
    assert cli.main(command) == 130
    said = capsys.readouterr().err
    assert "interrupted: a checkpoint was written; give the same command with --resume to carry on" in said
    monkeypatch.setattr(train_module, "train_segmenter", real)
    assert cli.main([*command, "--resume"]) == 0
    assert f"finished: {EPOCHS} epochs, {EPOCHS * STEPS} steps" in capsys.readouterr().out
