"""`--streaming`: a dataset read as a stream (`datasets.IterableDataset`), for corpora larger than the disk.

Nothing of the corpus is stored but its validation and test speakers:

1. one pass over the stream's label, speaker and sex columns gives the speakers, and the same speaker-disjoint
   split as the map-style path draws from them (from parquet, such as Hub datasets, with a speaker column, only
   those columns are read; where speakers or sexes come from RAVDESS file names, the rows are read whole once);
2. the validation and test speakers' rows, with their encoded audio (read from the Hub where the dataset is a
   folder of audio files; local files are kept as paths), are written to one Arrow file in the preprocessing cache
   and then go through the map-style path (duplicate check, preprocessing, evaluation as usual);
3. training reads the training speakers' rows from the stream, shuffled in a buffer and decoded on the fly, for
   `--max_steps` steps (`Trainer` starts the stream again, reshuffled, when it ends), in one process.

The run's counts (`clips`, label counts, training clips) are those of the stream's rows, before the duplicate check
and decoding, which the stored validation and test parts go through.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from datasets.arrow_writer import ArrowWriter

from modeling import AudioError, SERFeatureExtractor, load_audio
from serving.files import atomic_path

from .args import DataArguments
from .data import cache_root, drop_duplicates, preprocess
from .sources import (
    ARROW_WRITER_BATCH_SIZE,
    DataError,
    apply_label_map,
    class_label_names,
    corpus_name,
    encoded_audio,
    label_names,
    parse_ravdess_name,
    read_label_map,
    records_of_dataset,
    row_record,
)
from .splits import Split

logger = logging.getLogger(__name__)


def open_stream(data_args: DataArguments, columns: list[str] | None = None) -> datasets.IterableDataset:
    """The dataset as a stream with its audio left encoded; with `columns`, only those (parquet reads only them)."""
    kwargs = {} if columns is None else {"columns": columns}
    try:
        stream = datasets.load_dataset(
            data_args.dataset_name, data_args.dataset_config_name, split=data_args.dataset_split, streaming=True, **kwargs
        )
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as err:
        if columns is not None:
            raise  # the caller reads whole rows instead
        raise DataError(f"--dataset_name {data_args.dataset_name}: could not be loaded ({type(err).__name__}: {err})") from None
    if stream.features is None:  # builders that know their columns only once they read (JSON lines)
        stream = stream._resolve_features()
    if columns is not None:
        return stream
    return encoded_audio(stream, data_args.dataset_name, data_args.audio_column_name, data_args.label_column_name)


def encoded(audio: dict) -> bytes | str:
    """A streamed clip's encoded bytes, or the path of a local file. A dataset of audio files on the Hub streams
    their remote paths: those are read here."""
    if audio.get("bytes"):
        return audio["bytes"]
    path = audio.get("path") or ""
    if os.path.isfile(path):
        return path
    from datasets.utils.file_utils import xopen

    with xopen(path, "rb") as f:
        return f.read()


def _fields(row: dict, index: int, data_args: DataArguments, names, corpus: str) -> dict | None:
    audio = row.get(data_args.audio_column_name) or {}
    file_name = os.path.basename(audio.get("path") or "")
    return row_record(
        row, index, file_name, names, corpus, data_args.label_column_name, data_args.actor_column_name,
        data_args.sex_column_name, f"--dataset_name {data_args.dataset_name}",
    )  # fmt: skip


def stream_metadata(data_args: DataArguments) -> tuple[list[dict], list[str] | None]:
    """Every row's record fields but its audio (label, speaker, sex, corpus), in the stream's order."""
    wanted = [data_args.label_column_name, data_args.actor_column_name, data_args.sex_column_name]
    wanted = [c for c in dict.fromkeys(wanted) if c]
    full = open_stream(data_args)
    names = class_label_names(full, data_args.label_column_name)
    stream = full
    # Speakers and sexes come from their columns, or else from RAVDESS file names, which are in the audio column: the
    # first row's file name says whether those are needed.
    first = next(iter(full), None)
    path = ((first or {}).get(data_args.audio_column_name) or {}).get("path") or ""
    from_names = not data_args.sex_column_name and parse_ravdess_name(os.path.basename(path)) is not None
    if data_args.actor_column_name in (full.column_names or ()) and not from_names:
        try:  # the metadata columns alone: a parquet source reads nothing else (no audio)
            stream = open_stream(data_args, [c for c in wanted if c in full.column_names])
        except (ValueError, TypeError):
            stream = full  # a source that reads whole rows (audiofolder): the audio is read, not kept
    corpus = corpus_name(data_args.dataset_name)
    rows = []
    for index, row in enumerate(stream):
        fields = _fields(row, index, data_args, names, corpus)
        rows.append(fields)  # None for a row without a label, so that indices stay the stream's
    if not any(rows):
        raise DataError(f"--dataset_name {data_args.dataset_name}: no labelled rows")
    return rows, names


def local_files(dataset_name: str) -> list | None:
    """Name, size and modification time of every file of a local dataset (None for a Hub id)."""
    root = Path(dataset_name)
    if not root.exists():
        return None
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [(str(p.relative_to(root.parent)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


@dataclass
class StreamedData:
    """What train.py needs of a streamed dataset: the labels, the split (its validation and test rows index
    `features`), the preprocessed validation and test clips, the training stream, and a summary of all rows."""

    labels: list[str]
    info: dict
    split: Split
    features: datasets.Dataset
    undecodable: int
    train: datasets.IterableDataset
    train_labels: np.ndarray
    summary: datasets.Dataset


def prepare_streaming(
    data_args: DataArguments, feature_extractor: SERFeatureExtractor, seed: int, make_splits
) -> StreamedData:
    """The streamed dataset's split, its materialized validation and test parts, and its training stream."""
    rows, class_names = stream_metadata(data_args)
    label_map = read_label_map(data_args.label_map)
    present = [(i, r) for i, r in enumerate(rows) if r is not None]
    mapped, labels_dropped = apply_label_map([r for _, r in present], label_map)
    indices = [i for i, r in present if label_map.get(r["label"], r["label"]) is not None]  # of `mapped`, in the stream
    if not mapped:
        raise DataError("--label_map dropped every clip")
    labels = label_names(mapped, class_names)
    if len(labels) < 2:
        raise DataError(f"the data has a single label {labels}: a classifier needs at least two")
    label2id = {label: i for i, label in enumerate(labels)}
    summary = datasets.Dataset.from_dict(
        {
            "label": [label2id[r["label"]] for r in mapped],
            "speaker": [r["speaker"] or "" for r in mapped],
            "sex": [r["sex"] for r in mapped],
            "corpus": [r["corpus"] for r in mapped],
        }
    )
    split = make_splits(summary, data_args, seed)[0]
    speakers = {part: set(split.actors[part]) for part in ("validation", "test")}
    held_out = speakers["validation"] | speakers["test"]

    # The held-out speakers' rows, written once to the cache as they come (encoded audio and metadata). The file is
    # named after the rows it holds and their metadata (label map included), and, for a local dataset, its files'
    # sizes and times: another selection, relabelled rows or changed files make another one.
    stream = open_stream(data_args)
    wanted = {index: record for index, record in zip(indices, mapped) if record["speaker"] in held_out}
    key = hashlib.sha1(
        json.dumps(
            [data_args.dataset_name, data_args.dataset_config_name, data_args.dataset_split, data_args.audio_column_name,
             sorted(wanted.items()), local_files(data_args.dataset_name)], sort_keys=True,
        ).encode()
    ).hexdigest()[:16]  # fmt: skip
    path = cache_root(data_args.preprocessing_cache_dir) / f"streamed-heldout-{key}.arrow"
    if not path.exists():
        audio_column = data_args.audio_column_name
        with atomic_path(path) as tmp, ArrowWriter(
            features=stream.features, path=str(tmp), writer_batch_size=ARROW_WRITER_BATCH_SIZE
        ) as writer:
            for index, row in enumerate(stream):
                if index in wanted:
                    source = encoded(row[audio_column])  # a remote file's bytes are read now: the file is the copy
                    if isinstance(source, bytes):
                        row = {**row, audio_column: {"bytes": source, "path": row[audio_column].get("path")}}
                    writer.write(row)
            writer.finalize()
    held = datasets.Dataset.from_file(str(path))
    records, _ = records_of_dataset(
        held, data_args.dataset_name, data_args.audio_column_name, data_args.label_column_name,
        data_args.actor_column_name, data_args.sex_column_name,
    )  # fmt: skip
    records, _ = apply_label_map(records, label_map)
    records, duplicates = drop_duplicates(records)
    features, undecodable = preprocess(
        records, feature_extractor, label2id, data_args.preprocessing_cache_dir, data_args.preprocessing_num_workers
    )
    part_of = np.asarray(features["speaker"], dtype=object)
    streamed_split = Split(
        kind=split.kind,
        train=split.train,  # rows of `summary`: the training stream's
        # The held-out parts are rows of `features`, the training part rows of `summary` (what the stream holds).
        validation=[int(i) for i in np.flatnonzero(np.isin(part_of, sorted(speakers["validation"])))],
        test=[int(i) for i in np.flatnonzero(np.isin(part_of, sorted(speakers["test"])))],
        seed=split.seed,
        actors=split.actors,
        test_corpus=split.test_corpus,
    )
    train_speakers = set(split.actors["train"])
    train = training_stream(data_args, names=class_names, label_map=label_map, label2id=label2id,
                            speakers=train_speakers, feature_extractor=feature_extractor, seed=seed)  # fmt: skip
    info = {
        "dataset": f"{corpus_name(data_args.dataset_name)} (datasets, streamed: {data_args.dataset_name})",
        "sources": [{"corpus": corpus_name(data_args.dataset_name), "reader": f"datasets, streamed: {data_args.dataset_name}",
                     "clips": len(mapped), "skipped_names": 0}],  # fmt: skip
        "corpora": [corpus_name(data_args.dataset_name)],
        "hub_dataset": data_args.dataset_name if not os.path.exists(data_args.dataset_name) else None,
        "duplicates_dropped": duplicates,
        "skipped_names": 0,
        "labels_dropped": labels_dropped,
        "label_map": label_map or None,
        "streaming": "training speakers read as a stream; validation and test speakers written to the cache "
        "(byte-identical duplicates are dropped there only)",
    }
    train_labels = np.asarray(summary.select(split.train)["label"])
    return StreamedData(labels, info, streamed_split, features, undecodable, train, train_labels, summary)


def training_stream(
    data_args: DataArguments,
    names: list[str] | None,
    label_map: dict,
    label2id: dict[str, int],
    speakers: set[str],
    feature_extractor: SERFeatureExtractor,
    seed: int,
) -> datasets.IterableDataset:
    """The training speakers' clips, shuffled in a buffer (anew each epoch), decoded and preprocessed on the fly
    with the one preprocessing path; clips that cannot be decoded are skipped with a warning."""
    corpus = corpus_name(data_args.dataset_name)
    stream = open_stream(data_args)

    def label_of(row) -> str | None:
        fields = _fields(row, -1, data_args, names, corpus)
        if fields is None or fields["speaker"] not in speakers:
            return None
        return label_map.get(fields["label"], fields["label"])

    def prepare(row):
        label = label_of(row)
        audio = row[data_args.audio_column_name]
        try:
            wave = feature_extractor.process_waveform(load_audio(encoded(audio), feature_extractor.sampling_rate))
        except (AudioError, OSError) as err:
            logger.warning("skipping %s: %s", audio.get("path"), err)
            wave = np.zeros(0, np.float32)
        return {"input_values": wave, "length": len(wave), "label": label2id[label]}

    stream = stream.filter(lambda row: label_of(row) is not None)
    stream = stream.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
    stream = stream.map(
        prepare,
        remove_columns=stream.column_names,
        features=datasets.Features(
            {
                "input_values": datasets.Sequence(datasets.Value("float32")),
                "length": datasets.Value("int64"),
                "label": datasets.Value("int64"),
            }
        ),
    )
    return stream.filter(lambda row: row["length"] > 0)
