#!/usr/bin/env python
"""Classify many audio files: folders are searched recursively, results go to one CSV.

    python predict.py clips/ more.wav --model checkpoints/ge2e-ravdess-emodb --out results.csv --batch_size 16
    python predict.py speakers/ --speaker_from folder --out results.csv   # each folder one voice, adapted to it
    torchrun --nproc_per_node 2 predict.py clips/ --out results.csv            # 2 processes (CPU or GPUs)
    accelerate launch --multi_gpu --num_processes 2 predict.py clips/ --out results.csv

Each file is decoded, checked for speech and denoised in a worker process (`--workers` per process) with a
memory limit (`--worker_memory_gb`) and a time limit (`--file_timeout_s`): a file that crashes, hangs or exhausts
a decoder gets an error row and the run goes on. Files are sorted by length and batched with others of similar
length; files longer than the model's window (`window_s` in its preprocessor config) are classified by their
speech segments, exactly as the pipeline and the demo do (all go through `SERClassifier`). Under `torchrun` or
`accelerate launch` the files are split across the processes (one per GPU, or CPU processes), which append to the
same CSV.

Columns: path, label, score, uncertain (true when the score is below the model's `uncertainty_threshold`, 0.5
unless its config says otherwise), one probability per label of the model (its `id2label`; with --labels, only
those, renormalized over them), duration_s, the input-quality report of the speech (snr_db, bandwidth_hz,
clipping_ratio, level_dbfs, and quality_note when the input lies outside the conditions the model was trained and
measured on: telephone band, noise, clipping, a very low level), speaker, adapted, profile_clips, adaptation,
error.

Speaker adaptation (models trained with it): with `--speaker_from folder` (each file's parent folder is one
speaker) or `--speaker_from speakers.csv` (columns path,speaker; paths relative to the CSV), the files of a speaker
are classified together, relative to a profile of all of that speaker's files (`adapted` true, `profile_clips` the
clips or speech segments it holds; a profile of too few varied clips to act leaves `adapted` false); a speaker
with a single short file is classified without one. A long recording
without a speaker adapts to its own speech segments unless `--no_self_adapt`; `adaptation` says which was used.
Rows are appended as files are done, so a killed run loses only the files in flight, and a later run with the
same --out skips the files already in the CSV (--retry_errors tries the failed ones again). --timeline adds a JSON
line per classified piece of each file: its speech segments (long files) or the whole file (one window or less).
Audio without speech gets an error row ("no speech found"). Exit code: 0, or 1
when every file failed; an error that is not a file's fault stops the run with a traceback. Models other than
this project's are refused at start.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import soundfile as sf
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from tqdm.auto import tqdm

import csv

from modeling import AudioError, Prediction, SERClassifier
from modeling.audio import AUDIO_EXTENSIONS
from modeling.inference import check_candidate_labels
from modeling.profile import ProfileError
from serving.batch import Decoded, DecoderPool, ResultsCSV, TimelineJSONL
from serving.loading import ModelError, load_classifier, resolve_model_path

DEFAULT_MODEL = str(Path(__file__).resolve().parent / "checkpoints" / "ge2e-ravdess-emodb")


# The input-quality report (modeling/quality.py): estimated SNR, effective bandwidth, clipping and level of the
# speech, and a note when the input lies outside the conditions the model was trained and measured on.
QUALITY_COLUMNS = ["snr_db", "bandwidth_hz", "clipping_ratio", "level_dbfs", "quality_note"]


def columns(labels: list[str]) -> list[str]:
    """The CSV header: one probability column per label of the model, in its `id2label` order."""
    return ["path", "label", "score", "uncertain", *labels, "duration_s", *QUALITY_COLUMNS, *ADAPTATION_COLUMNS, "error"]


# Speaker adaptation: the speaker a file was grouped under, whether it was classified relative to a speaker profile,
# how many clips (or speech segments) that profile holds, and which profile (a speaker's files, or the recording's own).
ADAPTATION_COLUMNS = ["speaker", "adapted", "profile_clips", "adaptation"]


def assign_speakers(files: list[str], speaker_from: str | None) -> dict[str, str]:
    """The speaker of each file: its parent folder (`folder`), or the `speaker` column of a CSV of path,speaker
    (paths relative to the CSV). Files without one are left out."""
    if not speaker_from:
        return {}
    if speaker_from == "folder":
        return {f: str(Path(f).resolve().parent) for f in files}
    table = Path(speaker_from)
    try:
        with open(table, newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's byte-order mark
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError) as err:
        raise SystemExit(f"predict.py: --speaker_from {speaker_from}: {err}") from None
    if not rows or not {"path", "speaker"} <= set(rows[0]):
        raise SystemExit(f"predict.py: --speaker_from {speaker_from} needs the columns path,speaker")
    by_path = {str((table.parent / r["path"]).resolve()): r["speaker"] for r in rows if r.get("path") and r.get("speaker")}
    speakers = {f: by_path[str(Path(f).resolve())] for f in files if str(Path(f).resolve()) in by_path}
    if not speakers:
        raise SystemExit(
            f"predict.py: --speaker_from {speaker_from}: none of its paths is one of the files given (paths are "
            "relative to the CSV's folder)"
        )
    if len(speakers) < len(files):
        print(f"{len(files) - len(speakers)} files are not in {speaker_from}: classified without a speaker", file=sys.stderr)
    return speakers


def find_audio(paths: list[str]) -> tuple[list[str], int]:
    """Audio files named or found under folders, and how many other files the folder scans passed over."""
    found, skipped = [], 0
    for path in map(Path, paths):
        if path.is_dir():
            for p in sorted(q for q in path.rglob("*") if q.is_file()):
                if p.suffix.lower() in AUDIO_EXTENSIONS:
                    found.append(str(p))
                else:
                    skipped += 1
        else:
            found.append(str(path))  # anything named explicitly is tried, and reported if it is not audio
    return list(dict.fromkeys(found)), skipped


def header_duration(path: str) -> float:
    """Duration from the file header when libsndfile can read it (cheap); otherwise 0 (sorted first)."""
    if not os.path.isfile(path):  # a pipe or device is never opened here: it could block
        return 0.0
    try:
        return sf.info(path).duration
    except Exception:
        return 0.0


def result_row(path: str, prediction: Prediction, speaker: str = "", profile_clips: int = 0) -> dict:
    adapted = prediction.adaptation_weight > 0  # a profile too small to act leaves the answer unadapted
    if prediction.adaptation is not None and not profile_clips:  # the recording's own pieces
        profile_clips = len(prediction.timeline())
    return {
        "path": path,
        "label": prediction.label,
        "score": f"{prediction.score:.6f}",
        "uncertain": str(prediction.uncertain).lower(),  # the model's uncertainty_threshold
        **{name: f"{p:.6f}" for name, p in prediction.scores.items()},
        "duration_s": f"{prediction.duration_s:.3f}",
        **quality_cells(prediction.quality),
        "speaker": speaker,
        "adapted": str(adapted).lower(),
        "profile_clips": str(profile_clips if adapted else 0),
        "adaptation": prediction.adaptation or "",
        "error": "",
    }


def quality_cells(quality) -> dict:
    if quality is None:
        return {}
    return {
        "snr_db": f"{quality.snr_db:.1f}",
        "bandwidth_hz": f"{quality.bandwidth_hz:.0f}",
        "clipping_ratio": f"{quality.clipping_ratio:.5f}",
        "level_dbfs": f"{quality.level_dbfs:.1f}",
        "quality_note": "; ".join(quality.notes),
    }


def error_row(path: str, error: str, speaker: str = "") -> dict:
    return {"path": path, "speaker": speaker, "error": error}  # the other columns are written empty


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("paths", nargs="+", help="audio files and folders")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model folder or Hub id")
    parser.add_argument("--out", default="results.csv", help="CSV to write (and to resume from)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--dtype", choices=["fp32", "int8"], default="fp32", help="int8: quantized Linear layers (CPU)")
    parser.add_argument("--workers", type=int, default=2, help="decoder processes (per process of a distributed run)")
    parser.add_argument("--file_timeout_s", type=float, default=600.0, help="give up a file whose decoding takes longer")
    parser.add_argument(
        "--worker_memory_gb", type=float, default=8.0, help="memory each decoder process may use for audio (0: no limit)"
    )
    parser.add_argument("--retry_errors", action="store_true", help="classify again the files with an error row")
    parser.add_argument(
        "--timeline", default=None, help="also write a JSON line per speech segment (or window) of each file to this file"
    )
    parser.add_argument(
        "--labels", default=None, help="comma-separated subset of the model's labels: answers renormalized over them"
    )
    parser.add_argument(
        "--speaker_from",
        default=None,
        help="'folder' (each parent folder is one speaker) or a CSV of path,speaker: adapt to each speaker's files",
    )
    parser.add_argument(
        "--no_self_adapt", action="store_true", help="do not adapt a long recording to its own speech segments"
    )
    return parser.parse_args(argv)


def classify(
    classifier: SERClassifier,
    decoded,
    store: ResultsCSV,
    batch_size: int,
    progress,
    timeline=None,
    labels=None,
    self_adapt: bool = True,
) -> None:
    """Classifies files as their workers deliver them: short ones `batch_size` at a time, long ones (and errors)
    at once, so that no more than a batch of short clips waits in memory. Rows reach the CSV after each batch, and
    the timeline lines of a file before its row."""
    batch: list[Decoded] = []
    for item in decoded:
        if item.features is None:  # a long file or an error
            classify_group(classifier, [item], store, progress, timeline, labels, self_adapt=self_adapt)
            continue
        batch.append(item)
        if len(batch) == batch_size:
            classify_group(classifier, batch, store, progress, timeline, labels, self_adapt=self_adapt)
            batch = []
    if batch:
        classify_group(classifier, batch, store, progress, timeline, labels, self_adapt=self_adapt)


def classify_group(
    classifier: SERClassifier, items: list[Decoded], store: ResultsCSV, progress, timeline=None, labels=None,
    speaker: str = "", profile=None, self_adapt: bool = True,
) -> None:  # fmt: skip
    """Classifies decoded files together (relative to `profile` when given) and appends their rows."""
    ready = [d for d in items if d.error is None]
    results = classifier.classify_batch(
        [d.wave for d in ready], [os.path.basename(d.path) for d in ready], labels,
        features=[d.features for d in ready], segments=[d.segments for d in ready],
        qualities=[d.quality for d in ready], profile=profile, self_adapt=self_adapt,
    )  # fmt: skip
    by_path = dict(zip((d.path for d in ready), results))
    rows = []
    for d in items:
        result = by_path.get(d.path, d.error)
        if isinstance(result, Prediction):
            if timeline:
                timeline.append(d.path, result.timeline())
            rows.append(result_row(d.path, result, speaker, profile.num_clips if profile is not None else 0))
        else:
            rows.append(error_row(d.path, str(result), speaker))
    store.append(rows)
    progress.update(len(items))


def classify_speakers(
    classifier: SERClassifier, pool: DecoderPool, groups: dict[str, list[str]], done: set[str], store: ResultsCSV,
    progress, timeline=None, labels=None, self_adapt: bool = True,
) -> None:  # fmt: skip
    """Each speaker's files decoded together, a profile built from all of them (those a resumed run already
    classified too, so that every file of a speaker gets the same profile), then the files not yet done classified
    relative to it. A speaker whose files give too few clips for a profile is classified without one. A speaker's
    decoded files are held in memory together."""
    for speaker, paths in groups.items():
        if all(p in done for p in paths):
            continue
        items = list(pool.map(paths))
        ready = [d for d in items if d.error is None]
        profile = None
        if ready and classifier.adapts_to_speakers:
            try:
                profile = classifier.build_profile(
                    [d.wave for d in ready], [os.path.basename(d.path) for d in ready], segments=[d.segments for d in ready]
                )
            except (ProfileError, AudioError) as err:  # too few clips: the speaker's files go on unadapted
                print(f"speaker {speaker}: not adapted ({err})", file=sys.stderr)
        todo = [d for d in items if d.path not in done]
        classify_group(classifier, todo, store, progress, timeline, labels, speaker, profile, self_adapt)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workers < 1 or args.batch_size < 1 or not args.file_timeout_s > 0 or args.worker_memory_gb < 0:
        raise SystemExit(
            "predict.py: --workers and --batch_size must be at least 1, --file_timeout_s positive, "
            "--worker_memory_gb not negative"
        )
    files, skipped = find_audio(args.paths)
    if skipped:
        print(f"skipped {skipped} files without an audio extension ({' '.join(sorted(AUDIO_EXTENSIONS))})", file=sys.stderr)
    if not files:
        raise SystemExit(f"no audio files in {' '.join(args.paths)}: nothing to classify, {args.out} not written")

    try:
        args.model = resolve_model_path(args.model)
    except ModelError as err:
        raise SystemExit(f"predict.py: {err}") from None
    # torchrun and `accelerate launch` set the process group up through the environment; alone, one process. It
    # only coordinates the processes (gloo, on CPU): each picks its device below, so that several processes can
    # share one GPU. The long timeout: processes wait for each other at the end, after shares that may differ
    # by hours.
    state = PartialState(cpu=True, timeout=datetime.timedelta(hours=24))
    if args.dtype == "int8" or not torch.cuda.is_available():
        device = torch.device("cpu")
    else:
        device = torch.device("cuda", state.local_process_index % torch.cuda.device_count())
    try:
        classifier = load_classifier(args.model, device=device, dtype=args.dtype)
        labels = check_candidate_labels(classifier.labels, args.labels) or classifier.labels
    except (ModelError, ValueError) as err:
        raise SystemExit(f"predict.py: {err}") from None
    speakers = assign_speakers(files, args.speaker_from)
    if args.speaker_from and not classifier.adapts_to_speakers:
        raise SystemExit(f"predict.py: {args.model} was trained without speaker adaptation: --speaker_from needs a model that has it")
    header = columns(labels)
    if len(set(header)) != len(header):
        raise SystemExit(f"{args.model}: a label is named like a CSV column ({labels}); rename it in the model's config")
    robustness = getattr(classifier.model.config, "robustness", None)
    with DecoderPool(
        classifier.feature_extractor, args.workers, args.file_timeout_s, args.worker_memory_gb or None, robustness=robustness
    ) as pool:
        store = ResultsCSV(args.out, header)
        timeline = TimelineJSONL(args.timeline) if args.timeline else None
        with state.main_process_first():
            if state.is_main_process:
                store.repair(retry_errors=args.retry_errors)
            done = {r["path"]: r["error"] for r in store.rows()}
            if state.is_main_process and timeline:
                timeline.repair(set(done))
        # The first process sorts the files by length and hands the list to the others, which take every n-th
        # file (every n-th speaker with --speaker_from): shares of similar length, and the same list everywhere even
        # if a header read fails in one.
        if state.is_main_process:
            files.sort(key=lambda p: (header_duration(p), p))
        if state.num_processes > 1:
            shared = [files]
            broadcast_object_list(shared)
            files = shared[0]
        if speakers:
            order = list(dict.fromkeys(speakers.get(p, p) for p in files))
            mine = set(order[state.process_index :: state.num_processes])
            my_files = [p for p in files if speakers.get(p, p) in mine]
            todo = [p for p in my_files if p not in done]
        else:
            todo = [p for p in files[state.process_index :: state.num_processes] if p not in done]
        if state.is_main_process and done:
            failed = sum(1 for p in files if done.get(p))
            print(
                f"resuming: {sum(p in done for p in files)} files already in {args.out}"
                + (f" ({failed} with errors; --retry_errors tries them again)" if failed else ""),
                file=sys.stderr,
            )
        progress = tqdm(total=len(todo), unit="file", desc="Classifying", disable=not state.is_local_main_process)
        if speakers:
            groups: dict[str, list[str]] = {}
            for path in my_files:
                groups.setdefault(speakers.get(path, ""), []).append(path)
            alone = [p for p in groups.pop("", []) if p not in done]  # files without a speaker
            classify_speakers(
                classifier, pool, groups, set(done), store, progress, timeline, args.labels and labels, not args.no_self_adapt
            )
            todo = alone
        classify(classifier, pool.map(todo), store, args.batch_size, progress, timeline, args.labels and labels, not args.no_self_adapt)
        progress.close()

    state.wait_for_everyone()
    rows = {r["path"]: r for r in store.rows()}
    errors = sum(1 for p in files if rows.get(p, {}).get("error"))
    if state.is_main_process:
        print(f"{len(files)} files in {args.out} ({errors} with errors)", file=sys.stderr)
    return 1 if errors == len(files) else 0  # nothing classified: a failed run for scripts


if __name__ == "__main__":
    sys.exit(main())
