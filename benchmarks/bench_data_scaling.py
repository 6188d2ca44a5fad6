"""The data stage at 1x, 4x and 16x the same corpus: peak memory and time.

    python benchmarks/bench_data_scaling.py [--multiples 1 4 16] [--actors 4]

The corpus: RAVDESS actors 01-04 (240 clips), written as a local parquet dataset shaped like a Hub mirror (encoded
FLAC bytes, label and actor columns); copy k of each clip is its audio scaled by a gain of 1 - k/1000, so that
every copy is a different file (the duplicate check keeps it) of nearly the same sound. For each size, a fresh
process runs train.py's data stage: `load_records` (reading the dataset, the duplicate check) and `preprocess`
(decoding, denoising, normalizing into the cached Arrow file), and reports its time and the peak of its anonymous
resident memory (sampled every 5 ms; pages of memory-mapped Arrow files are the page cache's and not counted). Goal:
peak memory flat (within 20%) from 1x to 16x, time linear. Epoch times of the frozen and fine-tune modes are not
measured here.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
from common import DATA_DIR, REPO, save

STAGE = """
import json, sys, threading, time
sys.path.insert(0, {repo!r})
from training.args import parse_train_args
from training.experiment import load_records
from training.data import preprocess
from modeling import SERFeatureExtractor

def anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

peak, done = [anon_mb()], threading.Event()
def sample():
    while not done.is_set():
        peak.append(anon_mb())
        time.sleep(0.005)
base = anon_mb()
threading.Thread(target=sample, daemon=True).start()
start = time.perf_counter()
_, data_args, _ = parse_train_args(["--dataset_name", {dataset!r}, "--actor_column_name", "actor",
                                    "--output_dir", "unused", "--preprocessing_cache_dir", {cache!r}])
records, labels, _ = load_records(data_args)
loaded = time.perf_counter() - start
features, _ = preprocess(records, SERFeatureExtractor(), {{l: i for i, l in enumerate(labels)}}, {cache!r}, 2)
total = time.perf_counter() - start
done.set()
print(json.dumps({{"clips": len(features), "load_s": loaded, "data_stage_s": total, "peak_anon_mb": max(peak) - base}}))
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
        pq.write_table(pa.Table.from_pylist(rows), root / f"train-{k:05d}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--multiples", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--actors", type=int, default=4)
    args = parser.parse_args()
    clips = sorted(p for a in range(1, args.actors + 1) for p in (DATA_DIR / f"Actor_{a:02d}").glob("*.flac"))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for multiple in args.multiples:
            dataset = Path(tmp) / f"x{multiple}"
            write_copies(dataset, clips, multiple)
            script = STAGE.format(repo=str(REPO), dataset=str(dataset), cache=str(Path(tmp) / f"cache{multiple}"))
            out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
            rows[f"{multiple}x"] = json.loads(out.stdout.strip().splitlines()[-1])
            print(multiple, rows[f"{multiple}x"], flush=True)
    first = rows[f"{args.multiples[0]}x"]
    for row in rows.values():
        row["peak_vs_first"] = round(row["peak_anon_mb"] / first["peak_anon_mb"], 3)
        row["seconds_per_clip"] = round(row["data_stage_s"] / row["clips"], 4)
    save("data_scaling", {"corpus": f"RAVDESS actors 01-{args.actors:02d} as parquet, gain-shifted copies", "sizes": rows})


if __name__ == "__main__":
    main()
