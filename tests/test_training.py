import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO
from PIL import Image

import train
from modeling import EMOTIONS
from training.data import DataError, parse_ravdess_name, scan_ravdess_folder
from training.splits import actor_split, kfold_splits, random_split

QUICK = ["--num_train_epochs", "1", "--logging_steps", "5", "--dataloader_pin_memory", "false"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("features-cache"))


def run_train(tmp_path, cache_dir, *args, name="run"):
    out = tmp_path / name
    argv = ["configs/tiny.yaml", "--output_dir", str(out), "--preprocessing_cache_dir", cache_dir, *QUICK, *args]
    cwd = os.getcwd()
    os.chdir(REPO)  # the config's data_dir is relative to the repository
    try:
        return train.main(argv), out
    finally:
        os.chdir(cwd)


def test_parse_ravdess_names():
    assert parse_ravdess_name("03-01-06-02-01-02-13.wav") == {
        "label": "fearful",
        "actor": 13,
        "sex": "male",
        "intensity": "strong",
    }
    assert parse_ravdess_name("Actor_02/03-01-01-01-02-01-02.mp3")["sex"] == "female"
    for bad in ("03-01-09-01-01-01-01.wav", "recording.wav", "03-01-01-01-01-01.wav"):
        assert parse_ravdess_name(bad) is None


def test_actor_split_is_speaker_independent(manifest):
    actors = [int(r["actor"]) for r in manifest]
    sexes = [r["sex"] for r in manifest]
    split = actor_split(actors, sexes, num_val=2, num_test=4, seed=7)
    parts = split.actors
    assert not set(parts["train"]) & set(parts["test"])
    assert not set(parts["train"]) & set(parts["validation"])
    assert not set(parts["validation"]) & set(parts["test"])
    assert sorted(parts["train"] + parts["validation"] + parts["test"]) == list(range(1, 21))
    for part in ("validation", "test"):
        assert {a % 2 for a in parts[part]} == {0, 1}  # both sexes
        assert {actors[i] for i in getattr(split, part)} == set(parts[part])
    assert split == actor_split(actors, sexes, num_val=2, num_test=4, seed=7)  # reproducible from the seed
    assert split.actors != actor_split(actors, sexes, num_val=2, num_test=4, seed=8).actors
    assert not split.speakers_overlap and "speaker-independent" in split.summary()


def test_kfold_holds_each_actor_out_once(manifest):
    actors = [int(r["actor"]) for r in manifest]
    sexes = [r["sex"] for r in manifest]
    folds = kfold_splits(actors, sexes, folds=5, num_val=2, seed=0)
    tested = [a for f in folds for a in f.actors["test"]]
    assert sorted(tested) == list(range(1, 21))
    for fold in folds:
        assert {a % 2 for a in fold.actors["test"]} == {0, 1}
        assert not set(fold.actors["train"]) & set(fold.actors["test"] + fold.actors["validation"])
        assert len(fold.train) + len(fold.validation) + len(fold.test) == len(actors)


def test_random_split_is_stratified_and_says_speakers_overlap(manifest):
    labels = [EMOTIONS.index(r["emotion"]) for r in manifest]
    split = random_split(labels, 0.1, 0.2, seed=0)
    assert len(split.test) == 240 and not set(split.test) & set(split.train)
    test_counts = np.bincount(np.asarray(labels)[split.test], minlength=8)
    assert test_counts.min() >= 15  # neutral has half as many clips as the others
    assert split.speakers_overlap and "speakers overlap" in split.summary()


def test_trainer_run_writes_metrics_card_and_checkpoints(tmp_path, cache_dir):
    results, out = run_train(tmp_path, cache_dir, "--max_clips", "160", "--num_train_epochs", "2")
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["split"]["kind"] == "actor" and saved["split"]["speakers_overlap"] is False
    assert not set(saved["split"]["actors"]["train"]) & set(saved["split"]["actors"]["test"])
    assert saved["data"]["duplicates_dropped"] == 1  # the byte-identical pair of actor 7, found before subsampling
    assert saved["data"]["clips"] == 160
    test = saved["test"]
    assert set(test["per_class"]) == set(EMOTIONS)
    assert sum(c["support"] for c in test["per_class"].values()) == saved["split"]["sizes"]["test"]
    matrix = np.array(json.loads((out / "confusion_matrix.json").read_text())["matrix"])
    assert matrix.shape == (8, 8) and matrix.sum() == saved["split"]["sizes"]["test"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(test["accuracy"])
    with Image.open(out / "confusion_matrix.png") as image:
        assert image.size[0] > 400
    assert sorted(p.name for p in out.glob("checkpoint-*"))  # one per epoch, at most save_total_limit
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-nc-sa-4.0")
    assert f"Split: {saved['split_summary']}." in card
    assert f"{test['accuracy']:.3f}" in card and f"{test['f1_macro']:.3f}" in card
    assert "python train.py configs/tiny.yaml" in card
    from transformers import pipeline

    scores = pipeline("audio-classification", model=str(out), top_k=None)(
        str(REPO.parent / "shared/data/ravdess16k/Actor_03/03-01-05-01-01-01-03.flac")
    )
    assert len(scores) == 8


def test_resume_continues_from_last_checkpoint(tmp_path, cache_dir):
    args = ["--max_clips", "96", "--save_strategy", "epoch", "--save_total_limit", "3"]
    _, out = run_train(tmp_path, cache_dir, *args, "--num_train_epochs", "1")
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    steps_one_epoch = int(checkpoints[-1].name.split("-")[1])
    _, out = run_train(tmp_path, cache_dir, *args, "--num_train_epochs", "2")
    last = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    state = json.loads((last / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * steps_one_epoch
    # The first epoch's logs came from the first run and were carried over, not recomputed.
    assert [h["epoch"] for h in state["log_history"] if "eval_loss" in h] == [1.0, 2.0]
    # An explicit checkpoint works too.
    results, _ = run_train(
        tmp_path, cache_dir, *args, "--num_train_epochs", "2", "--resume_from_checkpoint", str(checkpoints[-1]), name="explicit"
    )
    assert results["test"]["accuracy"] >= 0


def test_frozen_backbone_mode_beats_chance_on_held_out_actors(tmp_path, cache_dir):
    results, out = run_train(
        tmp_path,
        cache_dir,
        "--freeze_backbone", "true",
        "--pooling", "weighted_mean",
        "--num_train_epochs", "40",
        "--learning_rate", "0.003",
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--load_best_model_at_end", "false",
    )  # fmt: skip
    assert results["training"]["mode"].startswith("frozen backbone")
    assert results["split"]["speakers_overlap"] is False
    # Chance is 0.125; on 240 test clips a random guesser exceeds 0.2 with probability < 0.1%.
    assert results["test"]["accuracy"] > 0.2, results["test"]
    assert results["training"]["embedding_time_s"] > 0


def test_kfold_reports_mean_and_std(tmp_path, cache_dir):
    results, out = run_train(
        tmp_path, cache_dir, "--split", "kfold", "--folds", "2", "--max_clips", "96", "--freeze_backbone", "true",
        "--save_strategy", "no", "--load_best_model_at_end", "false",
    )  # fmt: skip
    assert len(results["folds"]) == 2
    tested = sorted(a for f in results["folds"] for a in f["split"]["actors"]["test"])
    assert tested == sorted(set(tested)) and len(tested) == results["data"]["actors"]
    accs = [f["test"]["accuracy"] for f in results["folds"]]
    assert results["test"]["accuracy"] == pytest.approx(np.mean(accs))
    assert results["test_std"]["accuracy"] == pytest.approx(np.std(accs))
    card = (out / "README.md").read_text()
    assert "mean ± std" in card and "2-fold" in card
    assert (out / "fold-0" / "model.safetensors").exists() and (out / "fold-1" / "confusion_matrix.json").exists()


def make_hub_copy(manifest, data_dir, tmp_path, n_per_actor=8) -> Path:
    """A parquet dataset shaped like a Hub RAVDESS mirror: audio bytes, string labels, an actor column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {}
    for r in manifest:
        if int(r["actor"]) <= 8 and sum(1 for x in rows.values() if x["actor"] == int(r["actor"])) < n_per_actor:
            path = data_dir / r["path"]
            rows[path] = {
                "audio": {"bytes": path.read_bytes(), "path": path.name},
                "label": {"fearful": "fear", "surprised": "surprise"}.get(r["emotion"], r["emotion"]),
                "actor": int(r["actor"]),
            }
    root = tmp_path / "hub-copy" / "data"
    root.mkdir(parents=True)
    table = pa.Table.from_pylist(list(rows.values()))
    pq.write_table(table, root / "train-00000-of-00001.parquet")
    return root.parent


def test_hub_dataset_path_on_a_local_parquet_copy(tmp_path, cache_dir, manifest, data_dir):
    local = make_hub_copy(manifest, data_dir, tmp_path)
    results, out = run_train(
        tmp_path, cache_dir, "--dataset_name", str(local), "--data_dir", "", "--freeze_backbone", "true",
        "--num_val_actors", "2", "--num_test_actors", "2", "--save_strategy", "no", "--load_best_model_at_end", "false",
    )  # fmt: skip
    assert results["data"]["clips"] == 64 and results["data"]["actors"] == 8
    assert results["data"]["dataset"] == str(local)
    assert set(results["split"]["actors"]["test"]) <= set(range(1, 9))


def test_push_to_hub_uploads_model_code_and_card(tmp_path, cache_dir, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoUrl

    pushed = {}

    def fake_create_repo(self, repo_id, **kwargs):
        pushed["repo"] = repo_id
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def fake_upload_folder(self, *, repo_id, folder_path, allow_patterns=None, ignore_patterns=None, **kwargs):
        # Stands in for the network transfer only; the file selection is huggingface_hub's own.
        import yaml
        from huggingface_hub.utils import filter_repo_objects

        root = Path(folder_path)
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        pushed["files"] = sorted(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        pushed["metadata"] = yaml.safe_load((root / "README.md").read_text().split("---")[1])

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    results, out = run_train(
        tmp_path, cache_dir, "--max_clips", "96", "--freeze_backbone", "true", "--push_to_hub", "true",
        "--hub_model_id", "someone/ser-test",
    )  # fmt: skip
    assert pushed["repo"] == "someone/ser-test" and results["hub_repo"] == "someone/ser-test"
    assert pushed["files"] == sorted(
        [
            "README.md",
            "audio.py",
            "config.json",
            "configuration_ser.py",
            "confusion_matrix.json",
            "confusion_matrix.png",
            "feature_extraction_ser.py",
            "labels.py",
            "model.safetensors",
            "modeling_ser.py",
            "preprocessor_config.json",
        ]
    )
    metadata = pushed["metadata"]
    assert metadata["license"] == "cc-by-nc-sa-4.0" and metadata["pipeline_tag"] == "audio-classification"
    reported = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert reported["accuracy"] == round(results["test"]["accuracy"], 4)


def test_data_errors(tmp_path, data_dir, caplog):
    with pytest.raises(DataError, match="no such folder"):
        scan_ravdess_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files named in the RAVDESS layout"):
        scan_ravdess_folder(tmp_path / "empty")
    folder = tmp_path / "mixed" / "Actor_01"
    folder.mkdir(parents=True)
    for name in ("03-01-05-01-01-01-01.flac", "03-01-03-02-01-01-01.flac"):
        shutil.copy(data_dir / "Actor_01" / name, folder / name)
    shutil.copy(data_dir / "Actor_01" / "03-01-05-01-01-01-01.flac", folder / "my recording.flac")
    (folder / "notes.txt").write_text("not audio")
    records, skipped = scan_ravdess_folder(tmp_path / "mixed")
    assert [r["label"] for r in records] == ["happy", "angry"] and skipped == 1
    assert "my recording.flac" in caplog.text
    from training.data import normalize_label

    assert normalize_label("Fear") == "fearful"
    with pytest.raises(DataError, match="unknown label 'bored'"):
        normalize_label("bored")


def test_train_cli_reports_data_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "configs/tiny.yaml", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "o")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "no audio files named in the RAVDESS layout" in result.stderr
    assert "Traceback" not in result.stderr


def test_accelerate_launch_two_cpu_processes(tmp_path, cache_dir):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            # accelerate 1.x runs `--cpu --num_processes N` as ONE process unless MPI is set up; torch.distributed
            # processes come from the --multi_gpu launcher, and --use_cpu makes them use gloo on the CPU.
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "train.py", "configs/tiny.yaml", "--output_dir", str(out), "--preprocessing_cache_dir", cache_dir,
            "--max_clips", "96", "--use_cpu", "true", *QUICK,
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["training"]["world_size"] == 2
    assert saved["training"]["batch_size"] == 2 * 16  # per-device batch times processes
    assert (out / "model.safetensors").exists() and (out / "README.md").exists()


def test_preprocessing_is_cached_between_runs(tmp_path, data_dir, monkeypatch):
    import training.data as data
    from modeling import SERFeatureExtractor

    records, _ = scan_ravdess_folder(data_dir / "Actor_02")
    records, _ = data.drop_duplicates(records[:12])
    fe = SERFeatureExtractor()
    first, failed = data.preprocess(records, fe, str(tmp_path))
    assert len(first) == 12 and failed == 0

    def no_decoding(*args, **kwargs):
        raise AssertionError("a second run must not decode again")

    monkeypatch.setattr(data, "load_audio", no_decoding)
    second, _ = data.preprocess(records, fe, str(tmp_path))
    assert second["input_values"][3] == pytest.approx(first["input_values"][3])
    # Other preprocessing settings are another cache entry, so they do decode.
    with pytest.raises(AssertionError, match="must not decode"):
        data.preprocess(records, SERFeatureExtractor(noise_reduction=False), str(tmp_path))
