"""Where training clips come from: corpus readers (RAVDESS, EmoDB), a generic manifest CSV, and any dataset that
`datasets.load_dataset` reads (a Hub id or a local audiofolder).

Every reader returns records with the same keys:

- `audio`: a file path, or an `ArrowAudio` reference to a row of a `datasets` dataset (its encoded bytes stay in
  the dataset's memory-mapped Arrow file until a clip is read: memory does not grow with the corpus);
- `label`: the label string as the corpus names it (mapped to model labels later, see `apply_label_map`);
- `speaker`: a string namespaced by corpus (`ravdess:07`, `emodb:03`), so that speakers of two corpora never merge;
- `sex`: `"male"`, `"female"` or `"unknown"` (splits balance sexes only where they are known);
- `corpus`: the corpus name, used for per-corpus metrics and leave-one-corpus-out splits.

Corpus knowledge (file-name codes, which actors are male) lives here, not in `modeling/`: a model knows only the
labels it was trained on.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from modeling.audio import AUDIO_EXTENSIONS

logger = logging.getLogger(__name__)

SEXES = ("male", "female")
# Rows that `datasets` holds before each write to an Arrow file (a source's conversion, the preprocessed audio, the
# stored held-out rows of a stream): this bounds the memory of every write; the default, 1,000 rows, is about 200 MB
# of decoded 3 s clips.
ARROW_WRITER_BATCH_SIZE = 64


class DataError(ValueError):
    """A data source that cannot be used as given; the message names the source and the problem."""


class ArrowAudio:
    """A clip of a `datasets` dataset, by row: `read()` gives its encoded bytes (or its path) when needed.

    The dataset is memory-mapped from its Arrow cache files, and pickles as their paths, so a list of these
    references costs a few bytes per clip in any process, however large the corpus."""

    __slots__ = ("dataset", "index", "name")

    def __init__(self, dataset, index: int, name: str):
        self.dataset, self.index, self.name = dataset, index, name

    def read(self) -> bytes | str:
        audio = self.dataset[self.index][self.dataset.column_names[0]]
        return audio["bytes"] if audio.get("bytes") else audio["path"]

    def __repr__(self) -> str:
        return f"ArrowAudio({self.name or self.index})"


def audio_source(audio) -> bytes | str:
    """What a record's `audio` holds, as `load_audio` takes it: a path or encoded bytes."""
    return audio.read() if isinstance(audio, ArrowAudio) else audio


# RAVDESS: modality-channel-emotion-intensity-statement-repetition-actor, e.g. 03-01-05-01-02-01-12.wav.
RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d\d)$")
# Emotion codes 01..08 in the order of the official file-name convention.
RAVDESS_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")

# EmoDB (Burkhardt et al. 2005): speaker, text code, emotion letter (German initial), version, e.g. 03a01Fa.wav.
EMODB_NAME = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])$")
EMODB_EMOTIONS = {
    "W": "angry",  # Ärger
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fearful",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
# The ten EmoDB speakers, from the corpus documentation.
EMODB_SEX = {
    "03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
    "12": "male", "13": "female", "14": "female", "15": "male", "16": "female",
}  # fmt: skip


def parse_ravdess_name(name: str) -> dict | None:
    """Label, speaker, sex and intensity from a RAVDESS file name, or None when the name is off the layout."""
    match = RAVDESS_NAME.match(Path(name).stem)
    if match is None:
        return None
    actor = match.group(7)
    return {
        "label": RAVDESS_EMOTIONS[int(match.group(3)) - 1],
        "speaker": f"ravdess:{actor}",
        "sex": "male" if int(actor) % 2 else "female",  # RAVDESS: odd-numbered actors are male
        "corpus": "ravdess",
        "intensity": "normal" if match.group(4) == "01" else "strong",
    }


def parse_emodb_name(name: str) -> dict | None:
    """Label, speaker and sex from an EmoDB file name, or None when the name is off the layout."""
    match = EMODB_NAME.match(Path(name).stem)
    if match is None or match.group(1) not in EMODB_SEX:
        return None
    speaker = match.group(1)
    return {
        "label": EMODB_EMOTIONS[match.group(3)],
        "speaker": f"emodb:{speaker}",
        "sex": EMODB_SEX[speaker],
        "corpus": "emodb",
        "intensity": "unknown",
    }


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _scan_named(root: str | os.PathLike, parse, flag: str, layout: str) -> tuple[list[dict], int]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{flag} {root}: no such folder ({Path(root).resolve()}; relative paths start from the folder the command runs in)")
    records, skipped = [], 0
    for path in _audio_files(root):
        info = parse(path.name)
        if info is None:
            logger.warning("skipping %s: the name is not in the layout %s", path, layout)
            skipped += 1
            continue
        records.append({"audio": str(path), **info})
    if not records:
        raise DataError(f"{flag} {root}: no audio files named in the layout {layout}; found nothing to train on")
    return records, skipped


def scan_ravdess_folder(data_dir: str | os.PathLike) -> tuple[list[dict], int]:
    """Records for every `Actor_XX/03-01-EE-II-SS-RR-AA.<audio ext>` file, and how many files were skipped."""
    return _scan_named(data_dir, parse_ravdess_name, "--data_dir", "Actor_XX/03-01-EE-II-SS-RR-AA.wav (RAVDESS)")


def scan_emodb_folder(emodb_dir: str | os.PathLike) -> tuple[list[dict], int]:
    """Records for every EmoDB file (`03a01Fa.wav`: speaker, text, emotion letter, version), in any subfolder."""
    return _scan_named(emodb_dir, parse_emodb_name, "--emodb_dir", "SSTTTEV.wav, e.g. 03a01Fa.wav (EmoDB)")


def read_manifest(csv_path: str | os.PathLike) -> list[dict]:
    """Records from a CSV with columns `path,label,speaker[,sex]`; paths are relative to the CSV's folder.

    The corpus is named after the CSV's folder; speakers are namespaced with it.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"--manifest {csv_path}: no such file ({Path(csv_path).resolve()})")
    corpus = csv_path.resolve().parent.name or csv_path.stem
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"--manifest {csv_path}: not a readable CSV ({err})") from None
    missing = {"path", "label", "speaker"} - set(rows[0].keys() if rows else ())
    if missing:
        raise DataError(f"--manifest {csv_path}: needs the columns path,label,speaker[,sex]; missing {sorted(missing)}")
    records = []
    for line, row in enumerate(rows, start=2):
        path = csv_path.parent / row["path"]
        if not path.is_file():
            raise DataError(f"--manifest {csv_path}, line {line}: {row['path']}: no such file (relative to the CSV)")
        if not (row["label"] or "").strip() or not (row["speaker"] or "").strip():
            raise DataError(f"--manifest {csv_path}, line {line}: empty label or speaker")
        records.append(
            {
                "audio": str(path),
                "label": row["label"].strip(),
                "speaker": f"{corpus}:{row['speaker'].strip()}",
                "sex": _sex(row.get("sex"), f"--manifest {csv_path}, line {line}"),
                "corpus": corpus,
                "intensity": "unknown",
            }
        )
    if not records:
        raise DataError(f"--manifest {csv_path}: no rows")
    return records


def _sex(value, where: str) -> str:
    value = "" if value is None else str(value).strip().lower()
    value = {"m": "male", "f": "female"}.get(value, value)
    if value in ("", "unknown", "none", "nan"):
        return "unknown"
    if value not in SEXES:
        raise DataError(f"{where}: sex must be male, female or empty, got {value!r}")
    return value


def load_hub_records(
    dataset_name: str,
    config_name: str | None,
    split: str,
    audio_column: str,
    label_column: str,
    speaker_column: str,
    sex_column: str | None = None,
    cache_dir: str | None = None,
) -> tuple[list[dict], list[str] | None]:
    """Records from any dataset `datasets.load_dataset` reads (a Hub id, a local parquet folder or an
    audiofolder with a `metadata.csv`), and the label names when the label column is a `ClassLabel`."""
    import datasets

    try:
        dataset = datasets.load_dataset(
            dataset_name, config_name, split=split, cache_dir=cache_dir, writer_batch_size=ARROW_WRITER_BATCH_SIZE
        )
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as err:
        raise DataError(f"--dataset_name {dataset_name}: could not be loaded ({type(err).__name__}: {err})") from None
    dataset = encoded_audio(dataset, dataset_name, audio_column, label_column)
    return records_of_dataset(dataset, dataset_name, audio_column, label_column, speaker_column, sex_column)


def encoded_audio(dataset, dataset_name: str, audio_column: str, label_column: str):
    """`dataset` (map-style or streamed) with its audio column left encoded: decoding is ours (one path for every
    entry point); refuses a dataset without the audio or label column."""
    import datasets

    for flag, column in (("--audio_column_name", audio_column), ("--label_column_name", label_column)):
        if column not in (dataset.column_names or ()):
            raise DataError(f"--dataset_name {dataset_name}: no column {column!r} ({flag}); columns are {dataset.column_names}")
    try:
        return dataset.cast_column(audio_column, datasets.Audio(decode=False))
    except (ValueError, TypeError) as err:
        raise DataError(
            f"--dataset_name {dataset_name}: column {audio_column!r} does not hold audio "
            f"({dataset.features[audio_column]}: {err})"
        ) from None


def class_label_names(dataset, label_column: str) -> list[str] | None:
    import datasets

    feature = (dataset.features or {}).get(label_column)
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def corpus_name(dataset_name: str) -> str:
    return Path(dataset_name.rstrip("/")).name.lower() or "dataset"


def row_record(row: dict, index: int, file_name: str, names: list[str] | None, corpus: str, label_column: str,
               speaker_column: str, sex_column: str | None, where: str) -> dict | None:
    """A dataset row's record fields (all but `audio`), or None for a row without a label (`ClassLabel`'s -1).

    The speaker comes from `speaker_column`, namespaced by corpus, or else from a RAVDESS file name."""
    raw_label = row[label_column]
    if names is not None and raw_label is not None and raw_label < 0:
        return None
    if raw_label is None:
        raise DataError(f"{where}, row {index}: no label")
    info = parse_ravdess_name(file_name) or {}  # RAVDESS mirrors: speaker and sex from the file name
    if row.get(speaker_column) not in (None, ""):
        speaker = f"{corpus}:{row[speaker_column]}"
    elif info:
        speaker = info["speaker"]
    else:
        speaker = None  # only usable with --split random
    return {
        "label": names[raw_label] if names else str(raw_label),
        "speaker": speaker,
        "sex": _sex(row.get(sex_column) if sex_column else info.get("sex"), f"{where}, row {index}"),
        "corpus": corpus,
        "intensity": info.get("intensity", "unknown"),
    }  # fmt: skip


def records_of_dataset(
    dataset, dataset_name: str, audio_column: str, label_column: str, speaker_column: str, sex_column: str | None
) -> tuple[list[dict], list[str] | None]:
    """Records pointing at the rows of a map-style dataset whose audio column is encoded (`encoded_audio`)."""
    import pyarrow.compute as pc

    names = class_label_names(dataset, label_column)
    corpus = corpus_name(dataset_name)
    # The rows are read without their audio (only its file name), and each record points at its row: the encoded
    # bytes stay in the memory-mapped Arrow files until a clip is decoded.
    audio_only = dataset.select_columns([audio_column])
    # Chunk by chunk: a struct's field is a view, where combining the chunks would copy every clip's bytes.
    file_names = [
        os.path.basename(p or "")
        for chunk in dataset.data.column(audio_column).chunks
        for p in pc.struct_field(chunk, "path").to_pylist()
    ]
    meta_columns = [c for c in dict.fromkeys([label_column, speaker_column, sex_column]) if c and c in dataset.column_names]
    meta = dataset.select_columns(meta_columns)
    records, unlabelled = [], 0
    for index, row in enumerate(meta):
        fields = row_record(row, index, file_names[index], names, corpus, label_column, speaker_column, sex_column,
                            f"--dataset_name {dataset_name}")  # fmt: skip
        if fields is None:
            unlabelled += 1
            continue
        records.append({"audio": ArrowAudio(audio_only, index, file_names[index]), **fields})
    if unlabelled:
        logger.warning("--dataset_name %s: skipped %d rows without a label", dataset_name, unlabelled)
    if not records:
        raise DataError(f"--dataset_name {dataset_name}: no labelled rows")
    return records, names


def read_label_map(value: str | None) -> dict[str, str | None]:
    """`--label_map`: inline JSON, or a JSON/YAML file, mapping raw labels to model labels (`null` drops one)."""
    if not value:
        return {}
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise DataError(f"--label_map {value}: no such file (give a JSON/YAML file or inline JSON)")
        text = path.read_text(encoding="utf-8")
    try:
        mapping = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as err:
        raise DataError(f"--label_map {value}: not valid JSON/YAML ({err})") from None
    if not isinstance(mapping, dict) or not all(v is None or isinstance(v, str) for v in mapping.values()):
        raise DataError(f"--label_map {value}: must map label names to label names or null, got {json.dumps(mapping)[:200]}")
    return {str(k): v for k, v in mapping.items()}


def apply_label_map(records: list[dict], mapping: dict[str, str | None]) -> tuple[list[dict], dict[str, int]]:
    """Renames labels through `mapping` (labels not in it are kept as they are); drops those mapped to null.
    Returns the kept records and how many clips of each raw label were dropped."""
    unused = set(mapping) - {r["label"] for r in records}
    if unused:
        logger.warning("--label_map names labels that no clip has: %s", sorted(unused))
    kept, dropped = [], {}
    for record in records:
        label = mapping.get(record["label"], record["label"])
        if label is None:
            dropped[record["label"]] = dropped.get(record["label"], 0) + 1
            continue
        kept.append({**record, "label": label})
    if dropped:
        logger.info("labels dropped through --label_map: %s", dropped)
    return kept, dropped


def label_names(records: Iterable[dict], class_label_names: list[str] | None = None) -> list[str]:
    """The model's label list: a `ClassLabel`'s own order when the data has one and every label is in it,
    otherwise the sorted distinct label strings (as transformers' audio-classification example does)."""
    present = {r["label"] for r in records}
    if class_label_names and present <= set(class_label_names):
        return [n for n in class_label_names if n in present]
    return sorted(present)
