"""RAVDESS and other labelled audio datasets, loaded through `datasets` and the model's one preprocessing path."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from pathlib import Path

import datasets
import numpy as np

from modeling import EMOTIONS, LABEL2ID, AudioError, SERFeatureExtractor, load_audio

logger = logging.getLogger(__name__)

# Official RAVDESS identifier: modality-channel-emotion-intensity-statement-repetition-actor.
RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d\d)$")
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".webm", ".m4a", ".aac", ".aif", ".aiff"}
# Names used by RAVDESS mirrors and other emotion datasets for the same classes.
LABEL_ALIASES = {
    "fear": "fearful",
    "surprise": "surprised",
    "disgusted": "disgust",
    "happiness": "happy",
    "sadness": "sad",
    "anger": "angry",
}
FEATURES_VERSION = "1"


class DataError(ValueError):
    """A dataset that cannot be used as given; the message says why."""


def parse_ravdess_name(name: str) -> dict | None:
    """Label, actor, sex and intensity from a RAVDESS file name, or None when the name is off the layout."""
    match = RAVDESS_NAME.match(Path(name).stem)
    if match is None:
        return None
    actor = int(match.group(7))
    return {
        "label": EMOTIONS[int(match.group(3)) - 1],
        "actor": actor,
        "sex": "male" if actor % 2 else "female",  # RAVDESS: odd-numbered actors are male
        "intensity": "normal" if match.group(4) == "01" else "strong",
    }


def scan_ravdess_folder(data_dir: str | os.PathLike) -> tuple[list[dict], int]:
    """Records for every `Actor_XX/03-01-EE-II-SS-RR-AA.<audio ext>` file, and how many files were skipped."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"--data_dir {root}: no such folder")
    records, skipped = [], 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        info = parse_ravdess_name(path.name)
        if info is None:
            logger.warning("skipping %s: the name is not in the RAVDESS layout 03-01-EE-II-SS-RR-AA", path)
            skipped += 1
            continue
        records.append({"audio": str(path), **info})
    if not records:
        raise DataError(
            f"--data_dir {root}: no audio files named in the RAVDESS layout "
            "(Actor_XX/03-01-EE-II-SS-RR-AA.wav); found nothing to train on"
        )
    return records, skipped


def normalize_label(label: str) -> str:
    label = str(label).strip().lower()
    label = LABEL_ALIASES.get(label, label)
    if label not in LABEL2ID:
        raise DataError(f"unknown label {label!r}; the model's labels are {', '.join(EMOTIONS)}")
    return label


def load_hub_records(
    dataset_name: str,
    config_name: str | None,
    split: str,
    audio_column: str,
    label_column: str,
    actor_column: str,
    cache_dir: str | None = None,
) -> list[dict]:
    """Records from any dataset `datasets.load_dataset` reads (a Hub id, or a local parquet/audiofolder path)."""
    dataset = datasets.load_dataset(dataset_name, config_name, split=split, cache_dir=cache_dir)
    for column in (audio_column, label_column):
        if column not in dataset.column_names:
            raise DataError(f"{dataset_name}: no column {column!r}; columns are {dataset.column_names}")
    # Decoding is ours (one path for every entry point), so keep the encoded bytes.
    dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    label_feature = dataset.features[label_column]
    names = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None
    records = []
    for row in dataset:
        audio = row[audio_column]
        raw_label = names[row[label_column]] if names else row[label_column]
        info = parse_ravdess_name(os.path.basename(audio.get("path") or "")) or {}
        actor = int(row[actor_column]) if actor_column in row else info.get("actor", -1)
        records.append(
            {
                "audio": audio["bytes"] if audio.get("bytes") else audio["path"],
                "label": normalize_label(raw_label),
                "actor": actor,
                # RAVDESS numbering (odd actors are male) is the only sex information a mirror may carry.
                "sex": info.get("sex") or ("unknown" if actor < 0 else "male" if actor % 2 else "female"),
                "intensity": info.get("intensity", "unknown"),
            }
        )
    if not records:
        raise DataError(f"{dataset_name}: split {split!r} is empty")
    return records


def _audio_bytes(audio: str | bytes) -> bytes:
    if isinstance(audio, bytes):
        return audio
    with open(audio, "rb") as f:
        return f.read()


def drop_duplicates(records: list[dict]) -> tuple[list[dict], int]:
    """Drops byte-identical clips (RAVDESS ships one such pair), keeping the first; returns the count dropped."""
    seen, kept = set(), []
    for record in records:
        digest = hashlib.sha1(_audio_bytes(record["audio"])).hexdigest()
        if digest in seen:
            logger.warning("dropping %s: byte-identical to an earlier clip", _name(record["audio"]))
            continue
        seen.add(digest)
        kept.append({**record, "sha1": digest})
    return kept, len(records) - len(kept)


def _name(audio: str | bytes) -> str:
    return os.path.basename(audio) if isinstance(audio, str) else "<bytes>"


def features_cache_key(records: list[dict], feature_extractor: SERFeatureExtractor) -> str:
    """Changes whenever the clips or the preprocessing settings change."""
    return hashlib.sha1(
        json.dumps(
            [FEATURES_VERSION, feature_extractor.to_dict(), [r["sha1"] for r in records]], sort_keys=True
        ).encode()
    ).hexdigest()[:16]


def cache_root(cache_dir: str | None) -> Path:
    """Where preprocessed features and embeddings are cached: the given folder, or inside the datasets cache."""
    root = Path(cache_dir or Path(datasets.config.HF_DATASETS_CACHE) / "ser-features")
    root.mkdir(parents=True, exist_ok=True)
    return root


def preprocess(
    records: list[dict], feature_extractor: SERFeatureExtractor, cache_dir: str | None = None, num_proc: int | None = None
) -> tuple[datasets.Dataset, int]:
    """Decodes, denoises and normalizes every clip once (cached on disk); returns the dataset and the failures."""

    def prepare(record):
        try:
            wave = feature_extractor.process_waveform(load_audio(record["audio"], feature_extractor.sampling_rate))
        except AudioError as err:
            logger.warning("skipping %s: %s", _name(record["audio"]), err)
            return {"input_values": np.zeros(0, np.float32), "length": 0, "label": -1}
        return {"input_values": wave, "length": len(wave), "label": LABEL2ID[record["label"]]}

    table = datasets.Dataset.from_list(
        [{"path": _name(r["audio"]), **{k: v for k, v in r.items() if k not in ("label", "audio")}} for r in records]
    )
    key = features_cache_key(records, feature_extractor)
    dataset = table.map(
        lambda row, i: prepare(records[i]),
        with_indices=True,
        cache_file_name=str(cache_root(cache_dir) / f"features-{key}.arrow"),
        new_fingerprint=key,
        num_proc=num_proc,
        desc="Decoding, denoising and normalizing audio",
        features=datasets.Features(
            {
                **table.features,
                "input_values": datasets.Sequence(datasets.Value("float32")),
                "length": datasets.Value("int64"),
                "label": datasets.Value("int64"),
            }
        ),
    )
    usable = dataset.filter(lambda length: length > 0, input_columns="length")
    return usable, len(dataset) - len(usable)


def label_counts(dataset: datasets.Dataset) -> dict[str, int]:
    counts = Counter(dataset["label"])
    return {EMOTIONS[i]: counts.get(i, 0) for i in range(len(EMOTIONS))}
