#!/usr/bin/env python
"""Classify many audio files: folders are searched recursively, results go to a CSV.

    python predict.py clips/ more.wav --model checkpoints/tiny-ravdess-emodb --out results.csv --batch_size 16

Files are sorted by length and batched with others of similar length (little padding); decoding and
denoising run in background threads while the model works. Files longer than the model's window
(`window_s` in its preprocessor config) are classified in windows, exactly as the pipeline and the demo do.
Columns: path, label, score, one probability per label of the model, duration_s, error. The run is resumable:
files already in the CSV are skipped. A file that cannot be used gets a row with its error, and the run goes
on; the exit code is 1 when every file failed. Models other than this project's are refused at start.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from modeling import AudioError, SERConfig, load_audio, predict_long
from modeling.inference import probabilities
from modeling.fast import quantize_int8
from training.sources import AUDIO_EXTENSIONS
from training.files import write_text_atomic

DEFAULT_MODEL = str(Path(__file__).resolve().parent / "checkpoints" / "tiny-ravdess-emodb")


def columns(labels: list[str]) -> list[str]:
    """The CSV header: one probability column per label of the model, in its `id2label` order."""
    return ["path", "label", "score", *labels, "duration_s", "error"]


def find_audio(paths: list[str]) -> list[str]:
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        else:
            found.append(str(path))  # anything named explicitly is tried, and reported if it is not audio
    return list(dict.fromkeys(found))


def header_duration(path: str) -> float:
    """Duration from the file header when libsndfile can read it (cheap); otherwise 0 (sorted first)."""
    try:
        return sf.info(path).duration
    except Exception:
        return 0.0


def read_done(out: Path, header: list[str]) -> list[dict]:
    if not out.exists():
        return []
    with open(out, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames and reader.fieldnames != header:
            raise SystemExit(
                f"{out} has the columns {reader.fieldnames}, but this model's are {header}: it was written by "
                "another model; give another --out to start a new CSV"
            )
        return list(reader)


def write_rows(out: Path, rows: list[dict], header: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out, buffer.getvalue())  # a killed run leaves the previous complete CSV


def result_row(path: str, scores: dict[str, float], duration: float) -> dict:
    label = max(scores, key=scores.get)
    return {
        "path": path,
        "label": label,
        "score": f"{scores[label]:.6f}",
        **{name: f"{p:.6f}" for name, p in scores.items()},
        "duration_s": f"{duration:.3f}",
        "error": "",
    }


def error_row(path: str, error: Exception) -> dict:
    return {"path": path, "error": str(error)}  # the other columns are written empty


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="audio files and folders")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model folder or Hub id")
    parser.add_argument("--out", default="results.csv", help="CSV to write (and to resume from)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--dtype", choices=["fp32", "int8"], default="fp32", help="int8: quantized Linear layers")
    parser.add_argument("--workers", type=int, default=2, help="threads decoding and denoising ahead")
    args = parser.parse_args(argv)

    model = AutoModelForAudioClassification.from_pretrained(args.model).eval()
    if not isinstance(model.config, SERConfig):
        # Its feature extractor has no denoising, window policy or checks of this project: every file would fail.
        raise SystemExit(
            f"{args.model} is a {model.config.model_type} classifier, not a speech emotion model of this project: "
            "predict.py needs this project's feature extractor; for other audio classifiers use "
            "transformers.pipeline('audio-classification', model=...)"
        )
    if args.dtype == "int8":
        model = quantize_int8(model)
    fe = AutoFeatureExtractor.from_pretrained(args.model)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    header = columns(labels)
    if len(set(header)) != len(header):
        raise SystemExit(f"{args.model}: a label is named like a CSV column ({labels}); rename it in the model's config")
    out = Path(args.out)
    rows = read_done(out, header)
    done = {r["path"] for r in rows}
    todo = [p for p in find_audio(args.paths) if p not in done]
    if done:
        print(f"resuming: {len(done)} files already in {out}, {len(todo)} to go", file=sys.stderr)
    todo.sort(key=header_duration)

    def prepare(path: str):
        try:
            wave = load_audio(path, fe.sampling_rate)
            if len(wave) > fe.window_s * fe.sampling_rate:
                return path, wave, None  # longer than one window: predict_long's windows, below
            return path, wave, fe.process_waveform(wave)
        except AudioError as err:
            return path, err, None
        except Exception as err:  # any other failure on one file is that file's error row, not the run's end
            return path, AudioError(f"{os.path.basename(path)}: {type(err).__name__}: {err}"), None

    batches = [todo[i : i + args.batch_size] for i in range(0, len(todo), args.batch_size)]
    progress = tqdm(total=len(todo), unit="file", desc="Classifying")
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        pending = [pool.submit(prepare, p) for p in batches[0]] if batches else []
        for k in range(len(batches)):
            prepared = [f.result() for f in pending]
            # The next batch decodes while the model runs on this one; at most two batches are in memory.
            pending = [pool.submit(prepare, p) for p in batches[k + 1]] if k + 1 < len(batches) else []
            batch = [(p, w, x) for p, w, x in prepared if x is not None]
            if batch:
                probs = probabilities(model, fe.collate([x for _, _, x in batch], return_tensors="pt"))
                for (path, wave, _), p in zip(batch, probs):
                    rows.append(result_row(path, dict(zip(labels, p.tolist())), len(wave) / fe.sampling_rate))
            for path, wave, x in prepared:
                if isinstance(wave, AudioError):
                    rows.append(error_row(path, wave))
                elif x is None:
                    long = predict_long(model, fe, wave)
                    rows.append(result_row(path, long.scores, long.duration_s))
            write_rows(out, rows, header)
            progress.update(len(prepared))
    progress.close()
    errors = sum(1 for r in rows if r["error"])
    print(f"{len(rows)} files in {out} ({errors} with errors)", file=sys.stderr)
    return 1 if rows and errors == len(rows) else 0  # nothing classified: a failed run for scripts


if __name__ == "__main__":
    sys.exit(main())
