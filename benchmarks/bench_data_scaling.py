"""Training at 1x, 4x and 16x the same corpus: memory and time of the data stage, of streaming, and of one epoch
in the frozen and fine-tune modes.

    python benchmarks/bench_data_scaling.py [--multiples 1 4 16] [--actors 4]

The corpus: RAVDESS actors 01-04 (240 clips), written as a local parquet dataset shaped like a Hub mirror (encoded
FLAC bytes, label and actor columns, files of 60 clips); copy k of each clip is its audio scaled by a gain of
1 - k/1000, so that every copy is a different file (the duplicate check keeps it) of nearly the same sound. For
each size, fresh processes run:

- the data stage of train.py: `load_records` (`datasets`' first conversion of the parquet files to its Arrow cache,
  reading the rows, the duplicate check) and `preprocess` (decoding, denoising, normalizing into the cached Arrow
  file);
- the same with `--streaming`: the metadata pass, storing the held-out speakers, and one pass over the training
  stream (decoded), with a shuffle buffer of 100 clips (full at every size); the shuffle reads up to 10 of the
  dataset's files at a time (4 at 1x, 10 from 4x on);
- one epoch of train.py in the frozen mode (GE2E, embeddings computed into the sharded cache, then the head) and in
  the fine-tune mode (configs/tiny.yaml's small wav2vec2, from scratch), on the data stage's cache.

Memory, sampled every 5 ms (20 ms for the training runs): the peak of the process's anonymous resident memory (what
has to fit in RAM: imports, the data stage, the model), and its growth above the baseline after imports; and the
peak of the file-backed resident pages (memory-mapped Arrow files: the page cache's, which the kernel reclaims
under pressure). Goal: the data stage's memory flat (within 20%) from 1x to 16x, time linear.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
import yaml
from common import DATA_DIR, REPO, save

# Four actors: one for test, one for validation, two to train on.
SPLIT = ["--num_test_actors", "1", "--num_val_actors", "1"]

MEASURE = """
import json, sys, threading, time
sys.path.insert(0, {repo!r})

def status(field):  # MB
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

from training.args import parse_train_args
from training.experiment import load_records, make_splits
from training.data import preprocess
from training.streaming import prepare_streaming
from training.data import return_arrow_memory_promptly
from modeling import SERFeatureExtractor

return_arrow_memory_promptly()  # as train.py does

peak, done = [status("RssAnon")], threading.Event()
def sample():
    while not done.is_set():
        peak.append(status("RssAnon"))
        time.sleep(0.005)
base = status("RssAnon")
threading.Thread(target=sample, daemon=True).start()
start = time.perf_counter()
flags = ["--dataset_name", {dataset!r}, "--actor_column_name", "actor", "--output_dir", "unused", *{split!r},
         "--preprocessing_cache_dir", {cache!r}, "--preprocessing_num_workers", "2"]
if {streaming!r}:
    _, data_args, _ = parse_train_args(flags + ["--streaming", "true", "--max_steps", "1", "--shuffle_buffer_size", "100"])
    streamed = prepare_streaming(data_args, SERFeatureExtractor(), 42, make_splits)
    clips = len(streamed.summary)
    streamed_clips = sum(1 for _ in streamed.train)
else:
    _, data_args, _ = parse_train_args(flags)
    records, labels, _ = load_records(data_args)
    features, _ = preprocess(records, SERFeatureExtractor(), {{l: i for i, l in enumerate(labels)}}, {cache!r}, 2)
    clips = len(features)
total = time.perf_counter() - start
done.set()
print(json.dumps({{"clips": clips, "seconds": total, "peak_anon_mb": max(peak), "anon_growth_mb": max(peak) - base}}))
"""


def write_copies(root: Path, clips: list[Path], copies: int) -> None:
    root.mkdir(parents=True)
    for k in range(copies):
        rows = []
        for path in clips:
            wave, rate = sf.read(path, dtype="float32")
            buffer = io.BytesIO()
            sf.write(buffer, wave * np.float32(1 - k / 1000), rate, format="FLAC")
            rows.append({"audio": {"bytes": buffer.getvalue(), "path": f"{k}-{path.name}"},
                         "label": path.name.split("-")[2], "actor": path.parent.name})  # fmt: skip
        for part in range(0, len(rows), 60):
            pq.write_table(pa.Table.from_pylist(rows[part : part + 60]), root / f"train-{k:05d}-{part // 60}.parquet")


def measure(dataset: Path, cache: Path, streaming: bool) -> dict:
    script = MEASURE.format(repo=str(REPO), dataset=str(dataset), cache=str(cache), streaming=streaming, split=SPLIT)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_epoch(dataset: Path, cache: Path, out: Path, mode: str) -> dict:
    """One epoch of train.py on the data stage's cache: its times from all_results.json, its memory sampled from /proc."""
    if mode == "frozen":
        model = ["--model_name_or_path", "ge2e", "--pooling", "mean_std", "--embedding_batch_size", "16",
                 "--per_device_train_batch_size", "64", "--learning_rate", "0.001"]  # fmt: skip
    else:
        tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
        model = ["--backbone_config", json.dumps(tiny["backbone_config"]), "--freeze_feature_encoder", "false",
                 "--per_device_train_batch_size", "16", "--learning_rate", "0.001"]  # fmt: skip
    cmd = [sys.executable, "train.py", *model, "--dataset_name", str(dataset), "--actor_column_name", "actor", *SPLIT,
           "--num_train_epochs", "1", "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
           "--dataloader_pin_memory", "false", "--output_dir", str(out), "--preprocessing_cache_dir", str(cache)]  # fmt: skip
    start = time.perf_counter()
    log = out.parent / f"{out.name}.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
        peaks = {"RssAnon": 0.0, "RssFile": 0.0}
        while process.poll() is None:
            try:
                for line in open(f"/proc/{process.pid}/status"):
                    field = line.split(":")[0]
                    if field in peaks:
                        peaks[field] = max(peaks[field], int(line.split()[1]) / 1024)
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(0.02)
    if process.wait():
        raise SystemExit(log.read_text()[-3000:])
    results = json.loads((out / "all_results.json").read_text())
    return {
        "train_clips": results["split"]["sizes"]["train"],
        "epoch_s": results["training"]["train_time_s"],
        "embedding_s": results["training"]["embedding_time_s"] if mode == "frozen" else None,
        "wall_s": time.perf_counter() - start,
        "peak_anon_mb": peaks["RssAnon"],
        "peak_file_backed_mb": peaks["RssFile"],
    }


def ratios(rows: dict, path: tuple[str, str], first: str) -> None:
    base = rows[first][path[0]][path[1]]
    for row in rows.values():
        row[path[0]][f"{path[1]}_vs_{first}"] = round(row[path[0]][path[1]] / base, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--multiples", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--actors", type=int, default=4)
    args = parser.parse_args()
    clips = sorted(p for a in range(1, args.actors + 1) for p in (DATA_DIR / f"Actor_{a:02d}").glob("*.flac"))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for multiple in args.multiples:
            dataset, cache = Path(tmp) / f"x{multiple}", Path(tmp) / f"cache{multiple}"
            write_copies(dataset, clips, multiple)
            row = {"data_stage": measure(dataset, cache, streaming=False)}
            row["streaming"] = measure(dataset, Path(tmp) / f"stream-cache{multiple}", streaming=True)
            for mode in ("frozen", "fine-tune"):
                row[mode] = one_epoch(dataset, cache, Path(tmp) / f"run-{mode}-{multiple}", mode)
            rows[f"{multiple}x"] = row
            print(multiple, json.dumps(row), flush=True)
    first = f"{args.multiples[0]}x"
    for stage, field in (("data_stage", "peak_anon_mb"), ("data_stage", "anon_growth_mb"), ("data_stage", "seconds"),
                         ("streaming", "peak_anon_mb"), ("streaming", "seconds"), ("frozen", "peak_anon_mb"),
                         ("frozen", "epoch_s"), ("frozen", "embedding_s"), ("fine-tune", "peak_anon_mb"), ("fine-tune", "epoch_s")):  # fmt: skip
        ratios(rows, (stage, field), first)
    save("data_scaling", {"corpus": f"RAVDESS actors 01-{args.actors:02d} as parquet, gain-shifted copies", "sizes": rows})


if __name__ == "__main__":
    main()
