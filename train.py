#!/usr/bin/env python
"""Train the speech emotion recognition model on RAVDESS with `Trainer` (runs under `accelerate launch` too).

    python train.py configs/tiny.yaml --data_dir ../shared/data/ravdess16k --output_dir runs/tiny
    python train.py --model_name_or_path facebook/wav2vec2-base --dataset_name TwinkStart/RAVDESS ...
    accelerate launch --num_processes 2 train.py configs/wav2vec2-base.yaml ...

Arguments come from the command line, from a YAML/JSON file, or from a file followed by overriding flags.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
import yaml
from tqdm.auto import tqdm
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed

from modeling import EMOTIONS, SERConfig, SERFeatureExtractor, SERModel
from training.card import render_card
from training.data import (
    DataError,
    cache_root,
    drop_duplicates,
    label_counts,
    load_hub_records,
    preprocess,
    scan_ravdess_folder,
)
from training.files import atomic_path, write_json_atomic, write_text_atomic
from training.metrics import SUMMARY_METRICS, compute_metrics, full_report, plot_confusion_matrix
from training.splits import Split, actor_split, kfold_splits, random_split

logger = logging.getLogger("train")

# What a model folder needs on the Hub: weights, configs, the code trust_remote_code runs, the card and figures.
HUB_FILES = ["*.safetensors", "*.json", "*.py", "README.md", "*.png"]


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="facebook/wav2vec2-base",
        metadata={"help": "Pretrained backbone (Hub id or folder), or a saved SER model to continue from."},
    )
    backbone_config: str | None = field(
        default=None,
        metadata={"help": "JSON backbone config: build a randomly initialised backbone instead of loading weights."},
    )
    pooling: str = field(default="mean", metadata={"help": "'mean' or 'weighted_mean' (learned layer weights)."})
    head_dropout: float = field(default=0.3)
    freeze_feature_encoder: bool = field(default=True)
    freeze_backbone: bool = field(
        default=False,
        metadata={"help": "Train the head only, on pooled embeddings computed once (the write-up's method)."},
    )
    embedding_batch_size: int = field(default=8)


@dataclass
class DataArguments:
    data_dir: str | None = field(default=None, metadata={"help": "RAVDESS layout: Actor_XX/03-01-EE-II-SS-RR-AA.*"})
    dataset_name: str | None = field(default=None, metadata={"help": "Any dataset load_dataset reads (Hub id)."})
    dataset_config_name: str | None = field(default=None)
    dataset_split: str = field(default="train")
    audio_column_name: str = field(default="audio")
    label_column_name: str = field(default="label")
    actor_column_name: str = field(default="actor")
    split: str = field(default="actor", metadata={"help": "'actor' (speaker-independent), 'random' or 'kfold'."})
    num_val_actors: int = field(default=2)
    num_test_actors: int = field(default=4)
    folds: int = field(default=5)
    val_fraction: float = field(default=0.1, metadata={"help": "For --split random."})
    test_fraction: float = field(default=0.2, metadata={"help": "For --split random."})
    max_clips: int | None = field(default=None, metadata={"help": "Use a stratified subset (quick runs, tests)."})
    noise_reduction: bool = field(default=True)
    preprocessing_cache_dir: str | None = field(default=None)
    preprocessing_num_workers: int | None = field(default=None)
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Start afresh instead of resuming."})


def parse_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """CLI flags, or a YAML/JSON file optionally followed by flags that override it."""
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        with open(argv[0]) as f:
            values = yaml.safe_load(f) or {}
        file_args = []
        for key, value in values.items():
            if isinstance(value, dict):
                value = json.dumps(value)
            file_args += [f"--{key}"] + ([str(v) for v in value] if isinstance(value, list) else [str(value)])
        argv = file_args + list(argv[1:])
    return parser.parse_args_into_dataclasses(args=argv)


def load_data(data_args: DataArguments) -> tuple[list[dict], dict]:
    if bool(data_args.data_dir) == bool(data_args.dataset_name):
        raise DataError("give exactly one of --data_dir (a local RAVDESS folder) or --dataset_name (a Hub dataset)")
    skipped = 0
    if data_args.data_dir:
        records, skipped = scan_ravdess_folder(data_args.data_dir)
        source = "RAVDESS speech, actors from a local folder"
    else:
        records = load_hub_records(
            data_args.dataset_name,
            data_args.dataset_config_name,
            data_args.dataset_split,
            data_args.audio_column_name,
            data_args.label_column_name,
            data_args.actor_column_name,
        )
        source = data_args.dataset_name
    records, duplicates = drop_duplicates(records)
    logger.info("%d clips; %d byte-identical duplicates dropped; %d names off the layout", len(records), duplicates, skipped)
    info = {"dataset": source, "hub_dataset": bool(data_args.dataset_name)}
    return records, {**info, "duplicates_dropped": duplicates, "skipped_names": skipped}


def subsample(records: list[dict], max_clips: int | None, seed: int) -> list[dict]:
    """A subset with the same number of clips from every actor and label, so splits and metrics stay meaningful."""
    if not max_clips or max_clips >= len(records):
        return records
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[int]] = {}
    for i in rng.permutation(len(records)):
        groups.setdefault((records[i]["actor"], records[i]["label"]), []).append(int(i))
    picked, depth = [], 0
    while len(picked) < max_clips:
        layer = [g[depth] for g in groups.values() if len(g) > depth]
        if not layer:
            break
        picked += layer[: max_clips - len(picked)]
        depth += 1
    return [records[i] for i in sorted(picked)]


def make_splits(dataset: datasets.Dataset, data_args: DataArguments, seed: int) -> list[Split]:
    if data_args.split == "random":
        return [random_split(dataset["label"], data_args.val_fraction, data_args.test_fraction, seed)]
    actors, sexes = dataset["actor"], dataset["sex"]
    if min(actors) < 0:
        raise DataError(
            "speaker-independent splits need the actor of every clip: give --actor_column_name, "
            "use RAVDESS file names, or choose --split random"
        )
    if data_args.split == "actor":
        return [actor_split(actors, sexes, data_args.num_val_actors, data_args.num_test_actors, seed)]
    if data_args.split == "kfold":
        return kfold_splits(actors, sexes, data_args.folds, data_args.num_val_actors, seed)
    raise DataError(f"--split must be 'actor', 'random' or 'kfold', got {data_args.split!r}")


def build_model(model_args: ModelArguments) -> SERModel:
    head = dict(
        pooling=model_args.pooling,
        head_dropout=model_args.head_dropout,
        freeze_feature_encoder=model_args.freeze_feature_encoder,
        freeze_backbone=model_args.freeze_backbone,
    )
    if model_args.backbone_config:
        return SERModel(SERConfig(backbone_config=json.loads(model_args.backbone_config), **head))
    path = Path(model_args.model_name_or_path)
    if (path / "config.json").exists() and json.loads((path / "config.json").read_text()).get("model_type") == "ser":
        return SERModel.from_pretrained(path, **head)
    return SERModel.from_backbone(model_args.model_name_or_path, **head)


class PadCollator:
    """Pads cached, already-normalized waveforms (or stacks cached embeddings) into a batch."""

    def __init__(self, feature_extractor: SERFeatureExtractor):
        self.feature_extractor = feature_extractor

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        labels = torch.tensor([row["label"] for row in rows], dtype=torch.long)
        if "pooled_embeddings" in rows[0]:
            embeddings = torch.tensor(np.stack([row["pooled_embeddings"] for row in rows]), dtype=torch.float32)
            return {"pooled_embeddings": embeddings, "labels": labels}
        batch = self.feature_extractor.collate([row["input_values"] for row in rows], return_tensors="pt")
        return {"input_values": batch["input_values"], "attention_mask": batch["attention_mask"], "labels": labels}


def backbone_fingerprint(model: SERModel) -> str:
    digest = hashlib.sha1()
    for name, tensor in sorted(model.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.inference_mode()
def extract_embeddings(
    model: SERModel, dataset: datasets.Dataset, collate: PadCollator, batch_size: int, device: torch.device
) -> np.ndarray:
    """Runs the frozen backbone once over the data; batches are formed by length to keep padding small."""
    model.eval().to(device)
    order = np.argsort(dataset["length"])
    out = np.zeros((len(dataset), model.config.num_pooled_layers, model.config.hidden_size), np.float32)
    for start in tqdm(range(0, len(order), batch_size), desc="Extracting embeddings", unit="batch"):
        idx = order[start : start + batch_size]
        batch = collate([dataset[int(i)] for i in idx])
        out[idx] = model.embed(batch["input_values"].to(device), batch["attention_mask"].to(device)).float().cpu().numpy()
    return out


def cached_embeddings(
    model: SERModel,
    features: datasets.Dataset,
    collate: PadCollator,
    batch_size: int,
    training_args: TrainingArguments,
    cache_dir: Path,
) -> tuple[datasets.Dataset, float]:
    """The dataset with a `pooled_embeddings` column, computed once per backbone and data (cached on disk)."""
    key = hashlib.sha1(f"{backbone_fingerprint(model)}-{features._fingerprint}-{model.config.pooling}".encode())
    path = cache_dir / f"embeddings-{key.hexdigest()[:16]}.npy"
    start = time.perf_counter()
    with training_args.main_process_first(desc="embedding extraction"):
        if path.exists():
            embeddings = np.load(path)
        else:
            embeddings = extract_embeddings(model, features, collate, batch_size, training_args.device)
            with atomic_path(path) as tmp:
                np.save(tmp, embeddings)
    elapsed = time.perf_counter() - start
    column = datasets.Dataset.from_dict(
        {"pooled_embeddings": embeddings},
        features=datasets.Features({"pooled_embeddings": datasets.Array2D(embeddings.shape[1:], "float32")}),
    )
    table = datasets.concatenate_datasets([features.remove_columns("input_values"), column], axis=1)
    return table.with_format("numpy", columns=["pooled_embeddings", "label"]), elapsed


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message says which and why."""


def check_checkpoint(path: str) -> None:
    """Raises `CheckpointError` unless `path` holds a complete checkpoint: trainer state and readable weights."""
    from safetensors import safe_open

    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder}: no such folder")
    try:
        json.loads((folder / "trainer_state.json").read_text())
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            raise FileNotFoundError("no *.safetensors weights")
        for file in weights:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    f.get_slice(key)  # reads the header and checks each tensor's extent against the file
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {folder} is incomplete or corrupt ({type(err).__name__}: {err}); delete it, or start "
            "afresh with --overwrite_output_dir true"
        ) from None


def pick_resume_checkpoint(requested: str | None, output_dir: Path, overwrite: bool) -> str | None:
    """The explicit checkpoint (checked), else the newest complete one in `output_dir` (a run killed while
    saving can leave a partial last checkpoint: it is skipped with a warning)."""
    if requested:
        check_checkpoint(requested)
        return requested
    if overwrite or not output_dir.is_dir():
        return None
    candidates = sorted(
        (p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for candidate in candidates:
        try:
            check_checkpoint(str(candidate))
            return str(candidate)
        except CheckpointError as err:
            logger.warning("skipping %s", err)
    return None


def save_final_model(trainer: Trainer, output_dir: Path) -> None:
    """Writes the model beside a temporary folder, then moves each file in: readers never see half a file."""
    tmp = output_dir / ".saving"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    for file in tmp.iterdir():
        os.replace(file, output_dir / file.name)
    tmp.rmdir()


def evaluate_split(trainer: Trainer, dataset: datasets.Dataset) -> dict:
    prediction = trainer.predict(dataset)
    y_pred = np.argmax(prediction.predictions, axis=-1)
    return full_report(prediction.label_ids, y_pred, list(EMOTIONS))


def run_split(
    split: Split,
    features: datasets.Dataset,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    feature_extractor: SERFeatureExtractor,
    output_dir: Path,
) -> dict:
    set_seed(training_args.seed)
    model = build_model(model_args)
    collate = PadCollator(feature_extractor)
    embedding_time = 0.0
    data = features
    if model_args.freeze_backbone:
        data, embedding_time = cached_embeddings(
            model, features, collate, model_args.embedding_batch_size, training_args,
            cache_root(data_args.preprocessing_cache_dir),
        )  # fmt: skip
    parts = {name: data.select(getattr(split, name)) for name in ("train", "validation", "test")}

    # remove_unused_columns: the collator reads raw columns; push_to_hub: done once, with the card, at the end.
    args = dataclasses.replace(training_args, output_dir=str(output_dir), remove_unused_columns=False, push_to_hub=False)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=parts["train"],
        eval_dataset=parts["validation"],
        data_collator=collate,
        compute_metrics=compute_metrics,
        processing_class=feature_extractor,
    )
    resume = pick_resume_checkpoint(training_args.resume_from_checkpoint, output_dir, data_args.overwrite_output_dir)
    if resume:
        logger.info("resuming from %s", resume)
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume)
    train_time = time.perf_counter() - start

    validation = evaluate_split(trainer, parts["validation"])
    test = evaluate_split(trainer, parts["test"])
    if trainer.is_world_process_zero():
        save_final_model(trainer, output_dir)  # weights, config, preprocessor config and modeling code
        plot_confusion_matrix(
            test["confusion_matrix"]["matrix"], list(EMOTIONS), output_dir / "confusion_matrix.png", split.summary()
        )
        write_json_atomic(output_dir / "confusion_matrix.json", test["confusion_matrix"])
    return {
        "split": split.describe(),
        "validation": validation,
        "test": test,
        "train_loss": train_result.training_loss,
        "train_time_s": train_time,
        "embedding_time_s": embedding_time,
        "model": model,
    }


def mean_std(folds: list[dict]) -> tuple[dict, dict]:
    values = {m: [f["test"][m] for f in folds] for m in SUMMARY_METRICS}
    return {m: float(np.mean(v)) for m, v in values.items()}, {m: float(np.std(v)) for m, v in values.items()}


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def push_to_hub(output_dir: Path, training_args: TrainingArguments) -> str:
    from huggingface_hub import HfApi

    if not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (user/model-name)")
    api = HfApi(token=training_args.hub_token)
    repo = api.create_repo(training_args.hub_model_id, private=training_args.hub_private_repo, exist_ok=True)
    api.upload_folder(
        repo_id=repo.repo_id,
        folder_path=str(output_dir),
        allow_patterns=HUB_FILES,
        ignore_patterns=[
            "checkpoint-*", "fold-*", "runs/*", "*_results.json", "trainer_state.json", "training_args.*",
            ".*",  # a temporary file that a killed write left behind
        ],  # fmt: skip
        commit_message="Upload speech emotion recognition model",
    )
    return repo.repo_id


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    model_args, data_args, training_args = parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    wall_start = time.perf_counter()
    set_seed(training_args.seed)
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    feature_extractor = SERFeatureExtractor(noise_reduction=data_args.noise_reduction)
    with training_args.main_process_first(desc="data preprocessing"):
        records, data_info = load_data(data_args)
        records = subsample(records, data_args.max_clips, training_args.seed)
        features, undecodable = preprocess(
            records, feature_extractor, data_args.preprocessing_cache_dir, data_args.preprocessing_num_workers
        )
    splits = make_splits(features, data_args, training_args.seed)

    runs = []
    for split in splits:
        run_dir = output_dir if split.fold is None else output_dir / f"fold-{split.fold}"
        run_dir.mkdir(parents=True, exist_ok=True)
        logger.info("split: %s", split.summary())
        runs.append(run_split(split, features, model_args, data_args, training_args, feature_extractor, run_dir))

    model = runs[0].pop("model")
    for run in runs[1:]:
        run.pop("model")
    config = model.config
    results = {
        "labels": list(EMOTIONS),
        "data": {
            **data_info,
            "clips": len(features),
            "actors": len(set(features["actor"])),
            "undecodable": undecodable,
            "label_counts": label_counts(features),
        },
        "model": {
            "name": training_args.hub_model_id or output_dir.name,
            "backbone": model_args.model_name_or_path if not model_args.backbone_config else "random init",
            "pretrained_backbone": not model_args.backbone_config,
            "backbone_type": config.backbone_config.model_type,
            "hidden_size": config.hidden_size,
            "pooling": config.pooling,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "preprocessing": feature_extractor.to_dict(),
        "training": {
            "command": "python train.py " + shlex.join(argv),
            "mode": "frozen backbone, head trained on cached pooled embeddings"
            if model_args.freeze_backbone
            else (
                "fine-tuning (feature encoder frozen, transformer layers trained)"
                if model_args.freeze_feature_encoder
                else "full training (feature encoder included)"
            ),
            "epochs": training_args.num_train_epochs,
            "batch_size": training_args.per_device_train_batch_size * training_args.world_size,
            "learning_rate": training_args.learning_rate,
            "weight_decay": training_args.weight_decay,
            "seed": training_args.seed,
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
    else:
        mean, std = mean_std(runs)
        results.update(
            split={"kind": "kfold", "folds": len(runs), "speakers_overlap": False, "seed": training_args.seed},
            split_summary=f"leave-actors-out {len(runs)}-fold cross-validation (speaker-independent), seed {training_args.seed}",
            test=mean,
            test_std=std,
            folds=[{k: r[k] for k in ("split", "validation", "test")} for r in runs],
        )
    results["training"]["wall_time_s"] = time.perf_counter() - wall_start

    if training_args.should_save:
        write_json_atomic(output_dir / "all_results.json", results)
        write_text_atomic(output_dir / "README.md", render_card(results))
        if training_args.push_to_hub:
            results["hub_repo"] = push_to_hub(output_dir, training_args)
    summary = {m: round(results["test"][m], 4) for m in SUMMARY_METRICS}
    logger.info("test (%s): %s", results["split_summary"], summary)
    return results


if __name__ == "__main__":
    try:
        main()
    except (DataError, CheckpointError) as err:
        logging.getLogger("train").error("%s", err)
        sys.exit(2)
