"""all_results.json: what a run measured, with everything the card and README quote."""

from __future__ import annotations

import os
import platform
import shlex

import datasets
import numpy as np
import torch
import transformers

from .args import DataArguments, ModelArguments
from .data import label_counts
from .experiment import describe_extras, describe_mode
from .metrics import SUMMARY_METRICS


def mean_std(folds: list[dict]) -> tuple[dict, dict]:
    values = {m: [f["test"][m] for f in folds] for m in SUMMARY_METRICS}
    return {m: float(np.mean(v)) for m, v in values.items()}, {m: float(np.std(v)) for m, v in values.items()}


def per_corpus_mean_std(folds: list[dict]) -> dict:
    """Each corpus's test figures over the folds that tested speakers of it."""
    corpora = sorted({c for f in folds for c in f["test"].get("per_corpus", {})})
    out = {}
    for corpus in corpora:
        scores = [f["test"]["per_corpus"][corpus] for f in folds if corpus in f["test"].get("per_corpus", {})]
        out[corpus] = {
            "folds": len(scores),
            "clips": int(sum(s["clips"] for s in scores)),
            **{f"{m}_mean": float(np.mean([s[m] for s in scores])) for m in ("accuracy", "f1_macro", "uar")},
            **{f"{m}_std": float(np.std([s[m] for s in scores])) for m in ("accuracy", "f1_macro", "uar")},
        }
    return out


def adaptation_mean_std(reports: list[dict]) -> dict:
    """Mean and standard deviation over the folds of each reference condition's accuracy and UAR."""
    conditions = [k for k, v in reports[0].items() if isinstance(v, dict) and "accuracy" in v]
    out = {
        c: {f"{m}_{stat}": float(fn([r[c][m] for r in reports])) for m in ("accuracy", "uar") for stat, fn in (("mean", np.mean), ("std", np.std))}
        for c in conditions
    }
    out["references"] = reports[0].get("references")
    out["profile_prior_clips"] = [r.get("profile_prior_clips") for r in reports]
    return out


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def assemble_results(
    runs: list[dict],
    model,
    labels: list[str],
    features: datasets.Dataset,
    data_info: dict,
    undecodable: int,
    feature_extractor,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args,
    argv: list[str],
    name: str,
) -> dict:
    config = model.config
    results = {
        "labels": labels,
        "data": {
            **data_info,
            "clips": len(features),
            "actors": len({s for s in features["speaker"] if s}) or "unknown",
            "undecodable": undecodable,
            "label_counts": label_counts(features["label"], labels),
        },
        "model": {
            "name": name,
            "backbone": model_args.model_name_or_path if not model_args.backbone_config else "random init",
            "speaker_adaptation": bool(config.speaker_adaptation),
            "profile_prior_clips": config.profile_prior_clips if config.speaker_adaptation else None,
            "profile_offset_clips": config.profile_offset_clips if config.speaker_adaptation else None,
            "mood_aware_profiles": bool(getattr(config, "mood_aware_profiles", False)),
            "pretrained_backbone": not model_args.backbone_config,
            "backbone_type": config.backbone_config.model_type,
            "hidden_size": config.hidden_size,
            "head_hidden_size": config.head_hidden_size,
            "head_dropout": config.head_dropout,
            "num_labels": config.num_labels,
            "pooling": config.pooling,
            "uncertainty_threshold": config.uncertainty_threshold,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "preprocessing": feature_extractor.to_dict(),
        "training": {
            "command": "python train.py " + shlex.join(argv),
            "mode": describe_mode(model, data_args.streaming),
            **describe_extras(model_args),
            "epochs": training_args.num_train_epochs,
            "epochs_run": [r["epochs_run"] for r in runs],
            "best_checkpoint": [r["best_checkpoint"] for r in runs],
            "metric_for_best_model": training_args.metric_for_best_model if training_args.load_best_model_at_end else None,
            "batch_size": training_args.per_device_train_batch_size * training_args.world_size,
            "learning_rate": training_args.learning_rate,
            "weight_decay": training_args.weight_decay,
            "seed": training_args.seed,
            "class_weights": runs[0].get("class_weights"),
            "world_size": training_args.world_size,
            "hardware": hardware(),
            "train_time_s": sum(r["train_time_s"] for r in runs),
            "embedding_time_s": sum(r["embedding_time_s"] for r in runs),
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__, "datasets": datasets.__version__},
        },
    }
    if len(runs) == 1:
        run = runs[0]
        results.update(split=run["split"], split_summary=run["split"]["summary"], validation=run["validation"], test=run["test"])
        results["calibration"] = run.get("calibration")
        if run.get("adaptation"):
            results["adaptation"] = run["adaptation"]
    else:
        mean, std = mean_std(runs)
        results.update(
            split={"kind": "kfold", "folds": len(runs), "speakers_overlap": False, "seed": training_args.seed},
            split_summary=f"leave-speakers-out {len(runs)}-fold cross-validation (speaker-independent), seed {training_args.seed}",
            test=mean,
            test_std=std,
            test_per_corpus=per_corpus_mean_std(runs),
            folds=[{k: r.get(k) for k in ("split", "validation", "test", "adaptation")} for r in runs],
        )
        if all(r.get("adaptation") for r in runs):
            results["adaptation"] = adaptation_mean_std([r["adaptation"] for r in runs])
        if all(r.get("calibration") for r in runs):
            results["calibration"] = [r["calibration"] for r in runs]
    return results
