"""Scaling `predict.py` out: one process vs two under `torchrun` and under `accelerate launch`.

    python benchmarks/bench_predict_scale.py [--clips 600] [--batch_size 16]

Each command runs from a fresh interpreter on the same real clips and a new CSV, and is timed from start to
exit (imports, model load and decoder start-up included, as a user would see it). The CSVs are checked to hold
the same rows as the one-process run. On a CPU machine the processes share its cores, so the gain is bounded
by the cores; on a GPU machine each process takes one GPU.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BUNDLED, DATA_DIR, REPO, save


def run(prefix: list[str], paths: list[str], out: Path, extra: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [*prefix, "predict.py", *paths, "--model", str(BUNDLED), "--out", str(out), *extra],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args()
    paths = [str(p) for p in sorted(DATA_DIR.glob("Actor_*/*.flac"))[:: max(1, 1200 // args.clips)][: args.clips]]
    extra = ["--batch_size", str(args.batch_size)]
    commands = {
        "1 process (2 decoder workers)": ([sys.executable], ["--workers", "2"]),
        "torchrun, 2 processes (1 decoder worker each)": (
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"], ["--workers", "1"]),
        "accelerate launch, 2 processes (1 decoder worker each)": (
            ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
             "--mixed_precision", "no", "--dynamo_backend", "no"], ["--workers", "1"]),
    }  # fmt: skip
    results, reference = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (prefix, workers)) in enumerate(commands.items()):
            out = Path(tmp) / f"{i}.csv"
            seconds = run(prefix, paths, out, extra + workers)
            rows = {r["path"]: r["label"] for r in csv.DictReader(open(out))}
            reference = reference or rows
            results[name] = {
                "wall_s": round(seconds, 2),
                "files_per_s": round(len(paths) / seconds, 2),
                "rows": len(rows),
                "same_labels_as_one_process": rows == reference,
            }
    save("predict_scale", {"clips": len(paths), "batch_size": args.batch_size, "runs": results})


if __name__ == "__main__":
    main()
