"""Training on any label set and several corpora: labels flow from the data into the model, card, metrics,
pipeline and predict.py; per-corpus results; leave-one-corpus-out; evaluate.py; continuing from a saved model."""

import csv
import json
import logging

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, EMODB_DIR, REPO, tiny_backbone
from transformers import pipeline

import train
from modeling import SERConfig, SERFeatureExtractor, SERForSequenceClassification
from training.args import EvaluationArguments, ModelArguments, parse_train_args
from training.data import drop_duplicates, preprocess
from training.sources import DataError, scan_ravdess_folder
from training.evaluation import evaluate_model
from training.embeddings import extract_embeddings
from training.experiment import PadCollator, build_model

TINY = ["--backbone_config", json.dumps(tiny_backbone())]
QUICK = ["--num_train_epochs", "1", "--logging_steps", "5", "--dataloader_pin_memory", "false", "--report_to", "none"]
INVENTED = {"angry": "grumpy", "happy": "sunny", "sad": "blue", "neutral": "meh"}


@pytest.fixture(scope="module")
def cache_dir(preprocessing_cache, data_dir):
    """The run's shared cache of the corpora's decoded clips."""
    return preprocessing_cache


def run(tmp_path, cache_dir, *args, name="run"):
    out = tmp_path / name
    results = train.main([*TINY, *QUICK, "--output_dir", str(out), "--preprocessing_cache_dir", cache_dir, *args])
    return results, out


@pytest.fixture(scope="module")
def audiofolder(tmp_path_factory, manifest):
    """A local audiofolder with a metadata.csv (file_name,label,speaker): 6 speakers, 4 invented labels."""
    import shutil

    root = tmp_path_factory.mktemp("my-corpus")
    rows = []
    for r in manifest:
        if int(r["actor"]) <= 6 and r["emotion"] in INVENTED and r["statement"] == "1" and r["repetition"] == "1":
            name = f"clip{len(rows):03d}.flac"
            shutil.copy(DATA_DIR / r["path"], root / name)
            rows.append({"file_name": name, "label": INVENTED[r["emotion"]], "speaker": f"spk{r['actor']}"})
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file_name", "label", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.mark.slow
def test_four_invented_labels_from_an_audiofolder(tmp_path, cache_dir, audiofolder):
    results, out = run(
        tmp_path, cache_dir, "--dataset_name", str(audiofolder), "--label_column_name", "label",
        "--actor_column_name", "speaker", "--num_test_actors", "2", "--num_val_actors", "1",
        "--eval_strategy", "epoch", "--save_strategy", "no", "--per_device_train_batch_size", "8",
    )  # fmt: skip
    labels = ["blue", "grumpy", "meh", "sunny"]
    assert results["labels"] == labels and results["data"]["actors"] == 6
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(4)] == labels
    assert json.loads((out / "confusion_matrix.json").read_text())["labels"] == labels
    assert set(results["test"]["per_class"]) == set(labels)
    card = (out / "README.md").read_text()
    assert "over 4 labels (blue, grumpy, meh, sunny)" in card
    assert "Chance level for 4 balanced classes is 0.250" in card and "Linear(256→4)" in card
    assert "license: other" in card  # not RAVDESS's licence: the data is the user's

    scores = pipeline("audio-classification", model=str(out), top_k=None, trust_remote_code=True)(str(audiofolder / "clip000.flac"))
    assert sorted(s["label"] for s in scores) == labels

    import predict

    csv_out = tmp_path / "predictions.csv"
    assert predict.main([str(audiofolder / "clip000.flac"), str(audiofolder / "clip001.flac"), "--model", str(out), "--out", str(csv_out)]) == 0
    with open(csv_out, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    quality = ["snr_db", "bandwidth_hz", "clipping_ratio", "level_dbfs", "quality_note"]
    adaptation = ["speaker", "adapted", "profile_clips", "adaptation"]
    assert reader.fieldnames == ["path", "label", "score", "uncertain", *labels, "duration_s", *quality, *adaptation, "error"]
    assert len(rows) == 2 and all(r["label"] in labels and r["error"] == "" for r in rows)
    assert all(sum(float(r[x]) for x in labels) == pytest.approx(1.0, abs=1e-4) for r in rows)


def emodb_only_args(cache_dir):
    flags = ["--emodb_dir", str(EMODB_DIR), "--max_clips", "60", "--preprocessing_cache_dir", cache_dir]
    return parse_train_args(["--output_dir", "x", *flags])[1]


@pytest.mark.slow
def test_ravdess_and_emodb_in_one_run_and_evaluate_agrees(tmp_path, cache_dir):
    data = ["--data_dir", str(DATA_DIR), "--emodb_dir", str(EMODB_DIR), "--label_map", '{"boredom": null}', "--max_clips", "240"]
    results, out = run(
        tmp_path, cache_dir, *data, "--eval_strategy", "epoch", "--save_strategy", "no", "--per_device_eval_batch_size", "8"
    )  # fmt: skip
    assert results["data"]["corpora"] == ["ravdess", "emodb"] and results["data"]["labels_dropped"] == {"boredom": 81}
    assert "boredom" not in results["labels"] and len(results["labels"]) == 8
    test = results["test"]
    assert set(test["per_corpus"]) == {"ravdess", "emodb"}
    assert sum(c["clips"] for c in test["per_corpus"].values()) == test["clips"] == results["split"]["sizes"]["test"]
    card = (out / "README.md").read_text()
    assert "### Per corpus (test)" in card and "| emodb |" in card and "Burkhardt" in card and "Livingstone" in card

    # evaluate.py on the saved model, with the same data flags and the run's seed, gives the Trainer's test metrics.
    import evaluate

    evaluate.main(
        ["--model_name_or_path", str(out), *data, "--part", "test", "--seed", "42", "--preprocessing_cache_dir", cache_dir,
         "--output_dir", str(tmp_path / "eval")]
    )  # fmt: skip
    evaluated = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    for metric in ("accuracy", "f1_macro", "uar", "clips"):
        assert evaluated[metric] == pytest.approx(test[metric], abs=1e-9), metric
    for corpus, scores in test["per_corpus"].items():
        assert evaluated["per_corpus"][corpus] == pytest.approx(scores), corpus
    assert (tmp_path / "eval" / "confusion_matrix.png").exists()
    assert "| emodb |" in (tmp_path / "eval" / "eval_results.md").read_text()

    # The run fitted a temperature on its validation speakers after training and saved it with the model.
    trained = results["calibration"]
    before = json.loads((out / "config.json").read_text())["temperature"]
    assert before == pytest.approx(trained["temperature"]) and trained["validation"]["clips"] >= 20
    assert trained["validation"]["nll_after"] <= trained["validation"]["nll_before"] + 1e-9  # fitted on it
    card = (out / "README.md").read_text()
    assert f"| test | {trained['test']['clips']} | {trained['test']['ece_before']:.3f} | {trained['test']['ece_after']:.3f} |" in card
    # Calibrating a saved model afterwards: fitted on the run's validation speakers, saved, reported on its test ones.
    calibrated = evaluate_model(
        EvaluationArguments(model_name_or_path=str(out), part="validation", fit_temperature=True, use_cpu=True),
        parse_train_args(["--output_dir", "x", *data, "--preprocessing_cache_dir", cache_dir])[1],
    )
    calibration = calibrated["calibration"]
    assert calibration["validation"]["clips"] == results["split"]["sizes"]["validation"]
    assert calibration["test"]["clips"] == results["split"]["sizes"]["test"]
    assert calibration["temperature"] == pytest.approx(before * calibration["fitted_factor"])
    assert json.loads((out / "config.json").read_text())["temperature"] == pytest.approx(calibration["temperature"])
    assert json.loads((out / "all_results.json").read_text())["calibration"] == calibration
    assert "### Calibration" in (out / "README.md").read_text()
    with pytest.raises(DataError, match="add --part validation"):
        evaluate_model(EvaluationArguments(model_name_or_path=str(out), fit_temperature=True), emodb_only_args(cache_dir))

    # Labels the model does not have are counted and left out, with a warning.
    emodb_only = emodb_only_args(cache_dir)
    evaluated = evaluate_model(EvaluationArguments(model_name_or_path=str(out), use_cpu=True), emodb_only)
    assert evaluated["data"]["left_out_unknown_labels"] == {"boredom": 81}  # counted over all 535 clips
    assert evaluated["clips"] == 60 and set(evaluated["per_corpus"]) == {"emodb"}  # then subsampled

    # --candidate_labels: clips of other labels left out, each answer restricted to the candidates. On the same clips,
    # restricting can only turn a wrong answer right (a right one was already the top among all labels).
    four = ["angry", "happy", "neutral", "sad"]
    only_four = emodb_only_args(cache_dir)
    only_four.label_map = json.dumps({"boredom": None, "disgust": None, "fearful": None})
    full = evaluate_model(EvaluationArguments(model_name_or_path=str(out), use_cpu=True), only_four)
    restricted = evaluate_model(
        EvaluationArguments(model_name_or_path=str(out), use_cpu=True, candidate_labels=",".join(four)), only_four
    )
    assert restricted["labels"] == restricted["confusion_matrix"]["labels"] == four
    assert restricted["clips"] == full["clips"] and set(full["data"]["data_labels"]) == set(four)
    assert restricted["accuracy"] >= full["accuracy"]
    with pytest.raises(DataError, match="not labels of this model"):
        evaluate_model(EvaluationArguments(model_name_or_path=str(out), candidate_labels="angry,bored"), only_four)


@pytest.mark.slow
def test_leave_one_corpus_out(tmp_path, cache_dir):
    # The clips of test_ravdess_and_emodb_in_one_run_and_evaluate_agrees: decoded once for both.
    results, out = run(
        tmp_path, cache_dir, "--data_dir", str(DATA_DIR), "--emodb_dir", str(EMODB_DIR), "--label_map", '{"boredom": null}',
        "--max_clips", "240", "--test_corpus", "emodb", "--eval_strategy", "no", "--save_strategy", "no",
        "--load_best_model_at_end", "false",
    )  # fmt: skip
    split = results["split"]
    assert split["kind"] == "corpus" and split["test_corpus"] == "emodb"
    assert all(s.startswith("emodb:") for s in split["actors"]["test"])
    assert all(s.startswith("ravdess:") for s in split["actors"]["train"] + split["actors"]["validation"])
    assert set(results["test"]["per_corpus"]) == {"emodb"}
    assert "leave-one-corpus-out" in (out / "README.md").read_text()


@pytest.mark.slow
def test_continuing_keeps_the_saved_architecture(tmp_path, cache_dir, caplog):
    results, first = run(
        tmp_path, cache_dir, "--data_dir", str(DATA_DIR), "--max_clips", "96", "--freeze_backbone", "true",
        "--pooling", "weighted_mean", "--head_dropout", "0.1", "--eval_strategy", "no", "--save_strategy", "no",
        "--load_best_model_at_end", "false", name="first",
    )  # fmt: skip
    # Continuing without a --pooling flag (and without --backbone_config): the saved model's settings stay.
    again = train.main(
        ["--model_name_or_path", str(first), "--data_dir", str(DATA_DIR), "--max_clips", "96", "--output_dir",
         str(tmp_path / "again"), "--preprocessing_cache_dir", cache_dir, "--eval_strategy", "no", "--save_strategy", "no",
         "--load_best_model_at_end", "false", *QUICK]
    )  # fmt: skip
    assert again["model"]["pooling"] == "weighted_mean" and again["model"]["head_dropout"] == 0.1
    assert again["training"]["mode"].startswith("frozen backbone")
    saved = SERForSequenceClassification.from_pretrained(tmp_path / "again")
    assert saved.config.pooling == "weighted_mean" and saved.layer_weights is not None

    # A new label set re-initializes only the last layer, and says so.
    original = SERForSequenceClassification.from_pretrained(first)
    labels = [l for l in original.config.id2label.values() if l not in ("calm", "surprised")]
    caplog.set_level(logging.WARNING)
    model = build_model(ModelArguments(model_name_or_path=str(first)), labels)
    assert "re-initialized" in caplog.text and model.config.num_labels == 6
    assert [model.config.id2label[i] for i in range(6)] == labels
    torch.testing.assert_close(model.head[0].weight, original.head[0].weight)
    torch.testing.assert_close(model.layer_weights, original.layer_weights)
    for name, tensor in original.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], tensor)
    # The same number of labels in another order is a new label set too: the old rows would answer wrongly.
    reordered = list(reversed([original.config.id2label[i] for i in range(8)]))
    model = build_model(ModelArguments(model_name_or_path=str(first)), reordered)
    assert not torch.equal(model.head[-1].weight, original.head[-1].weight)
    # The same labels keep the whole head.
    model = build_model(ModelArguments(model_name_or_path=str(first)), [original.config.id2label[i] for i in range(8)])
    torch.testing.assert_close(model.head[-1].weight, original.head[-1].weight)


@pytest.mark.slow
def test_augmentation_and_auxiliary_target_in_a_trainer_run(tmp_path, cache_dir):
    """Augmented clips go through data-loader workers; the eGeMAPS layer trains but is not saved."""
    results, out = run(
        tmp_path, cache_dir, "--data_dir", str(DATA_DIR), "--max_clips", "64", "--augment", "true",
        "--auxiliary_egemaps_weight", "0.5", "--dataloader_num_workers", "1", "--eval_strategy", "epoch",
        "--save_strategy", "epoch", "--load_best_model_at_end", "true", "--metric_for_best_model", "accuracy",
    )  # fmt: skip
    training = results["training"]
    assert "speed perturbation" in training["augmentation"] and "eGeMAPS" in training["auxiliary_target"]
    card = (out / "README.md").read_text()
    assert "- Augmentation (training clips only): speed perturbation" in card and "- Auxiliary target: eGeMAPS" in card
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith(("auxiliary", "model.")) for k in keys)
    checkpoint = next(out.glob("checkpoint-*"))
    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as f:
        assert any(k.startswith("auxiliary") for k in f.keys())  # the checkpoint resumes the whole training state
    assert isinstance(SERForSequenceClassification.from_pretrained(out), SERForSequenceClassification)
    # Resuming that folder without the auxiliary target would load a checkpoint of another model: refused.
    from training.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match="saved from another model setup"):
        run(tmp_path, cache_dir, "--data_dir", str(DATA_DIR), "--max_clips", "64", "--num_train_epochs", "2")


@pytest.mark.corpus
def test_cached_embeddings_equal_live_ones_with_a_group_norm_backbone(tmp_path):
    """wav2vec2-base normalizes each channel over the whole input (group norm) and gets no attention mask: padded
    batches change the features, so the cache must be computed the way inference runs, one clip at a time."""
    torch.manual_seed(0)
    model = SERForSequenceClassification(SERConfig(backbone_config=tiny_backbone("group"), freeze_backbone=True)).eval()
    fe = SERFeatureExtractor()
    records, _ = scan_ravdess_folder(DATA_DIR / "Actor_05")
    records, _ = drop_duplicates(records[::12])  # clips of different lengths
    features, _ = preprocess(records, fe, {r["label"]: 0 for r in records}, str(tmp_path))
    lengths = features["length"]
    assert len(set(lengths)) > 1
    cached = extract_embeddings(model, features, PadCollator(fe), batch_size=4, device=torch.device("cpu"))
    with torch.inference_mode():
        for i in range(len(features)):
            live = model.embed(torch.tensor(np.asarray(features[i]["input_values"], dtype=np.float32))[None])  # as the pipeline runs it
            np.testing.assert_allclose(cached[i], live.numpy()[0], atol=1e-5)
        # The check matters: a zero-padded batch gives other features for all but the longest clip.
        batch = PadCollator(fe)([{"input_values": np.asarray(features[i]["input_values"], dtype=np.float32), "label": 0} for i in range(4)])
        padded = model.embed(batch["input_values"], batch["attention_mask"]).numpy()
    shortest = int(np.argmin(lengths[:4]))
    assert not np.allclose(padded[shortest], cached[shortest], atol=1e-3)


def test_no_dataset_labels_are_assumed(tmp_path):
    """A config without labels gets transformers' placeholders, never RAVDESS's emotions."""
    model = SERForSequenceClassification(SERConfig(backbone_config=tiny_backbone()))
    assert model.config.id2label == {0: "LABEL_0", 1: "LABEL_1"} and model.head[-1].out_features == 2
    assert "EMOTIONS" not in dir(__import__("modeling"))
    # (music_gate.py names the speakers its speech/music check was fitted on: provenance, not labels.)
    code = [p for p in (REPO / "modeling").glob("*.py") if p.name not in ("__init__.py", "music_gate.py")]
    assert not any("ravdess" in p.read_text().lower() for p in code)
