"""One training run: data from every source, the splits, the model, and a `Trainer` per split."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import AutoConfig, EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments, set_seed

from modeling import SERConfig, SERFeatureExtractor, SERForSequenceClassification

from .args import ArgumentsError, DataArguments, ModelArguments
from .augment import AugmentationConfig, AugmentedDataset, Augmenter, EpochCallback
from .auxiliary import FEATURE_SET, AuxiliaryTargetModel, egemaps_functionals, standardize, unwrap
from .calibration import calibrate
from .checkpoints import check_checkpoint_fits, pick_resume_checkpoint, save_final_model
from .data import cache_root, drop_duplicates, preprocessing_first
from .adaptation import ProfileSampler, adaptation_report, reference_spread
from .embeddings import augmented_embeddings, cached_embeddings
from serving.files import write_json_atomic
from .metrics import compute_metrics, full_report, plot_confusion_matrix
from .sources import (
    DataError,
    apply_label_map,
    label_names,
    load_hub_records,
    read_label_map,
    read_manifest,
    scan_emodb_folder,
    scan_ravdess_folder,
)
from .splits import Split, actor_split, corpus_split, kfold_splits, random_split

logger = logging.getLogger("train")

HEAD_DEFAULTS = {
    "pooling": "mean",
    "head_dropout": 0.3,
    "freeze_feature_encoder": True,
    "freeze_backbone": False,
    "speaker_adaptation": False,
}


def load_records(data_args: DataArguments) -> tuple[list[dict], list[str], dict]:
    """Records from every source given, deduplicated and mapped to model labels; the label list; what was read."""
    if not data_args.has_source():
        raise DataError("no data: give --data_dir (RAVDESS), --emodb_dir, --manifest CSV and/or --dataset_name")
    records, sources, class_names = [], [], None
    if data_args.data_dir:
        found, skipped = scan_ravdess_folder(data_args.data_dir)
        records += found
        sources.append({"corpus": "ravdess", "reader": "RAVDESS file names", "clips": len(found), "skipped_names": skipped})
    if data_args.emodb_dir:
        found, skipped = scan_emodb_folder(data_args.emodb_dir)
        records += found
        sources.append({"corpus": "emodb", "reader": "EmoDB file names", "clips": len(found), "skipped_names": skipped})
    for csv_path in data_args.manifest or []:
        found = read_manifest(csv_path)
        records += found
        sources.append({"corpus": found[0]["corpus"], "reader": "manifest CSV", "clips": len(found), "skipped_names": 0})
    if data_args.dataset_name:
        found, class_names = load_hub_records(
            data_args.dataset_name,
            data_args.dataset_config_name,
            data_args.dataset_split,
            data_args.audio_column_name,
            data_args.label_column_name,
            data_args.actor_column_name,
            data_args.sex_column_name,
        )
        records += found
        sources.append(
            {"corpus": found[0]["corpus"], "reader": f"datasets: {data_args.dataset_name}", "clips": len(found), "skipped_names": 0}
        )
    corpora = [s["corpus"] for s in sources]
    if len(set(corpora)) != len(corpora):
        raise DataError(f"two sources have the same corpus name {corpora}: speakers of both would merge")
    label_map = read_label_map(data_args.label_map)
    records, labels_dropped = apply_label_map(records, label_map)
    if not records:
        raise DataError("--label_map dropped every clip")
    records, duplicates = drop_duplicates(records)
    labels = label_names(records, class_names if len(sources) == 1 else None)
    if len(labels) < 2:
        raise DataError(f"the data has a single label {labels}: a classifier needs at least two")
    logger.info("%d clips from %s; labels %s; %d byte-identical duplicates dropped", len(records), corpora, labels, duplicates)
    info = {
        "dataset": " + ".join(f"{s['corpus']} ({s['reader']})" for s in sources),
        "sources": sources,
        "corpora": corpora,
        "hub_dataset": data_args.dataset_name if data_args.dataset_name and not Path(data_args.dataset_name).exists() else None,
        "duplicates_dropped": duplicates,
        "skipped_names": sum(s["skipped_names"] for s in sources),
        "labels_dropped": labels_dropped,
        "label_map": label_map or None,
    }
    return records, labels, info


def subsample(records: list[dict], max_clips: int | None, seed: int) -> list[dict]:
    """A subset with the same number of clips from every speaker and label, so splits and metrics stay meaningful."""
    if not max_clips or max_clips >= len(records):
        return records
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[int]] = {}
    for i in rng.permutation(len(records)):
        groups.setdefault((records[i]["speaker"], records[i]["label"]), []).append(int(i))
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
        if data_args.test_corpus:
            raise DataError("--test_corpus is a split of its own: leave out --split random")
        return [random_split(dataset["label"], data_args.val_fraction, data_args.test_fraction, seed)]
    speakers, sexes, corpora = dataset["speaker"], dataset["sex"], dataset["corpus"]
    if data_args.test_corpus:
        if data_args.split != "actor":
            raise DataError(f"--test_corpus is a split of its own: leave out --split {data_args.split}")
        return [corpus_split(speakers, sexes, corpora, data_args.test_corpus, data_args.num_val_actors, seed)]
    if data_args.split == "actor":
        return [actor_split(speakers, sexes, corpora, data_args.num_val_actors, data_args.num_test_actors, seed)]
    if data_args.split == "kfold":
        return kfold_splits(speakers, sexes, corpora, data_args.folds, data_args.num_val_actors, seed)
    raise DataError(f"--split must be 'actor', 'random' or 'kfold', got {data_args.split!r}")


def _saved_ser_config(name_or_path: str) -> SERConfig | None:
    if name_or_path == GE2E:
        return None
    path = Path(name_or_path)
    if path.is_dir() and not (path / "config.json").is_file():
        return None
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, SERConfig) else None


def saved_feature_extractor(model_args: ModelArguments) -> SERFeatureExtractor | None:
    """A saved SER model's own preprocessing, so that continuing from it trains on what it will see at inference."""
    if model_args.backbone_config or _saved_ser_config(model_args.model_name_or_path) is None:
        return None
    return SERFeatureExtractor.from_pretrained(model_args.model_name_or_path)


def build_model(model_args: ModelArguments, labels: list[str]) -> SERForSequenceClassification:
    """A new model, or a saved one to continue from, with `labels` as its label set.

    A saved model keeps its pooling, head and freezing settings unless a flag sets them; a different label set
    re-initializes only the last layer of the head.
    """
    explicit = {k: getattr(model_args, k) for k in HEAD_DEFAULTS if getattr(model_args, k) is not None}
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in id2label.items()}
    if model_args.backbone_config:
        head = {**HEAD_DEFAULTS, **explicit}
        return SERForSequenceClassification(SERConfig(backbone_config=json.loads(model_args.backbone_config), id2label=id2label, label2id=label2id, **head))
    if model_args.model_name_or_path == GE2E:
        from .voice import pretrained_ge2e

        head = {**HEAD_DEFAULTS, "freeze_backbone": True, **explicit}
        model = SERForSequenceClassification(SERConfig(backbone_config={"model_type": "ge2e"}, id2label=id2label, label2id=label2id, **head))
        model.backbone.load_state_dict(pretrained_ge2e().state_dict())
        return model
    saved = _saved_ser_config(model_args.model_name_or_path)
    if saved is None:
        return SERForSequenceClassification.from_backbone(model_args.model_name_or_path, id2label=id2label, label2id=label2id, **{**HEAD_DEFAULTS, **explicit})
    if explicit:
        logger.info("continuing from %s with changed settings %s", model_args.model_name_or_path, explicit)
    # A saved temperature calibrated the old weights, and saved robustness figures measured them: training starts
    # from plain logits and fits a new temperature after; the new weights' robustness is unmeasured until benchmarked.
    explicit["temperature"] = 1.0
    explicit["robustness"] = None
    saved_labels = [saved.id2label[i] for i in range(saved.num_labels)]
    if saved_labels == labels:
        return SERForSequenceClassification.from_pretrained(model_args.model_name_or_path, **explicit)
    model = SERForSequenceClassification.from_pretrained(
        model_args.model_name_or_path, id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True, **explicit
    )
    # Same size but other labels (or order): the saved weights would answer for the wrong classes. Plain torch
    # init: transformers' own initializers skip parameters that were loaded from a checkpoint.
    with torch.no_grad():
        torch.nn.init.normal_(model.head[-1].weight, mean=0.0, std=0.02)
        torch.nn.init.zeros_(model.head[-1].bias)
    logger.warning(
        "new label set %s (the saved model has %s): the head's last layer is re-initialized, the rest is kept",
        labels,
        saved_labels,
    )
    return model


# `--model_name_or_path ge2e`: the pretrained GE2E speaker encoder (training/voice.py) as the backbone.
GE2E = "ge2e"


class TimeBudgetCallback(TrainerCallback):
    """Ends training at the first epoch end after `seconds` (counted from the start of this `train()` call)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        stop = torch.tensor(float(time.perf_counter() - self.start > self.seconds), device=args.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stop, op=torch.distributed.ReduceOp.MAX)  # every process stops together
        if stop.item():
            logger.warning("--max_train_time_s %g reached after epoch %.0f: stopping", self.seconds, state.epoch)
            control.should_training_stop = True


class PadCollator:
    """Pads cached, already-normalized waveforms (or stacks cached embeddings) into a batch."""

    def __init__(
        self,
        feature_extractor: SERFeatureExtractor,
        class_weights: torch.Tensor | None = None,
        profiles: ProfileSampler | None = None,
    ):
        self.feature_extractor = feature_extractor
        self.class_weights = class_weights
        self.profiles = profiles

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        labels = torch.tensor([int(row["label"]) for row in rows], dtype=torch.long)
        extra = {} if self.class_weights is None else {"class_weights": self.class_weights}
        if "pooled_embeddings" in rows[0]:
            embeddings = torch.tensor(np.stack([row["pooled_embeddings"] for row in rows]), dtype=torch.float32)
            if self.profiles is not None and "speaker" in rows[0]:  # training rows: each relative to a drawn profile
                extra["speaker_center"] = torch.tensor(np.stack([self.profiles(str(row["speaker"])) for row in rows]))
            return {"pooled_embeddings": embeddings, "labels": labels, **extra}
        batch = self.feature_extractor.collate([row["input_values"] for row in rows], return_tensors="pt")
        out = {"input_values": batch["input_values"], "attention_mask": batch["attention_mask"], "labels": labels, **extra}
        if "auxiliary_targets" in rows[0]:
            out["auxiliary_targets"] = torch.tensor(np.stack([row["auxiliary_targets"] for row in rows]), dtype=torch.float32)
        return out


def evaluate_split(
    trainer: Trainer, dataset, labels: list[str], candidates: list[int] | None = None
) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """The report of one part, and its (logits, labels) for calibration. With `candidates` (indices of a subset of
    the labels; every clip's label among them), the answer is restricted to them: the softmax over their logits
    alone, as `candidate_labels` does at inference, and the report is over that subset."""
    prediction = trainer.predict(dataset)
    logits, y = prediction.predictions, prediction.label_ids
    if candidates is not None:
        logits, y = logits[:, candidates], np.searchsorted(candidates, y)
        labels = [labels[i] for i in candidates]
    report = full_report(y, np.argmax(logits, axis=-1), labels, corpora=list(dataset["corpus"]))
    return report, (logits, y)


def run_split(
    split: Split,
    features: datasets.Dataset,
    records: list[dict],
    labels: list[str],
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    feature_extractor: SERFeatureExtractor,
    output_dir: Path,
    train_stream: datasets.IterableDataset | None = None,
    train_labels: np.ndarray | None = None,
) -> dict:
    """Trains and evaluates one split. With `train_stream` (`--streaming`), training reads that stream, whose
    labels are `train_labels`, and `features` holds the validation and test clips only; a frozen backbone then
    runs on every step instead of from cached embeddings."""
    set_seed(training_args.seed)
    model = build_model(model_args, labels)
    frozen = model.config.freeze_backbone and train_stream is None
    if frozen and (model_args.augment and not model_args.augment_copies or model_args.auxiliary_egemaps_weight > 0):
        # The flags were checked up front; a saved model can bring a frozen backbone with it.
        raise ArgumentsError(
            f"{model_args.model_name_or_path} has a frozen backbone (its config): --augment needs --augment_copies, "
            "and --auxiliary_egemaps_weight a live backbone (--freeze_backbone false)"
        )
    if model.config.speaker_adaptation and train_stream is not None:
        raise ArgumentsError(
            f"{model_args.model_name_or_path} takes speaker profiles, which are trained from cached embeddings: "
            "leave out --streaming, or continue with --speaker_adaptation false"
        )
    if model.config.speaker_adaptation and not frozen:
        raise ArgumentsError("--speaker_adaptation trains the head on cached embeddings: add --freeze_backbone true")
    collate = PadCollator(feature_extractor)
    embedding_time = 0.0
    data = features
    columns = ["input_values", "label"]
    copies = None
    if frozen:
        cache = cache_root(data_args.preprocessing_cache_dir)
        data, embedding_time = cached_embeddings(
            model, features, collate, model_args.embedding_batch_size, training_args, cache, model_args.embedding_shard_rows
        )
        columns = ["pooled_embeddings", "label"]
        if model_args.augment:
            augmenter = Augmenter(
                augmentation_config(model_args), training_args.seed,
                babble_sources=babble_sources(features, split.train, training_args.seed),
            )  # fmt: skip
            copies, seconds = augmented_embeddings(
                model, features.select(split.train), augmenter, model_args.augment_copies, collate,
                model_args.embedding_batch_size, training_args, cache, model_args.embedding_shard_rows,
            )  # fmt: skip
            embedding_time += seconds
    trained_model = model
    if model_args.auxiliary_egemaps_weight > 0:
        by_sha1 = {r["sha1"]: i for i, r in enumerate(records)}
        with preprocessing_first(training_args, "eGeMAPS functionals"):
            targets = egemaps_functionals(records, cache_root(data_args.preprocessing_cache_dir))
        targets = targets[[by_sha1[s] for s in features["sha1"]]]
        data = data.add_column("auxiliary_targets", list(standardize(targets, split.train)))
        columns.append("auxiliary_targets")
        trained_model = AuxiliaryTargetModel(model, targets.shape[1], model_args.auxiliary_egemaps_weight)
    data = data.with_format("numpy", columns=columns + ["corpus"])
    parts = {name: data.select(getattr(split, name)) for name in ("validation", "test")}
    parts["train"] = data.select(split.train) if train_stream is None else None
    train_data, callbacks = parts["train"], []
    if train_stream is not None:
        train_data = train_stream
    else:
        train_labels = np.asarray(features.select(split.train)["label"])
    if frozen:
        train_data = frozen_training_rows(data, features, split.train, copies)
    elif model_args.augment:
        augmentation = augmentation_config(model_args)
        augmenter = Augmenter(augmentation, training_args.seed, babble_sources=babble_sources(features, split.train, training_args.seed))
        train_data = AugmentedDataset(parts["train"], augmenter)
        callbacks.append(EpochCallback(train_data))
    class_weights = balanced_class_weights(train_labels, len(labels)) if model_args.class_weights == "balanced" else None
    profiles = None
    if model.config.speaker_adaptation:
        profiles = fit_population(model, train_data, len(split.train), training_args.seed)
    collate = PadCollator(feature_extractor, class_weights, profiles)
    if model_args.max_train_time_s:
        callbacks.append(TimeBudgetCallback(model_args.max_train_time_s))
    if model_args.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=model_args.early_stopping_patience))

    # remove_unused_columns: the collator reads raw columns; push_to_hub: done once, with the card, at the end.
    # ignore_data_skip with a stream: resuming would otherwise read and decode every batch seen before the checkpoint.
    args = dataclasses.replace(
        training_args, output_dir=str(output_dir), remove_unused_columns=False, push_to_hub=False,
        ignore_data_skip=training_args.ignore_data_skip or train_stream is not None,
    )  # fmt: skip
    trainer = Trainer(
        model=trained_model,
        args=args,
        train_dataset=train_data,
        eval_dataset=parts["validation"],
        data_collator=collate,
        compute_metrics=compute_metrics,
        processing_class=feature_extractor,
        callbacks=callbacks,
    )
    resume = pick_resume_checkpoint(training_args.resume_from_checkpoint, output_dir, data_args.overwrite_output_dir)
    if resume:
        check_checkpoint_fits(resume, trained_model)
        logger.info("resuming from %s", resume)
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume)
    train_time = time.perf_counter() - start

    validation, validation_logits = evaluate_split(trainer, parts["validation"], labels)
    test, test_logits = evaluate_split(trainer, parts["test"], labels)
    # Fitted on the validation speakers; the test speakers show whether it carries over to unseen ones.
    calibration = calibrate(validation_logits, test_logits)
    if calibration:
        config = unwrap(trained_model).config
        config.temperature *= calibration["fitted_factor"]  # the logits already include any earlier temperature
        calibration["temperature"] = config.temperature
    adaptation = None
    if model.config.speaker_adaptation:
        adaptation = tune_and_report_adaptation(model, data, features, split, labels, training_args.seed)
    run = {
        "split": split.describe(),
        "validation": validation,
        "test": test,
        "adaptation": adaptation,
        "class_weights": None if class_weights is None else dict(zip(labels, class_weights.tolist())),
        "train_loss": train_result.training_loss,
        "train_time_s": train_time,
        "embedding_time_s": embedding_time,
        "epochs_run": float(trainer.state.epoch or 0),
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name if trainer.state.best_model_checkpoint else None,
        "calibration": calibration,
    }
    if trainer.is_world_process_zero():
        save_final_model(trainer, output_dir)  # weights, config, preprocessor config and modeling code
        plot_confusion_matrix(test["confusion_matrix"]["matrix"], labels, output_dir / "confusion_matrix.png", split.summary())
        write_json_atomic(output_dir / "confusion_matrix.json", test["confusion_matrix"])
        if split.fold is not None:
            recipe = recipe_fingerprint(labels, model_args, data_args, training_args)
            write_json_atomic(output_dir / FOLD_RESULTS, {**run, "recipe": recipe})  # last: the fold is done
    return {**run, "model": unwrap(trained_model)}


FOLD_RESULTS = "fold_results.json"


def augmentation_config(model_args: ModelArguments) -> AugmentationConfig:
    return AugmentationConfig(conditions=model_args.augment_conditions, backgrounds=model_args.augment_backgrounds)


def babble_sources(features: datasets.Dataset, train_rows: list[int], seed: int, count: int = 60) -> list[np.ndarray]:
    """Clips of the training speakers to make babble noise from (never a validation or test voice)."""
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(train_rows, size=min(count, len(train_rows)), replace=False).tolist())
    rows = features.select(picked).with_format("numpy", columns=["input_values"])
    return [np.asarray(rows[i]["input_values"], dtype=np.float32) for i in range(len(picked))]


def frozen_training_rows(
    data: datasets.Dataset, features: datasets.Dataset, rows: list[int], copies: list[datasets.Dataset] | None
) -> datasets.Dataset:
    """The training rows of the frozen mode: each clip's embedding, then those of its augmented copies, with the
    speaker of each (for the profiles of speaker adaptation); the embeddings stay in their memory-mapped cache."""
    columns = ["pooled_embeddings", "label", "speaker", "corpus"]
    parts = [data.select(rows).select_columns(columns)]
    if copies:  # one dataset per augmented copy, in the order of `rows`
        meta = features.select(rows).select_columns(columns[1:]).flatten_indices(keep_in_memory=True)
        parts += [datasets.concatenate_datasets([copy, meta], axis=1).select_columns(columns) for copy in copies]
    table = datasets.concatenate_datasets(parts)
    return table.with_format("numpy", columns=columns)


def balanced_class_weights(labels: np.ndarray, num_labels: int) -> torch.Tensor:
    """scikit-learn's 'balanced' weights, n / (classes * count); 0 for a class absent from training."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = np.zeros(num_labels, np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return torch.from_numpy(weights)


def combined_features(model: SERForSequenceClassification, pooled: np.ndarray) -> np.ndarray:
    """`combine_layers` of cached pooled embeddings, on the model's device, back as numpy."""
    with torch.no_grad():
        return model.combine_layers(torch.from_numpy(np.asarray(pooled)).to(model.device)).float().cpu().numpy()


def fit_population(model: SERForSequenceClassification, train_data: datasets.Dataset, clean_rows: int, seed: int) -> ProfileSampler:
    """Sets the model's population statistics (over every training row, augmented copies included: the
    conditions a profile will meet), reference spread and label offsets (over the clean clips); the sampler of the
    training profiles, which draws from the clean clips."""
    combined = combined_features(model, train_data["pooled_embeddings"])
    model.set_population(torch.from_numpy(combined).to(model.device))
    speakers, labels = list(train_data["speaker"])[:clean_rows], list(train_data["label"])[:clean_rows]
    std = model.population_std.detach().cpu().numpy()
    model.config.reference_spread = reference_spread(combined[:clean_rows], speakers, std)
    # Mood-aware profiles (see modeling/profile.py): each label's offset, from the clean clips.
    model.set_label_offsets(torch.from_numpy(combined[:clean_rows]).to(model.device), torch.tensor(labels, device=model.device))
    return ProfileSampler(combined[:clean_rows], speakers, labels, model, seed)


# Shrinkage strengths tried on the validation speakers (pseudo-clips of the population a profile is weighed against).
PRIORS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def tune_and_report_adaptation(model, data, features, split: Split, labels: list[str], seed: int) -> dict:
    """Picks `profile_prior_clips` on the validation speakers (the best mean accuracy with profiles of all of a
    speaker's clips and of 16 random ones; profiles of 2-4 clips never act, see `profile_offset_clips`), then
    reports every condition on the test speakers."""

    def part(rows):
        selected = features.select(rows)
        x = combined_features(model, data.select(rows)["pooled_embeddings"])
        return x, np.asarray(selected["label"]), list(selected["speaker"])

    val = part(split.validation)
    tried = {}
    for prior in PRIORS:
        model.config.profile_prior_clips = prior
        r = adaptation_report(model, *val, labels, seed)
        tried[prior] = r
    score = {p: np.mean([r[k]["accuracy"] for k in ("all", "random_16")]) for p, r in tried.items()}
    model.config.profile_prior_clips = max(score, key=score.get)
    report = adaptation_report(model, *part(split.test), labels, seed)
    report["profile_prior_clips"] = model.config.profile_prior_clips
    report["validation"] = {str(p): {k: v["accuracy"] for k, v in r.items() if isinstance(v, dict) and "accuracy" in v} for p, r in tried.items()}
    return report


def recipe_fingerprint(labels: list[str], model_args, data_args, training_args) -> str:
    """What a fold's result depends on: labels, model and data flags, and the optimisation settings. Flags that
    only say how to run (which fold, workers, output folder, cache shard size) are left out, so parallel fold runs match."""
    data = {k: v for k, v in dataclasses.asdict(data_args).items() if k not in ("fold", "preprocessing_num_workers", "overwrite_output_dir")}
    optimisation = {
        k: getattr(training_args, k)
        for k in ("seed", "num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size", "weight_decay",
                  "warmup_steps", "lr_scheduler_type", "metric_for_best_model", "load_best_model_at_end")
    }  # fmt: skip
    model = {k: v for k, v in dataclasses.asdict(model_args).items() if k != "embedding_shard_rows"}
    payload = json.dumps([labels, model, data, optimisation], sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def finished_fold(split: Split, run_dir: Path, recipe: str, overwrite: bool = False) -> dict | None:
    """The results of a fold trained earlier (a parallel `--fold K` run, or a k-fold run that was interrupted
    after it), when they are for the same speakers and recipe; None when the fold still has to be trained."""
    path = run_dir / FOLD_RESULTS
    if split.fold is None or overwrite or not path.is_file():
        return None
    run = json.loads(path.read_text())
    if run["split"]["actors"] != split.describe()["actors"] or run.get("recipe") != recipe:
        logger.warning("%s is for other speakers or another recipe: training fold %s again", path, split.fold)
        return None
    logger.info("fold %s: reusing the finished run in %s", split.fold, run_dir)
    return {**run, "model": SERForSequenceClassification.from_pretrained(run_dir)}


def describe_mode(model: SERForSequenceClassification, streaming: bool = False) -> str:
    config = model.config
    if config.freeze_backbone and streaming:
        return "frozen backbone, head trained on streamed clips (the backbone runs on every step)"
    if config.freeze_backbone:
        return "frozen backbone, head trained on cached pooled embeddings"
    if config.freeze_feature_encoder:
        return "fine-tuning (feature encoder frozen, transformer layers trained)"
    return "full training (feature encoder included)"


def describe_extras(model_args: ModelArguments) -> dict:
    return {
        "augmentation": (
            augmentation_config(model_args).describe()
            + (f"; {model_args.augment_copies} augmented copies of each training clip, embedded once" if model_args.augment_copies else "")
        )
        if model_args.augment
        else None,
        "auxiliary_target": (
            f"{FEATURE_SET}, z-scored on the training speakers, weight {model_args.auxiliary_egemaps_weight:g}; "
            "training only (not in the saved model)"
        )
        if model_args.auxiliary_egemaps_weight > 0
        else None,
    }
