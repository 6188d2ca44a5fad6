"""Memory of a live microphone session: ten minutes of speech in the 0.1 s chunks a browser sends.

    python benchmarks/bench_live.py [--minutes 10]

Feeds RAVDESS clips of unseen actors (48 kHz int16, as browsers deliver) through `SERClassifier.stream`, the
method behind the demo's live tab, and samples the process's resident memory every simulated minute.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import psutil
import soxr
from common import BUNDLED, DATA_DIR, save

from modeling import SERClassifier, load_audio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    classifier = SERClassifier.from_pretrained(BUNDLED)
    clips = [soxr.resample(load_audio(p), 16000, 48000) for p in sorted(DATA_DIR.glob("Actor_1[45]/*.flac"))[:40]]
    session = classifier.new_stream()
    process = psutil.Process()
    rss, updates, chunk = [], 0, 4800
    start = time.perf_counter()
    fed = 0
    total = int(args.minutes * 60 * 48000)
    while fed < total:
        wave = (clips[fed // (48000 * 4) % len(clips)] * 32767).astype(np.int16)
        for i in range(0, len(wave), chunk):
            before = len(session.timeline)
            classifier.stream(session, 48000, wave[i : i + chunk])
            updates += len(session.timeline) != before or len(session.timeline) == session.history
            fed += chunk
            if fed % (48000 * 60) < chunk:
                rss.append(round(process.memory_info().rss / 2**20, 1))
    elapsed = time.perf_counter() - start
    save(
        "live",
        {
            "minutes": args.minutes,
            "chunks": fed // chunk,
            "timeline_points": len(session.timeline),
            "buffer_s": len(session.buffer) / 16000,
            "rss_mb_each_minute": rss,
            "rss_growth_mb_after_first_minute": round(rss[-1] - rss[0], 1),
            "compute_s": round(elapsed, 1),
            "real_time_factor": round(elapsed / (args.minutes * 60), 3),
        },
    )


if __name__ == "__main__":
    main()
