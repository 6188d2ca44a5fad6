"""Shared by the benchmark scripts: the model sizes, a fair timer, and where results go."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = Path(__file__).resolve().parent / "results"
DATA_DIR = Path(os.environ.get("SER_DATA_DIR", REPO.parent / "shared" / "data" / "ravdess16k"))
BUNDLED = REPO / "checkpoints" / "ge2e-ravdess-emodb"

# wav2vec2-base's size (Wav2Vec2Config() defaults: hidden 768, 12 layers, group-norm feature encoder).
BASE_BACKBONE = {"model_type": "wav2vec2"}


def bundled_records() -> list[dict]:
    """The bundled model's data (configs/bundled.yaml: RAVDESS + EmoDB, boredom dropped), deduplicated."""
    from training.args import parse_train_args
    from training.experiment import load_records

    flags = [str(REPO / "configs" / "bundled.yaml"), "--data_dir", str(DATA_DIR), "--emodb_dir", str(DATA_DIR.parent / "emodb16k")]
    _, data_args, _ = parse_train_args([*flags, "--output_dir", "unused"])
    return load_records(data_args)[0]


def machine() -> dict:
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def interleaved_median(fns: dict, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved so that drift affects all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix().split(str(REPO) + "/")[-1], *sys.argv[1:]]), "machine": machine(), **data}
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))
    return path
