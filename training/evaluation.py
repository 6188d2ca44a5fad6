"""Evaluating a saved model on any source: the same metrics, per-corpus figures and confusion matrix as training."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, Trainer, TrainingArguments

from .args import DataArguments, EvaluationArguments
from .card import metrics_table, per_corpus_table
from .data import preprocess
from .embeddings import pads_alike_inference
from .experiment import PadCollator, evaluate_split, load_records, make_splits, subsample
from modeling.loading import check_ser_model
from modeling.files import write_json_atomic, write_text_atomic
from .metrics import plot_confusion_matrix
from .sources import DataError

logger = logging.getLogger("evaluate")


def evaluate_model(eval_args: EvaluationArguments, data_args: DataArguments) -> dict:
    check_ser_model(eval_args.model_name_or_path)
    model = AutoModelForAudioClassification.from_pretrained(eval_args.model_name_or_path).eval()
    feature_extractor = AutoFeatureExtractor.from_pretrained(eval_args.model_name_or_path)
    model_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    records, data_labels, data_info = load_records(data_args)
    unknown = {}
    for record in records:
        if record["label"] not in model.config.label2id:
            unknown[record["label"]] = unknown.get(record["label"], 0) + 1
    if unknown:
        logger.warning(
            "left out %d clips whose labels the model does not have: %s (the model's labels are %s; "
            "--label_map can rename labels to them)",
            sum(unknown.values()),
            unknown,
            model_labels,
        )
        records = [r for r in records if r["label"] in model.config.label2id]
    if not records:
        raise DataError(f"no clip has a label the model knows ({model_labels})")
    records = subsample(records, data_args.max_clips, eval_args.seed)
    features, undecodable = preprocess(
        records, feature_extractor, dict(model.config.label2id), data_args.preprocessing_cache_dir,
        data_args.preprocessing_num_workers,
    )  # fmt: skip
    part, split_summary = features, "all clips of the sources"
    if eval_args.part == "test":
        splits = make_splits(features, data_args, eval_args.seed)
        if len(splits) != 1:
            raise DataError("--part test needs a split with one test part (not --split kfold)")
        part, split_summary = features.select(splits[0].test), splits[0].summary()
    elif eval_args.part != "all":
        raise DataError(f"--part must be 'all' or 'test', got {eval_args.part!r}")

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            # Padding changes a group-norm backbone's features: such models are evaluated one clip at a time,
            # as the pipeline runs them.
            per_device_eval_batch_size=eval_args.batch_size if pads_alike_inference(model) else 1,
            use_cpu=eval_args.use_cpu or not torch.cuda.is_available(),
            remove_unused_columns=False,
            report_to="none",
            dataloader_pin_memory=False,
        )
        trainer = Trainer(model=model, args=args, data_collator=PadCollator(feature_extractor))
        data = part.with_format("numpy", columns=["input_values", "label", "corpus"])
        report = evaluate_split(trainer, data, model_labels)
    results = {
        "model": eval_args.model_name_or_path,
        "labels": model_labels,
        "data": {
            **data_info,
            "clips": len(part),
            "undecodable": undecodable,
            "left_out_unknown_labels": unknown,
            "data_labels": data_labels,
        },
        "split": split_summary,
        **report,
    }
    if eval_args.output_dir:
        out = Path(eval_args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "eval_results.json", results)
        write_json_atomic(out / "confusion_matrix.json", report["confusion_matrix"])
        plot_confusion_matrix(report["confusion_matrix"]["matrix"], model_labels, out / "confusion_matrix.png", split_summary)
        write_text_atomic(out / "eval_results.md", results_markdown(results))
    return results


def results_markdown(results: dict) -> str:
    return (
        f"# Evaluation of `{results['model']}`\n\n{results['data']['dataset']}: {results['data']['clips']} clips "
        f"({results['split']}).\n\n"
        + metrics_table({"all" if results["split"].startswith("all") else "test": results})
        + "\n"
        + per_corpus_table(results.get("per_corpus", {}))
    )


