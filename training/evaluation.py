"""Evaluating a saved model on any source: the same metrics, per-corpus figures and confusion matrix as training."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from .adaptation import adaptation_report
from .args import DataArguments, EvaluationArguments
from .calibration import calibrate, expected_calibration_error, softmax
from .card import metrics_table, per_corpus_table, render_card
from .data import preprocess, preprocessing_first
from .embeddings import pads_alike_inference
from .experiment import PadCollator, evaluate_split, load_records, make_splits, subsample
from modeling.inference import check_candidate_labels
from serving.files import write_json_atomic, write_text_atomic
from serving.loading import load_classifier, resolve_model_path
from .metrics import plot_confusion_matrix
from .sources import DataError

logger = logging.getLogger("evaluate")


def evaluate_model(eval_args: EvaluationArguments, data_args: DataArguments, command: str | None = None) -> dict:
    """Evaluates a saved model; `command` (the command line) is recorded with a fitted temperature."""
    eval_args.model_name_or_path = resolve_model_path(eval_args.model_name_or_path)
    if eval_args.fit_temperature and eval_args.candidate_labels:
        raise DataError("--fit_temperature calibrates over all the model's labels: leave out --candidate_labels")
    if eval_args.fit_temperature and not (Path(eval_args.model_name_or_path) / "config.json").is_file():
        raise DataError(f"{eval_args.model_name_or_path}: --fit_temperature writes into a local model folder's config.json")
    if data_args.streaming:
        raise DataError(
            "--streaming is for training; evaluate.py reads the data it scores (give the run's data flags without it, "
            "or evaluate on a local copy of the test speakers)"
        )
    if eval_args.part not in ("all", "test", "validation"):
        raise DataError(f"--part must be 'all', 'test' or 'validation', got {eval_args.part!r}")
    if eval_args.speaker_adaptation and eval_args.candidate_labels:
        raise DataError("--speaker_adaptation reports over all the model's labels: leave out --candidate_labels")
    if eval_args.fit_temperature and eval_args.part != "validation":
        raise DataError(
            "--fit_temperature fits on the validation speakers: add --part validation (with the run's data flags "
            "and --seed, so that they are the run's own)"
        )
    classifier = load_classifier(eval_args.model_name_or_path, device="cpu")  # Trainer places it
    model, feature_extractor, model_labels = classifier.model, classifier.feature_extractor, classifier.labels
    if eval_args.speaker_adaptation and not classifier.adapts_to_speakers:
        raise DataError(f"{eval_args.model_name_or_path} was trained without speaker adaptation: leave out --speaker_adaptation")
    try:
        candidates = check_candidate_labels(model_labels, eval_args.candidate_labels)
    except ValueError as err:
        raise DataError(f"--candidate_labels: {err}") from None
    known = set(candidates or model_labels)

    # Under `accelerate launch` / torchrun the processes share the clips of the evaluation (Trainer.predict gathers
    # the answers), and the first process reads and preprocesses the data for all of them.
    args = TrainingArguments(
        output_dir="unused",
        # Padding changes a group-norm backbone's features: such models are evaluated one clip at a time, as the
        # pipeline runs them.
        per_device_eval_batch_size=eval_args.batch_size if pads_alike_inference(model) else 1,
        use_cpu=eval_args.use_cpu or not torch.cuda.is_available(),
        remove_unused_columns=False,
        report_to="none",
        dataloader_pin_memory=False,
    )
    with preprocessing_first(args, "data preprocessing"):
        data_labels, data_info, features, undecodable, unknown = _evaluation_data(
            eval_args, data_args, known, model, feature_extractor
        )
    parts = {"all": (features, "all clips of the sources")}
    if eval_args.part != "all":
        splits = make_splits(features, data_args, eval_args.seed)
        if len(splits) != 1:
            raise DataError(f"--part {eval_args.part} needs a split with one {eval_args.part} part (not --split kfold)")
        parts = {name: (features.select(getattr(splits[0], name)), splits[0].summary()) for name in ("validation", "test")}
    part, split_summary = parts[eval_args.part]

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model=model, args=dataclasses.replace(args, output_dir=tmp), data_collator=PadCollator(feature_extractor))

        def run(dataset):
            return evaluate_split(
                trainer, dataset.with_format("numpy", columns=["input_values", "label", "corpus"]), model_labels,
                [model_labels.index(c) for c in candidates] if candidates else None,
            )  # fmt: skip

        report, (logits, y) = run(part)
        report["ece"] = expected_calibration_error(softmax(logits), y)
        calibration = None
        if eval_args.fit_temperature:
            _, test_logits = run(parts["test"][0])
            fitted = calibrate((logits, y), test_logits)
            if fitted is None:
                raise DataError(f"--fit_temperature: the validation part has {len(y)} clips, too few to fit on")
            calibration = {**fitted, "command": command}
            model.config.temperature *= calibration["fitted_factor"]
            calibration["temperature"] = model.config.temperature
            if args.should_save:  # the first process writes; the others computed the same
                save_calibration(Path(eval_args.model_name_or_path), model.config, calibration)
    results = {
        "model": eval_args.model_name_or_path,
        "labels": candidates or model_labels,
        "candidate_labels": candidates,
        "data": {
            **data_info,
            "clips": len(part),
            "undecodable": undecodable,
            "left_out_unknown_labels": unknown,
            "data_labels": data_labels,
        },
        "part": eval_args.part,
        "split": split_summary,
        **report,
    }
    if calibration:
        results["calibration"] = calibration
    if eval_args.speaker_adaptation and args.should_save:
        results["adaptation"] = speaker_adaptation_report(model, part, model_labels, eval_args.batch_size, eval_args.seed)
    if eval_args.output_dir and args.should_save:
        out = Path(eval_args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "eval_results.json", results)
        write_json_atomic(out / "confusion_matrix.json", report["confusion_matrix"])
        plot_confusion_matrix(report["confusion_matrix"]["matrix"], candidates or model_labels, out / "confusion_matrix.png", split_summary)
        write_text_atomic(out / "eval_results.md", results_markdown(results))
    return results


def _evaluation_data(eval_args, data_args, known: set, model, feature_extractor):
    """The clips of the sources whose labels the model knows, preprocessed (cached on disk)."""
    records, data_labels, data_info = load_records(data_args)
    unknown = {}
    for record in records:
        if record["label"] not in known:
            unknown[record["label"]] = unknown.get(record["label"], 0) + 1
    if unknown:
        logger.warning(
            "left out %d clips whose labels are not among the model's (or the candidate) labels: %s (those are %s; "
            "--label_map can rename labels to them)",
            sum(unknown.values()),
            unknown,
            sorted(known),
        )
        records = [r for r in records if r["label"] in known]
    if not records:
        raise DataError(f"no clip has a label the model knows ({sorted(known)})")
    records = subsample(records, data_args.max_clips, eval_args.seed)
    features, undecodable = preprocess(
        records, feature_extractor, dict(model.config.label2id), data_args.preprocessing_cache_dir,
        data_args.preprocessing_num_workers,
    )  # fmt: skip
    return data_labels, data_info, features, undecodable, unknown


@torch.inference_mode()
def speaker_adaptation_report(model, part, labels: list[str], batch_size: int, seed: int) -> dict:
    """`adaptation_report` on the part's clips, each speaker's profiles drawn from its own clips in the part."""
    model.eval().cpu()
    rows = part.with_format("numpy", columns=["input_values", "label", "speaker"])
    features = []
    step = batch_size if pads_alike_inference(model) else 1  # group-norm backbones: one clip at a time
    for start in range(0, len(rows), step):
        chunk = [rows[i] for i in range(start, min(start + step, len(rows)))]
        waves = [np.asarray(r["input_values"], dtype=np.float32) for r in chunk]
        batch = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(w) for w in waves], batch_first=True)
        mask = (torch.arange(batch.shape[1])[None] < torch.tensor([len(w) for w in waves])[:, None]).long()
        features.append(model.combine_layers(model.embed(batch, mask)).numpy())
    y = np.asarray(part["label"])
    return adaptation_report(model, np.concatenate(features), y, list(part["speaker"]), labels, seed)


def save_calibration(folder: Path, config, calibration: dict) -> None:
    """Writes the fitted temperature into the model folder's config.json and, where the folder has training
    results, adds the calibration to them and to its card."""
    write_text_atomic(folder / "config.json", config.to_json_string())  # a crash leaves the old, loadable config
    results_path = folder / "all_results.json"
    if results_path.is_file():
        results = json.loads(results_path.read_text())
        results["calibration"] = calibration
        write_json_atomic(results_path, results)
        write_text_atomic(folder / "README.md", render_card(results))
    logger.info(
        "temperature %.3f saved in %s; test ECE %.3f -> %.3f", config.temperature, folder / "config.json",
        calibration["test"]["ece_before"], calibration["test"]["ece_after"],
    )  # fmt: skip


def results_markdown(results: dict) -> str:
    return (
        f"# Evaluation of `{results['model']}`\n\n{results['data']['dataset']}: {results['data']['clips']} clips "
        f"({results['split']}).\n\n"
        + metrics_table({results["part"]: results})
        + "\n"
        + per_corpus_table(results.get("per_corpus", {}))
        + (adaptation_table(results["adaptation"]) if results.get("adaptation") else "")
    )


def adaptation_table(adaptation: dict) -> str:
    """Accuracy and UAR per reference condition (single figures, or mean ± std over folds)."""
    names = {
        "none": "no profile",
        "all": "profile of all the speaker's clips",
        "random_16": "profile of 16 random clips",
        "few_skewed_none": "only 2-4 clips of 1-2 emotions: no profile",
        "few_skewed": "only 2-4 clips of 1-2 emotions: profile of those clips",
        "one_mood_none": "all of one emotion's clips (one mood): no profile",
        "one_mood": "all of one emotion's clips (one mood): profile of those clips",
    }
    lines = ["\n## Speaker adaptation\n", "| references | accuracy | UAR |", "|---|---|---|"]
    for key, name in names.items():
        r = adaptation.get(key)
        if not r:
            continue
        if "accuracy" in r:
            lines.append(f"| {name} | {r['accuracy']:.3f} | {r['uar']:.3f} |")
        else:
            lines.append(
                f"| {name} | {r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f} | {r['uar_mean']:.3f} ± {r['uar_std']:.3f} |"
            )
    references = adaptation.get("references") or {}
    lines += ["", *(f"- {k}: {v}" for k, v in references.items())]
    return "\n".join(lines) + "\n"


