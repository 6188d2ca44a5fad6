"""Long audio through `predict_long`: peak memory and time for 1, 10 and 60 minutes.

    python benchmarks/bench_long_audio.py [--minutes 1 10 60] [--model checkpoints/ge2e-ravdess-emodb]

Each length runs in a fresh process (peak RSS is per process), on a FLAC file made of real RAVDESS clips
concatenated, decoded from disk as a user's file would be.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from common import BUNDLED, DATA_DIR, REPO, save

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
from modeling import predict_long
model = AutoModelForAudioClassification.from_pretrained({model!r}).eval()
fe = AutoFeatureExtractor.from_pretrained({model!r})
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
result = predict_long(model, fe, {path!r})
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": elapsed, "peak_rss_mb": peak / 1024, "rss_after_model_load_mb": baseline / 1024,
                  "windows": len(result.windows), "audio_s": result.duration_s}}))
"""


def make_file(minutes: float, path: Path) -> None:
    clips = [sf.read(p, dtype="float32")[0] for p in sorted(DATA_DIR.glob("Actor_0[1-3]/*.flac"))]
    one_pass = np.concatenate(clips)
    total = int(minutes * 60 * 16000)
    with sf.SoundFile(path, "w", 16000, 1, format="FLAC", subtype="PCM_16") as f:
        written = 0
        while written < total:
            chunk = one_pass[: total - written]
            f.write(chunk)
            written += len(chunk)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--model", default=str(BUNDLED))
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"{minutes:g}min.flac"
            make_file(minutes, path)
            code = CHILD.format(repo=str(REPO), model=args.model, path=str(path))
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            rows[f"{minutes:g}min"] = json.loads(out.stdout.strip().splitlines()[-1])
            print(minutes, rows[f"{minutes:g}min"], flush=True)
    first = rows[f"{args.minutes[0]:g}min"]
    for row in rows.values():
        row["seconds_per_audio_minute"] = row["seconds"] / (row["audio_s"] / 60)
        row["time_vs_shortest_per_minute"] = row["seconds_per_audio_minute"] / first["seconds_per_audio_minute"]
    save("long_audio", {"model": Path(args.model).name, "window_s": 4.0, "hop_s": 2.0, "lengths": rows})


if __name__ == "__main__":
    main()
