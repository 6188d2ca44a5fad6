"""What speech detection costs `predict.py`: 240 clips with the bundled model, with detection on (as saved) and off
(a copy of the model whose preprocessor config says `speech_detection: false`).

    python benchmarks/bench_detection_cost.py [--clips 240] [--repeats 2]

Runs alternate (off, on, off, on, ...) so that drift affects both alike; the medians are reported. Detection runs
in predict.py's decoder processes, beside the model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BUNDLED, DATA_DIR, REPO, save


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    paths = [str(p) for p in sorted(DATA_DIR.glob("Actor_*/*.flac"))[:: max(1, 1200 // args.clips)][: args.clips]]
    with tempfile.TemporaryDirectory() as tmp:
        off = Path(tmp) / "no-detection"
        shutil.copytree(BUNDLED, off)
        config = json.loads((off / "preprocessor_config.json").read_text())
        (off / "preprocessor_config.json").write_text(json.dumps({**config, "speech_detection": False}))
        times = {"off": [], "on": []}
        for run in range(args.repeats):
            for name, model in (("off", off), ("on", BUNDLED)):
                out = Path(tmp) / f"{name}-{run}.csv"
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "predict.py", *paths, "--model", str(model), "--out", str(out)],
                    cwd=REPO, check=True, capture_output=True,
                )  # fmt: skip
                times[name].append(time.perf_counter() - start)
    on, off_s = statistics.median(times["on"]), statistics.median(times["off"])
    save(
        "detection_cost",
        {
            "clips": len(paths),
            "predict_py_s_detection_off": round(off_s, 2),
            "predict_py_s_detection_on": round(on, 2),
            "ratio_on_to_off": round(on / off_s, 2),
            "runs": {k: [round(t, 2) for t in v] for k, v in times.items()},
            "note": "whole command, model load included",
        },
    )


if __name__ == "__main__":
    main()
