"""Command-line arguments of train.py and evaluate.py: dataclasses parsed by `HfArgumentParser`, from flags, a
YAML/JSON file, or a file followed by flags that override it."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field

import yaml
from transformers import HfArgumentParser, TrainingArguments

from serving.loading import ModelError, check_backbone_config, resolve_model_path

from .embeddings import SHARD_ROWS


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="facebook/wav2vec2-base",
        metadata={
            "help": "Pretrained backbone (Hub id or folder), 'ge2e' for the pretrained GE2E speaker encoder (weights "
            "from the resemblyzer package), or a saved SER model to continue from (its pooling, head and freezing "
            "are kept unless a flag below changes them; with other labels than the data's, the head's last layer is "
            "re-initialized)."
        },
    )
    backbone_config: str | None = field(
        default=None,
        metadata={"help": "JSON backbone config: build a randomly initialised backbone instead of loading weights."},
    )
    pooling: str | None = field(
        default=None,
        metadata={
            "help": "'mean', 'weighted_mean' (learned layer weights) or 'mean_std' (mean and standard deviation). "
            "Default: mean, or the saved model's."
        },
    )
    head_dropout: float | None = field(default=None, metadata={"help": "Default: 0.3, or the saved model's."})
    freeze_feature_encoder: bool | None = field(
        default=None, metadata={"help": "Keep the convolutional encoder fixed. Default: true, or the saved model's."}
    )
    freeze_backbone: bool | None = field(
        default=None,
        metadata={"help": "Train the head only, on pooled embeddings computed once (the write-up's method)."},
    )
    embedding_batch_size: int = field(default=8)
    embedding_shard_rows: int = field(
        default=SHARD_ROWS,
        metadata={
            "help": "Frozen backbone: clips per file of the embedding cache (memory-mapped Arrow shards; under "
            "`accelerate launch` each process computes its share of the shards)."
        },
    )
    augment: bool = field(
        default=False,
        metadata={
            "help": "Augment training clips (speed, pitch, gain transition, noise): on the fly with a live backbone; "
            "with a frozen one, --augment_copies augmented embeddings of each training clip, computed once."
        },
    )
    augment_copies: int = field(
        default=0,
        metadata={"help": "Frozen backbone with --augment: augmented copies of each training clip (cached embeddings)."},
    )
    speaker_adaptation: bool | None = field(
        default=None,
        metadata={
            "help": "Train a model that takes speaker profiles: each training clip is seen relative to a profile of "
            "random, often few and single-mood, clips of its speaker (or none). Frozen backbone only. Default: "
            "false, or the saved model's."
        },
    )
    class_weights: str | None = field(
        default=None,
        metadata={"help": "'balanced': weight each class in the loss by the inverse of its frequency in training."},
    )
    augment_conditions: bool = field(
        default=False,
        metadata={
            "help": "With --augment: also real-world conditions (simulated rooms, telephone channels with narrowband "
            "codecs, MP3, clipping, babble), "
            "for models that must hold up on calls, rooms and compressed files."
        },
    )
    augment_backgrounds: str | None = field(
        default=None,
        metadata={
            "help": "With --augment_conditions: a folder of background recordings (music, street or machine noise) "
            "mixed in under the voice at 0-20 dB SNR."
        },
    )
    auxiliary_egemaps_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of an auxiliary loss that regresses each clip's eGeMAPS functionals (openSMILE) from the "
            "pooled embedding, during training only; 0 turns it off."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop after this many evaluations without improvement of --metric_for_best_model."},
    )
    max_train_time_s: float | None = field(
        default=None,
        metadata={
            "help": "Stop training (at the end of an epoch) once this many seconds have passed; the best checkpoint "
            "so far is kept as with early stopping. For shared machines with a time limit."
        },
    )


@dataclass
class DataArguments:
    data_dir: str | None = field(default=None, metadata={"help": "RAVDESS layout: Actor_XX/03-01-EE-II-SS-RR-AA.*"})
    emodb_dir: str | None = field(default=None, metadata={"help": "EmoDB file naming: 03a01Fa.wav, in any subfolder."})
    manifest: list[str] | None = field(
        default=None,
        metadata={"help": "CSV files with columns path,label,speaker[,sex]; paths relative to the CSV; corpus = its folder."},
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "Anything load_dataset reads without a script: a Hub id or a local audiofolder."}
    )
    dataset_config_name: str | None = field(default=None)
    dataset_split: str = field(default="train")
    audio_column_name: str = field(default="audio")
    label_column_name: str = field(default="label")
    actor_column_name: str = field(default="actor", metadata={"help": "The speaker column of --dataset_name."})
    sex_column_name: str | None = field(default=None, metadata={"help": "Optional sex column of --dataset_name."})
    label_map: str | None = field(
        default=None,
        metadata={"help": "JSON/YAML file or inline JSON mapping raw labels to model labels; null drops a label."},
    )
    split: str = field(
        default="actor", metadata={"help": "'actor' (speaker-independent), 'kfold' (by speaker) or 'random'."}
    )
    test_corpus: str | None = field(
        default=None, metadata={"help": "Leave one corpus out: train on the others, test on all of this one."}
    )
    num_val_actors: int = field(default=2, metadata={"help": "Validation speakers of the largest corpus (fewer of smaller ones)."})
    num_test_actors: int = field(default=4, metadata={"help": "Test speakers of the largest corpus (fewer of smaller ones)."})
    folds: int = field(default=5)
    fold: int | None = field(
        default=None,
        metadata={
            "help": "With --split kfold: train only this fold (e.g. one process per fold in parallel); a later run "
            "without --fold reuses every finished fold and writes the summary."
        },
    )
    val_fraction: float = field(default=0.1, metadata={"help": "For --split random."})
    test_fraction: float = field(default=0.2, metadata={"help": "For --split random."})
    max_clips: int | None = field(default=None, metadata={"help": "Use a stratified subset (quick runs, tests)."})
    noise_reduction: bool = field(default=True)
    preprocessing_cache_dir: str | None = field(default=None)
    preprocessing_num_workers: int | None = field(default=None)
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Start afresh instead of resuming."})
    shuffle_buffer_size: int = field(
        default=1000,
        metadata={
            "help": "With --streaming: clips held to shuffle the training stream, fed from up to 10 of the dataset's "
            "files at a time (datasets' defaults); these and the files' row groups being read bound its memory."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read --dataset_name as a stream, for corpora larger than the disk: one pass over its label and "
            "speaker columns (whole rows where speakers come from RAVDESS file names) draws the speaker-disjoint "
            "split, the validation and test speakers are stored in the cache, and training reads the training "
            "speakers from the stream for --max_steps steps, in one process."
        },
    )

    def has_source(self) -> bool:
        return bool(self.data_dir or self.emodb_dir or self.manifest or self.dataset_name)


@dataclass
class EvaluationArguments:
    model_name_or_path: str = field(metadata={"help": "A saved SER model (folder or Hub id)."})
    part: str = field(
        default="all",
        metadata={
            "help": "'all' clips of the sources, or 'test' / 'validation': that part of the split the data flags and "
            "--seed draw (a run's own, with its flags)."
        },
    )
    fit_temperature: bool = field(
        default=False,
        metadata={
            "help": "With --part validation: fit the temperature (calibration) on the validation part, save it in the "
            "model's config.json, report the calibration error before/after on the test part, and add that to the "
            "folder's all_results.json and card."
        },
    )
    candidate_labels: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated subset of the model's labels: clips with other labels are left out and each answer "
            "is restricted to these, renormalized (the cross-corpus convention of EmoBox)."
        },
    )
    output_dir: str | None = field(default=None, metadata={"help": "Writes eval_results.json, the confusion matrix and a table."})
    speaker_adaptation: bool = field(
        default=False,
        metadata={
            "help": "Also report accuracy and UAR with speaker profiles (models trained with speaker adaptation): "
            "from all of each speaker's clips, from 16 random ones, and with only 2-4 clips of 1-2 emotions."
        },
    )
    batch_size: int = field(default=16)
    use_cpu: bool = field(default=False)
    seed: int = field(default=42, metadata={"help": "The seed of the split, with --part test."})


def _file_args(path: str) -> list[str]:
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    args = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, dict):
            value = json.dumps(value)
        args += [f"--{key}"] + ([str(v) for v in value] if isinstance(value, list) else [str(value)])
    return args


def parse(dataclass_types: tuple, argv: list[str], usage: str | None = None):
    """CLI flags, or a YAML/JSON file optionally followed by flags that override it. `usage` (the script's
    examples) opens `--help`, before the hundreds of flags."""
    # No abbreviations: `--num_train_epoch 3` must be an error, not a silent match of some longer flag.
    parser = HfArgumentParser(dataclass_types, allow_abbrev=False, usage=usage)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        argv = _file_args(argv[0]) + list(argv[1:])
    *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        flags = [f for action in parser._actions for f in action.option_strings]
        hints = []
        for flag in (u.split("=")[0] for u in unknown if u.startswith("--")):
            match = difflib.get_close_matches(flag, flags, n=1)
            if match:
                hints.append(f"{flag}: did you mean {match[0]}?")
        parser.error(f"unrecognized arguments: {' '.join(unknown)}" + ("\n" + "\n".join(hints) if hints else ""))
    return tuple(parsed)


def parse_train_args(argv: list[str], usage: str | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    return parse((ModelArguments, DataArguments, TrainingArguments), argv, usage)


class ArgumentsError(ValueError):
    """Flags that contradict each other; the message says which and what to do instead."""


def check_train_args(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> None:
    """Refuses, before any work, combinations that would waste a run or give a misleading result."""
    kfold = data_args.split == "kfold"
    if kfold and training_args.resume_from_checkpoint:
        raise ArgumentsError(
            "--resume_from_checkpoint names one checkpoint, but k-fold trains one model per fold: leave it out, "
            "each fold resumes from the last complete checkpoint in its own folder (OUTPUT_DIR/fold-K)"
        )
    if kfold and training_args.push_to_hub:
        raise ArgumentsError(
            "--push_to_hub with --split kfold would publish a card without a model: cross-validation estimates "
            "a recipe; train the model to publish with --split actor, or upload one fold's folder yourself"
        )
    if data_args.fold is not None and not (kfold and 0 <= data_args.fold < data_args.folds):
        raise ArgumentsError(f"--fold {data_args.fold} needs --split kfold and 0 <= fold < --folds ({data_args.folds})")
    if model_args.augment_conditions and not model_args.augment:
        raise ArgumentsError("--augment_conditions adds to the on-the-fly augmentation: add --augment true")
    if model_args.augment_backgrounds and not model_args.augment_conditions:
        raise ArgumentsError("--augment_backgrounds is one of the recording conditions: add --augment_conditions true")
    if model_args.augment and training_args.dataloader_persistent_workers:
        raise ArgumentsError(
            "--augment draws each epoch's augmentation from the epoch number, which persistent data-loader workers "
            "would never see change: leave out --dataloader_persistent_workers"
        )
    try:
        if model_args.backbone_config:
            check_backbone_config(json.loads(model_args.backbone_config))
        else:
            resolve_model_path(model_args.model_name_or_path)
    except json.JSONDecodeError as err:
        raise ArgumentsError(f"--backbone_config is not valid JSON: {err}") from None
    except ModelError as err:
        raise ArgumentsError(str(err)) from None
    if model_args.model_name_or_path == "ge2e" and model_args.freeze_backbone is None:
        model_args.freeze_backbone = True  # the GE2E speaker encoder is only used frozen
    if model_args.freeze_backbone and model_args.augment and model_args.augment_copies < 1:
        raise ArgumentsError(
            "--augment with a frozen backbone trains on embeddings computed once: add --augment_copies N "
            "(N augmented copies of each training clip)"
        )
    if model_args.augment_copies and not (model_args.augment and model_args.freeze_backbone):
        raise ArgumentsError("--augment_copies is for --augment with --freeze_backbone true")
    if model_args.speaker_adaptation and model_args.freeze_backbone is False:
        raise ArgumentsError("--speaker_adaptation trains the head on cached embeddings: add --freeze_backbone true")
    if model_args.embedding_shard_rows < 1:
        raise ArgumentsError(f"--embedding_shard_rows must be at least 1, got {model_args.embedding_shard_rows}")
    if model_args.class_weights not in (None, "balanced"):
        raise ArgumentsError(f"--class_weights must be 'balanced', got {model_args.class_weights!r}")
    if data_args.streaming:
        check_streaming_args(model_args, data_args, training_args)
    if model_args.freeze_backbone and model_args.auxiliary_egemaps_weight > 0:
        raise ArgumentsError("--auxiliary_egemaps_weight shapes the backbone: it has no effect with --freeze_backbone")


def check_streaming_args(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> None:
    """`--streaming` reads one dataset once per epoch and stores nothing of its training part: refuses what needs
    the whole training set at hand."""
    if not data_args.dataset_name or data_args.data_dir or data_args.emodb_dir or data_args.manifest:
        raise ArgumentsError("--streaming reads one --dataset_name: leave out --data_dir, --emodb_dir and --manifest")
    if training_args.max_steps is None or training_args.max_steps <= 0:
        raise ArgumentsError("--streaming has no length to count epochs by: give --max_steps N")
    if training_args.world_size > 1:
        # accelerate hands an iterable dataset's batches from the first process to the others, which needs batches
        # of one shape; clips of every length are padded per batch.
        raise ArgumentsError(
            "--streaming trains in one process; for several processes or machines, use the memory-mapped path (leave "
            "out --streaming): each process then reads its share of the cached, preprocessed clips"
        )
    if data_args.shuffle_buffer_size < 1:
        raise ArgumentsError(f"--shuffle_buffer_size must be at least 1, got {data_args.shuffle_buffer_size}")
    if data_args.split != "actor":
        raise ArgumentsError(f"--streaming draws one speaker-disjoint split (--split actor or --test_corpus), not --split {data_args.split}")
    refused = {
        "--augment": model_args.augment,
        "--speaker_adaptation": model_args.speaker_adaptation,
        "--auxiliary_egemaps_weight": model_args.auxiliary_egemaps_weight > 0,
        "--max_clips": data_args.max_clips,
    }
    given = [flag for flag, value in refused.items() if value]
    if given:
        raise ArgumentsError(
            f"{', '.join(given)}: not available with --streaming, which never holds the training set (cached "
            "augmented copies, speaker profiles, eGeMAPS targets and subsets are built from it); leave them out"
        )
