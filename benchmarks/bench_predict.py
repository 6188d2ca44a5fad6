"""Batch prediction throughput: `predict.py` vs one `pipeline(...)` call per file, on the same real clips.

    python benchmarks/bench_predict.py [--clips 200] [--batch_size 16]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from common import BUNDLED, DATA_DIR, save
from transformers import pipeline

import predict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args()
    paths = [str(p) for p in sorted(DATA_DIR.glob("Actor_*/*.flac"))[:: max(1, 1200 // args.clips)][: args.clips]]
    audio_s = sum(float(predict.header_duration(p)) for p in paths)

    classifier = pipeline("audio-classification", model=str(BUNDLED), top_k=None, trust_remote_code=True)
    classifier(paths[0])  # warm-up, as predict.py's model load is not timed either
    start = time.perf_counter()
    naive = {p: {r["label"]: r["score"] for r in classifier(p)} for p in paths}
    naive_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.csv"
        start = time.perf_counter()
        predict.main([*paths, "--model", str(BUNDLED), "--out", str(out), "--batch_size", str(args.batch_size)])
        batched_s = time.perf_counter() - start
        rows = {r["path"]: r for r in csv.DictReader(open(out))}
    max_diff = max(abs(float(rows[p][e]) - naive[p][e]) for p in paths for e in naive[p])
    save(
        "predict",
        {
            "clips": len(paths),
            "audio_s": round(audio_s, 1),
            "naive_pipeline_s": round(naive_s, 2),
            "predict_py_s": round(batched_s, 2),
            "naive_files_per_s": round(len(paths) / naive_s, 2),
            "predict_py_files_per_s": round(len(paths) / batched_s, 2),
            "throughput_ratio": round(naive_s / batched_s, 2),
            "max_abs_score_diff_vs_pipeline": float(np.round(max_diff, 8)),
            "note": "predict.py time includes its model load; the pipeline was loaded and warmed up before timing",
        },
    )


if __name__ == "__main__":
    main()
