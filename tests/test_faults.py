"""Faults: a training run killed mid-way resumes to the same result; broken checkpoints and unsafe weights
are refused with a clear message."""

import io
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, REPO, tiny_backbone, train_in_repo
from transformers import AutoModelForAudioClassification

from modeling import SERConfig, SERForSequenceClassification
from serving.files import atomic_path
from training import checkpoints

ARGS = [
    "configs/tiny.yaml", "--data_dir", str(DATA_DIR), "--max_clips", "96", "--num_train_epochs", "2", "--eval_strategy", "no",
    "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "3", "--load_best_model_at_end", "false",
    "--logging_steps", "1", "--dataloader_pin_memory", "false",
]  # fmt: skip


def launch(out, cache_dir):
    """train.py in a process of its own: the run that gets killed."""
    return subprocess.Popen(
        [sys.executable, "train.py", *ARGS, "--output_dir", str(out), "--preprocessing_cache_dir", cache_dir],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def train_here(out, cache_dir, *extra) -> None:
    """train.py's `main` in this process (the runs that are not killed)."""
    train_in_repo([*ARGS, "--output_dir", str(out), "--preprocessing_cache_dir", cache_dir, *extra])


def steps(out):
    return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").exists())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir, preprocessing_cache):
    """A reference run, and a run killed at a random checkpoint and resumed (the tests that read them are one xdist
    group, so that they run once)."""
    root = tmp_path_factory.mktemp("faults")
    cache_dir = preprocessing_cache
    train_here(root / "reference", cache_dir)
    total = steps(root / "reference")[-1]

    seed = random.randrange(1 << 30)
    kill_after = random.Random(seed).choice([s for s in range(2, total - 1, 2)])
    killed = launch(root / "killed", cache_dir)
    deadline = time.time() + 600
    while time.time() < deadline and not [s for s in steps(root / "killed") if s >= kill_after]:
        assert killed.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (root / "killed" / "all_results.json").exists()
    log, root_logger = io.StringIO(), logging.getLogger()
    handler, level = logging.StreamHandler(log), root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    try:
        train_here(root / "killed", cache_dir)
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(level)
    return {"root": root, "total": total, "kill_after": kill_after, "seed": seed, "log": log.getvalue(), "cache_dir": cache_dir}


@pytest.mark.slow
@pytest.mark.xdist_group("faults")
def test_killed_run_resumes_to_the_same_result(runs):
    root = runs["root"]
    assert "resuming from" in runs["log"], f"kill seed {runs['seed']}"
    ref = json.loads((root / "reference" / "all_results.json").read_text())
    res = json.loads((root / "killed" / "all_results.json").read_text())
    state = json.loads((root / "killed" / f"checkpoint-{runs['total']}" / "trainer_state.json").read_text())
    assert state["global_step"] == runs["total"]
    for metric in ("accuracy", "f1_macro", "uar"):
        assert res["test"][metric] == pytest.approx(ref["test"][metric], abs=0.02), (metric, runs["seed"])
    a = SERForSequenceClassification.from_pretrained(root / "reference").state_dict()
    b = SERForSequenceClassification.from_pretrained(root / "killed").state_dict()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
@pytest.mark.xdist_group("faults")
def test_partial_checkpoint_is_skipped_and_explicit_one_reported(runs, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(runs["root"] / "reference", out)
    last = out / f"checkpoint-{runs['total']}"
    weights = last / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # killed while writing
    picked = checkpoints.pick_resume_checkpoint(None, out, overwrite=False)
    assert picked is not None and picked != str(last)
    with pytest.raises(checkpoints.CheckpointError, match=f"checkpoint {last} is incomplete or corrupt"):
        checkpoints.check_checkpoint(str(last))
    (out / f"checkpoint-{steps(out)[0]}" / "trainer_state.json").write_text("{not json")
    # Refused before training starts (train.py turns a CheckpointError into one line and exit code 2, like every
    # refusal test_sources checks through the command line).
    with pytest.raises(checkpoints.CheckpointError, match="is incomplete or corrupt"):
        train_here(out, runs["cache_dir"], "--resume_from_checkpoint", str(last))


@pytest.mark.slow
@pytest.mark.xdist_group("faults")
def test_outputs_are_replaced_atomically(runs):
    out = runs["root"] / "killed"
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []
    json.loads((out / "all_results.json").read_text())


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "embeddings.npy"
    np.save(target, np.arange(3))
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.suffix == ".npy"  # writers that add a suffix unless it is there (np.save) write to `tmp` itself
        np.save(tmp, np.arange(5))
        raise RuntimeError("killed mid-write")
    assert np.load(target).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["embeddings.npy"]
    with atomic_path(target) as tmp:
        np.save(tmp, np.arange(5))
    assert np.load(target).tolist() == [0, 1, 2, 3, 4]
    assert [p.name for p in tmp_path.iterdir()] == ["embeddings.npy"]


def test_pickled_weights_are_refused(tmp_path):
    model = SERForSequenceClassification(SERConfig(backbone_config=tiny_backbone()))
    model.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(OSError, match="safetensors|model.safetensors"):
        AutoModelForAudioClassification.from_pretrained(tmp_path)
