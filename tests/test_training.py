import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_DIR, train_in_repo
from PIL import Image

from training.sources import DataError, scan_ravdess_folder

RAVDESS_LABELS = sorted(["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"])

QUICK = ["--num_train_epochs", "1", "--logging_steps", "5", "--dataloader_pin_memory", "false"]


@pytest.fixture(scope="session")
def cache_dir(preprocessing_cache, data_dir):
    """The run's shared cache of the corpus's decoded clips (the tests here train on the same few subsets)."""
    return preprocessing_cache


def run_train(tmp_path, cache_dir, *args, name="run"):
    out = tmp_path / name
    # The data the suite was pointed at (SER_DATA_DIR), not the config's default location.
    argv = ["configs/tiny.yaml", "--output_dir", str(out), "--data_dir", str(DATA_DIR), "--preprocessing_cache_dir", cache_dir]
    argv += [*QUICK, *args]
    return train_in_repo(argv), out


@pytest.mark.slow
def test_trainer_run_writes_metrics_card_and_checkpoints(tmp_path, cache_dir):
    results, out = run_train(tmp_path, cache_dir, "--max_clips", "160", "--num_train_epochs", "2")
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["split"]["kind"] == "actor" and saved["split"]["speakers_overlap"] is False
    assert not set(saved["split"]["actors"]["train"]) & set(saved["split"]["actors"]["test"])
    assert saved["data"]["duplicates_dropped"] == 1  # the byte-identical pair of actor 7, found before subsampling
    assert saved["data"]["clips"] == 160
    test = saved["test"]
    assert saved["labels"] == RAVDESS_LABELS and set(test["per_class"]) == set(RAVDESS_LABELS)
    assert set(test["per_corpus"]) == {"ravdess"} and test["per_corpus"]["ravdess"]["clips"] == saved["split"]["sizes"]["test"]
    assert sum(c["support"] for c in test["per_class"].values()) == saved["split"]["sizes"]["test"]
    matrix = np.array(json.loads((out / "confusion_matrix.json").read_text())["matrix"])
    assert matrix.shape == (8, 8) and matrix.sum() == saved["split"]["sizes"]["test"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(test["accuracy"])
    with Image.open(out / "confusion_matrix.png") as image:
        assert image.size[0] > 400
    # One checkpoint per epoch (deletion beyond save_total_limit is checked by the resume test).
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    steps = json.loads((checkpoints[-1] / "trainer_state.json").read_text())["global_step"]
    assert [p.name for p in checkpoints] == [f"checkpoint-{steps // 2}", f"checkpoint-{steps}"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-nc-sa-4.0")
    assert f"Split: {saved['split_summary']}." in card
    assert f"{test['accuracy']:.3f}" in card and f"{test['f1_macro']:.3f}" in card
    assert "python train.py configs/tiny.yaml" in card
    assert "Chance level for 8 balanced classes is 0.125" in card and f"{test['majority_rate']:.3f}" in card
    assert "Linear(128→256) → ReLU → Dropout(0.3) → Linear(256→8)" in card
    # Too few validation clips to fit a temperature on (fitted ones: test_labels_and_corpora.py): none is saved.
    assert saved["split"]["sizes"]["validation"] < 20 and saved["calibration"] is None
    assert json.loads((out / "config.json").read_text())["temperature"] == 1.0 and "### Calibration" not in card
    from transformers import pipeline

    scores = pipeline("audio-classification", model=str(out), top_k=None, trust_remote_code=True)(str(DATA_DIR / "Actor_03/03-01-05-01-01-01-03.flac"))
    assert sorted(s["label"] for s in scores) == RAVDESS_LABELS


def checkpoints_of(out: Path) -> list[Path]:
    return sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(tmp_path, cache_dir):
    args = ["--max_clips", "96", "--save_strategy", "epoch", "--load_best_model_at_end", "false"]
    _, out = run_train(tmp_path, cache_dir, *args, "--num_train_epochs", "1", "--save_total_limit", "1", "--logging_steps", "3")
    (first,) = checkpoints_of(out)
    steps_one_epoch = int(first.name.split("-")[1])
    assert steps_one_epoch > 3
    kept = shutil.copytree(first, tmp_path / "kept" / first.name)
    first_logs = json.loads((first / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in first_logs if "loss" in h] == [3]

    # The second run asks for logs every 2 steps: retrained from scratch, its history would start at step 2.
    # Resumed, it starts with the first run's own entries (step 3; Trainer keeps a checkpoint's logging interval):
    # the evidence that it resumed, as the step count alone is the same either way.
    def check_resumed(run_dir: Path) -> None:
        checkpoints = checkpoints_of(run_dir)
        assert len(checkpoints) == 2  # save_total_limit: three epochs saved, one checkpoint deleted
        state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
        assert checkpoints[-1].name == f"checkpoint-{3 * steps_one_epoch}" and state["global_step"] == 3 * steps_one_epoch
        assert state["log_history"][: len(first_logs) - 1] == first_logs[:-1]  # all but the first run's summary
        logged = [h["step"] for h in state["log_history"] if "loss" in h]
        assert logged[0] == 3 and logged[-1] > 2 * steps_one_epoch, logged

    more = ["--num_train_epochs", "3", "--save_total_limit", "2", "--logging_steps", "2"]
    _, out = run_train(tmp_path, cache_dir, *args, *more)
    check_resumed(out)
    # An explicit checkpoint, into a fresh folder.
    _, explicit = run_train(tmp_path, cache_dir, *args, *more, "--resume_from_checkpoint", str(kept), name="explicit")
    check_resumed(explicit)


@pytest.mark.slow
def test_frozen_backbone_mode_beats_chance_on_held_out_actors(tmp_path, cache_dir):
    results, out = run_train(
        tmp_path,
        cache_dir,
        "--freeze_backbone", "true",
        "--pooling", "weighted_mean",
        "--max_clips", "600",
        "--num_train_epochs", "40",
        "--learning_rate", "0.003",
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--load_best_model_at_end", "false",
    )  # fmt: skip
    assert results["training"]["mode"].startswith("frozen backbone")
    assert results["split"]["speakers_overlap"] is False
    # Chance is 0.125; on the ~120 test clips of 4 held-out actors a random guesser exceeds 0.22 with
    # probability ~0.1%.
    assert results["test"]["clips"] >= 100 and results["test"]["accuracy"] > 0.22, results["test"]
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
    assert results["test_per_corpus"]["ravdess"]["folds"] == 2


@pytest.mark.slow
def test_kfold_fold_by_fold_then_collected(tmp_path, cache_dir, caplog):
    """One process per fold (`--fold K`), then a run without --fold reuses the finished folds."""
    args = [
        "--split", "kfold", "--folds", "2", "--max_clips", "96", "--freeze_backbone", "true",
        "--save_strategy", "no", "--load_best_model_at_end", "false",
    ]  # fmt: skip
    fold1, out = run_train(tmp_path, cache_dir, *args, "--fold", "1")
    assert (out / "fold-1" / "fold_results.json").exists() and not (out / "fold-0").exists()
    assert not (out / "all_results.json").exists()  # one fold is not a cross-validation result
    caplog.clear()
    caplog.set_level(logging.INFO)
    results, _ = run_train(tmp_path, cache_dir, *args)
    assert "fold 1: reusing the finished run" in caplog.text and "fold 0: reusing" not in caplog.text
    assert results["folds"][1]["test"] == fold1["test"]
    # Another recipe in the same folder trains the fold again instead of reusing a result it did not produce.
    caplog.clear()
    run_train(tmp_path, cache_dir, *args, "--fold", "1", "--learning_rate", "0.0005")
    assert "another recipe: training fold 1 again" in caplog.text


def make_hub_copy(manifest, data_dir, tmp_path) -> Path:
    """A parquet dataset shaped like a Hub RAVDESS mirror: audio bytes, string labels, an actor column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, taken = {}, set()
    for r in manifest:
        # One clip per emotion and actor: every label is in the copy.
        if int(r["actor"]) <= 8 and (r["actor"], r["emotion"]) not in taken:
            taken.add((r["actor"], r["emotion"]))
            path = data_dir / r["path"]
            rows[path] = {
                "audio": {"bytes": path.read_bytes(), "path": path.name},
                "label": {"fearful": "fear", "surprised": "surprise"}.get(r["emotion"], r["emotion"]),  # a mirror's names
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
        "--label_map", '{"fear": "fearful"}',
    )  # fmt: skip
    assert results["data"]["clips"] == 64 and results["data"]["actors"] == 8
    assert str(local) in results["data"]["dataset"]
    assert set(results["split"]["actors"]["test"]) <= {f"hub-copy:{a}" for a in range(1, 9)}
    # Labels are the data's own names, through the label map: "fear" renamed, "surprise" kept as the mirror has it.
    assert "fearful" in results["labels"] and "surprise" in results["labels"] and "fear" not in results["labels"]


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
            "inference.py",
            "model.safetensors",
            "modeling_ser.py",
            "music_gate.py",
            "pipeline_ser.py",
            "preprocessor_config.json",
            "profile.py",
            "quality.py",
            "speech.py",
            "streaming.py",
            "voice_encoder.py",
        ]
    )
    metadata = pushed["metadata"]
    assert metadata["license"] == "cc-by-nc-sa-4.0" and metadata["pipeline_tag"] == "audio-classification"
    reported = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert reported["accuracy"] == round(results["test"]["accuracy"], 4)


def test_ravdess_folder_skips_names_off_the_layout(tmp_path, data_dir, caplog):
    folder = tmp_path / "mixed" / "Actor_01"
    folder.mkdir(parents=True)
    for name in ("03-01-05-01-01-01-01.flac", "03-01-03-02-01-01-01.flac"):
        shutil.copy(data_dir / "Actor_01" / name, folder / name)
    shutil.copy(data_dir / "Actor_01" / "03-01-05-01-01-01-01.flac", folder / "my recording.flac")
    (folder / "notes.txt").write_text("not audio")
    records, skipped = scan_ravdess_folder(tmp_path / "mixed")
    assert [r["label"] for r in records] == ["happy", "angry"] and skipped == 1
    assert "my recording.flac" in caplog.text
    with pytest.raises(DataError, match="no such folder"):
        scan_ravdess_folder(tmp_path / "missing")


def test_preprocessing_is_cached_between_runs(tmp_path, data_dir, monkeypatch):
    import training.data as data
    from modeling import SERFeatureExtractor

    records, _ = scan_ravdess_folder(data_dir / "Actor_02")
    records, _ = data.drop_duplicates(records[:12])
    fe = SERFeatureExtractor()
    label2id = {label: i for i, label in enumerate(RAVDESS_LABELS)}
    first, failed = data.preprocess(records, fe, label2id, str(tmp_path))
    assert len(first) == 12 and failed == 0

    def no_decoding(*args, **kwargs):
        raise AssertionError("a second run must not decode again")

    monkeypatch.setattr(data, "load_audio", no_decoding)
    # Another label map reuses the audio work: only the label column changes.
    second, _ = data.preprocess(records, fe, {label: 7 - i for i, label in enumerate(RAVDESS_LABELS)}, str(tmp_path))
    assert second["input_values"][3] == pytest.approx(first["input_values"][3])
    assert [7 - x for x in second["label"]] == first["label"]
    # A saved model's own feature extractor (which also records its code, `auto_map`) reuses what training cached:
    # evaluate.py and continued training after train.py decode nothing again.
    from transformers import AutoFeatureExtractor

    from conftest import BUNDLED

    saved = AutoFeatureExtractor.from_pretrained(BUNDLED)
    assert "auto_map" in saved.to_dict()
    third, _ = data.preprocess(records, saved, label2id, str(tmp_path))
    assert third["input_values"][3] == pytest.approx(first["input_values"][3])
    # Other preprocessing settings are another cache entry, so they do decode.
    with pytest.raises(AssertionError, match="must not decode"):
        data.preprocess(records, SERFeatureExtractor(noise_reduction=False), label2id, str(tmp_path))
