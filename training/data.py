"""Labelled clips from one or several sources, deduplicated and run once through the model's one preprocessing
path (cached on disk)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import datasets
import numpy as np
from accelerate import PartialState

from modeling import AudioError, SERFeatureExtractor, load_audio

from .sources import ARROW_WRITER_BATCH_SIZE, ArrowAudio, audio_source

logger = logging.getLogger(__name__)

FEATURES_VERSION = "2"


@contextmanager
def preprocessing_first(training_args, desc: str) -> Iterator[None]:
    """Under `accelerate launch` / torchrun: the first process of the whole run does the work first (the others
    then find it in the shared cache), then the first process of each machine (whose cache the first may not
    share), then the rest; alone, just the work. Both steps are `TrainingArguments.main_process_first`."""
    with training_args.main_process_first(local=False, desc=desc), training_args.main_process_first(local=True, desc=desc):
        yield


def return_arrow_memory_promptly() -> None:
    """Arrow's default allocator (mimalloc) keeps freed memory for reuse in every thread that read: converting a
    corpus's parquet files in Arrow's thread pools then holds memory that grows with the number of files read
    (measured: 57, 121 and 127 MB for 1, 4 and 16 files of 240 clips). jemalloc with no decay delay returns freed
    memory at once (39, 48, 48 MB). Where pyarrow was built without jemalloc, the default stays."""
    import pyarrow as pa

    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:
        pass


def _audio_bytes(audio) -> bytes:
    audio = audio_source(audio)
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


def _name(audio) -> str:
    if isinstance(audio, ArrowAudio):
        return audio.name or f"row {audio.index}"
    return os.path.basename(audio) if isinstance(audio, str) else "<bytes>"


# Settings of the feature extractor that do not change a clip's preprocessed waveform (inference policy, limits, and
# what a saved copy records about its code: a model's own feature extractor reuses what training cached).
NOT_PREPROCESSING = ("window_s", "hop_s", "max_duration_s", "speech_detection", "auto_map", "processor_class")


def preprocessing_settings(feature_extractor: SERFeatureExtractor) -> dict:
    return {k: v for k, v in feature_extractor.to_dict().items() if k not in NOT_PREPROCESSING}


def features_cache_key(records: list[dict], feature_extractor: SERFeatureExtractor) -> str:
    """Changes whenever the clips or the preprocessing settings change."""
    return hashlib.sha1(
        json.dumps(
            [FEATURES_VERSION, preprocessing_settings(feature_extractor), [r["sha1"] for r in records]], sort_keys=True
        ).encode()
    ).hexdigest()[:16]


def cache_root(cache_dir: str | None) -> Path:
    """Where preprocessed features and embeddings are cached: the given folder, or inside the datasets cache."""
    root = Path(cache_dir or Path(datasets.config.HF_DATASETS_CACHE) / "ser-features")
    root.mkdir(parents=True, exist_ok=True)
    return root


def preprocess(
    records: list[dict],
    feature_extractor: SERFeatureExtractor,
    label2id: dict[str, int],
    cache_dir: str | None = None,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, int]:
    """Decodes, denoises and normalizes every clip once (cached on disk); returns the dataset and the failures.

    Columns: `input_values`, `length`, `label` (an id of `label2id`), `speaker`, `sex`, `corpus`, `path`, `sha1`.
    The cache holds the audio work only, keyed by the clips' bytes and the preprocessing settings: another label
    map or another speaker naming reuses it.
    """

    def prepare(record):
        try:
            wave = feature_extractor.process_waveform(load_audio(audio_source(record["audio"]), feature_extractor.sampling_rate))
        except AudioError as err:
            logger.warning("skipping %s: %s", _name(record["audio"]), err)
            return {"input_values": np.zeros(0, np.float32), "length": 0}
        return {"input_values": wave, "length": len(wave)}

    key = features_cache_key(records, feature_extractor)
    root = cache_root(cache_dir)
    cached = any(root.glob(f"features-{key}.arrow")) or any(root.glob(f"features-{key}_*.arrow"))  # one file, or num_proc shards
    audio = datasets.Dataset.from_dict({"sha1": [r["sha1"] for r in records]}).map(
        lambda row, i: prepare(records[i]),
        with_indices=True,
        cache_file_name=str(root / f"features-{key}.arrow"),
        new_fingerprint=key,
        num_proc=num_proc,
        writer_batch_size=ARROW_WRITER_BATCH_SIZE,
        desc="Decoding, denoising and normalizing audio",
        features=datasets.Features(
            {
                "sha1": datasets.Value("string"),
                "input_values": datasets.Sequence(datasets.Value("float32")),
                "length": datasets.Value("int64"),
            }
        ),
    )
    columns = {
        "path": [_name(r["audio"]) for r in records],
        "label": [label2id[r["label"]] for r in records],
        "speaker": [r["speaker"] or "" for r in records],
        "sex": [r["sex"] for r in records],
        "corpus": [r["corpus"] for r in records],
        "intensity": [r.get("intensity", "unknown") for r in records],
    }
    process = PartialState().process_index
    if cached:
        logger.info("features of %d clips read from the cache %s", len(records), root)
    elif process == 0:
        logger.info("decoded, denoised and normalized %d clips into the cache %s", len(records), root)
    else:  # the first process of the run preprocesses for all; another one only where it cannot see that cache
        logger.warning(
            "process %d decoded %d clips itself: the first process's cache was not there (is %s shared between "
            "the machines?)", process, len(records), root,
        )  # fmt: skip
    for name, values in columns.items():
        audio = audio.add_column(name, values)
    usable = audio.filter(lambda length: length > 0, input_columns="length")
    return usable, len(audio) - len(usable)


def label_counts(labels: list[int], names: list[str]) -> dict[str, int]:
    counts = Counter(labels)
    return {name: counts.get(i, 0) for i, name in enumerate(names)}
