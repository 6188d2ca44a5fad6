"""Speech detection: real speech never refused, and its cost within inference.

    python benchmarks/bench_speech.py [--minutes 10]

1. Every clip of ../shared/data (RAVDESS and EmoDB, 1,735 clips) through `detect_speech`: how many are refused
   as "no speech" (target 0), and how many have no segment Silero delimits (classified whole, see
   modeling/speech.py).
2. Ten minutes of speech (RAVDESS clips of unseen actors joined by 1 s pauses of low noise) through
   `predict_long` with the bundled model: the share of the time spent detecting speech.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import BUNDLED, DATA_DIR, save
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from modeling import load_audio, predict_long
from modeling.speech import NoSpeechError, detect_speech, detector, voice_activity


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()

    refused, whole, clips = [], 0, 0
    for path in sorted(DATA_DIR.parent.glob("*/**/*.flac")):
        wave = load_audio(path)
        clips += 1
        try:
            detect_speech(wave, name=path.name)
        except NoSpeechError:
            refused.append(path.name)
            continue
        segments = voice_activity(wave)
        whole += len(segments) == 1 and segments[0].start_s == 0 and segments[0].end_s == len(wave) / 16000

    rng = np.random.default_rng(0)
    parts, total = [], 0
    paths = sorted(DATA_DIR.glob("Actor_1[45]/*.flac"))
    while total < args.minutes * 60 * 16000:
        clip = load_audio(paths[len(parts) // 2 % len(paths)])
        parts += [clip, (0.003 * rng.standard_normal(16000)).astype(np.float32)]
        total += len(clip) + 16000
    wave = np.concatenate(parts)
    model = AutoModelForAudioClassification.from_pretrained(BUNDLED).eval()
    fe = AutoFeatureExtractor.from_pretrained(BUNDLED)
    predict_long(model, fe, wave[: 16000 * 30])  # warm-up
    detector().smile  # noqa: B018  (loaded, as a server does at start)
    start = time.perf_counter()
    segments = detect_speech(wave)
    detection_s = time.perf_counter() - start
    start = time.perf_counter()
    result = predict_long(model, fe, wave, segments=segments)
    model_s = time.perf_counter() - start
    total_s = detection_s + model_s
    save(
        "speech",
        {
            "clips": clips,
            "refused_as_no_speech": len(refused),
            "refused": refused,
            "classified_whole_no_segment_or_one_over_the_clip": whole,
            "long_audio_s": round(len(wave) / 16000, 1),
            "segments": len(segments),
            "pieces_classified": sum(w.scores is not None for w in result.windows),
            "detection_s": round(detection_s, 2),
            "classification_s": round(model_s, 2),
            "predict_long_s": round(total_s, 2),
            "detection_share_of_predict_long": round(detection_s / total_s, 3),
        },
    )


if __name__ == "__main__":
    main()
