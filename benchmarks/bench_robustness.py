"""Robustness: the bundled model and the classical anchor on held-out speakers through real-world conditions.

    python benchmarks/bench_robustness.py [--max_clips N] [--write_to_model]
    python benchmarks/bench_robustness.py --write_to_model --reuse     # the last run's figures into the model
    python benchmarks/bench_robustness.py --speakers validation --model runs/candidate   # choosing a recipe

Speakers: the model's own test speakers (for the bundled model RAVDESS actors 01, 14, 15, 20 and EmoDB speakers 14,
15; 348 clips), never used to train or tune it or anything here. A training recipe is chosen on the validation
speakers (`--speakers validation`), never on these. Conditions (`training/conditions.py`): clean; telephone band at
8 kHz through G.711 mu-law and through GSM 06.10; MP3 at 24 kbit/s and Opus at 12 kbit/s; simulated rooms with RT60
0.3, 0.6 and 1.0 s (six rooms each; image sources and ray tracing, seeded, so the same rooms on every run; their
measured RT60 reported); babble noise at 20, 10 and 5 dB SNR (six streams of real speech of speakers outside the test
set); speech over instrumental music at 5 dB (Debian's asc-music, held out from the speech/music check; fetched by
`bash install.sh --test`); recorded street, rail, crowd, harbour and water sounds at 20, 10 and 5 dB SNR (Debian's
lincity-ng-data, GPL-2+, fetched by `bash install.sh --test`: the recordings that training's backgrounds leave out); low levels (-40 and -65 dBFS active speech level); hard clipping (4x overdrive).

For each: accuracy (refused clips count as errors) and unweighted average recall of the bundled model through its
whole policy (`SERClassifier`: speech detection included), the ratio to clean, how many clips speech detection
refused, and the same for eGeMAPS functionals + logistic regression (C=1) trained on the clean clips of every other
speaker of both corpora. With --write_to_model, the model's accuracy per condition family goes into its config's
`robustness`, which the input-quality report quotes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import BUNDLED, REPO, RESULTS, bundled_records, save
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modeling import AudioError, SERClassifier, load_audio
from modeling.speech import detector
from training import conditions as C
from training.auxiliary import egemaps_functionals
from training.data import cache_root

MUSIC = REPO / ".cache" / "music" / "asc-music" / "files"
ENVIRONMENT = REPO / ".cache" / "sounds" / "lincity-ng" / "held-out"


ROOMS_PER_RT60 = 6


def room_banks() -> tuple[dict, dict]:
    """Impulse responses of `ROOMS_PER_RT60` simulated rooms per RT60 target, and their measured RT60s."""
    banks, measured = {}, {}
    for target in (0.3, 0.6, 1.0):
        rooms = [C.room_impulse_response(target, seed=1000 * int(target * 10) + k) for k in range(ROOMS_PER_RT60)]
        banks[target] = [rir for rir, _ in rooms]
        measured[f"room RT60 {target:g} s"] = round(float(np.median([rt60 for _, rt60 in rooms])), 2)
    return banks, measured


def environmental_noise() -> np.ndarray:
    """The held-out city recordings laid end to end, each at the same RMS (so that no one dominates the mix)."""
    recordings = sorted(ENVIRONMENT.glob("*.wav"))
    if not recordings:
        raise SystemExit(f"no environmental recordings in {ENVIRONMENT}: run bash install.sh --test first")
    waves = [load_audio(r, max_duration_s=None) for r in recordings]
    return np.concatenate([w / (np.sqrt(np.mean(w.astype(np.float64) ** 2)) + 1e-9) for w in waves]).astype(np.float32)


def condition_functions(babble: np.ndarray, music: np.ndarray, environment: np.ndarray, rooms: dict) -> dict:
    """name -> f(wave, speech_power, seed)."""
    return {
        "clean": lambda w, p, s: w,
        "telephone mu-law": lambda w, p, s: C.telephone(w, "mulaw"),
        "telephone GSM": lambda w, p, s: C.telephone(w, "gsm"),
        "MP3 24 kbit/s": lambda w, p, s: C.compress(w, "mp3", 24),
        "Opus 12 kbit/s": lambda w, p, s: C.compress(w, "opus", 12),
        "room RT60 0.3 s": lambda w, p, s: C.reverberate(w, rooms[0.3][s % ROOMS_PER_RT60]),
        "room RT60 0.6 s": lambda w, p, s: C.reverberate(w, rooms[0.6][s % ROOMS_PER_RT60]),
        "room RT60 1 s": lambda w, p, s: C.reverberate(w, rooms[1.0][s % ROOMS_PER_RT60]),
        "babble 20 dB": lambda w, p, s: C.add_noise(w, babble, 20, p, s),
        "babble 10 dB": lambda w, p, s: C.add_noise(w, babble, 10, p, s),
        "babble 5 dB": lambda w, p, s: C.add_noise(w, babble, 5, p, s),
        "music bed 5 dB": lambda w, p, s: C.add_noise(w, music, 5, p, s),
        "city noise 20 dB": lambda w, p, s: C.add_noise(w, environment, 20, p, s),
        "city noise 10 dB": lambda w, p, s: C.add_noise(w, environment, 10, p, s),
        "city noise 5 dB": lambda w, p, s: C.add_noise(w, environment, 5, p, s),
        "level -40 dBFS": lambda w, p, s: C.set_level(w, -40, p),
        "level -65 dBFS": lambda w, p, s: C.set_level(w, -65, p),
        "clipping 4x": lambda w, p, s: C.clip(w),
    }


# The condition families the input-quality report names, and the benchmark rows that stand for them (the worst).
FAMILIES = {
    "telephone": ["telephone mu-law", "telephone GSM"],
    "noise": ["babble 10 dB", "city noise 10 dB"],
    "clipping": ["clipping 4x"],
    "quiet": ["level -65 dBFS"],  # where the report's note starts (below -60 dBFS)
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_clips", type=int, default=None, help="every n-th test clip, for a quick run")
    parser.add_argument("--model", type=Path, default=BUNDLED, help="a saved model (default: the bundled one)")
    parser.add_argument("--speakers", choices=("test", "validation"), default="test", help="the model's split to use")
    parser.add_argument("--conditions", nargs="+", default=None, help="only these conditions (clean always)")
    parser.add_argument("--write_to_model", action="store_true", help="store the accuracies in the model's config")
    parser.add_argument("--reuse", action="store_true", help="with --write_to_model: the figures of the last run")
    args = parser.parse_args()
    if args.write_to_model and (args.max_clips or args.conditions or args.speakers != "test"):
        parser.error("--write_to_model stores figures of every condition on the whole test set: leave out --max_clips, --conditions and --speakers")
    if args.reuse:
        if not args.write_to_model:
            parser.error("--reuse only writes the last run's figures into the model: add --write_to_model")
        write_to_model(args.model, RESULTS / "robustness.json")
        return

    every = bundled_records()
    # The model's own split: its held-out speakers are measured; babble and the anchor come from its training ones.
    split = json.loads((args.model / "all_results.json").read_text())["split"]["actors"]
    test = [r for r in every if r["speaker"] in split[args.speakers]]
    train = [r for r in every if r["speaker"] in split["train"]]
    if args.max_clips:
        test = test[:: max(1, len(test) // args.max_clips)][: args.max_clips]
    classifier = SERClassifier.from_pretrained(args.model)
    labels = classifier.labels
    y = np.array([labels.index(r["label"]) for r in test])

    features = egemaps_functionals(train, cache_root(None))
    anchor = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    anchor.fit(np.nan_to_num(features), [labels.index(r["label"]) for r in train])
    smile = detector().smile

    rng = np.random.default_rng(0)
    babble_clips = [load_audio(train[i]["audio"]) for i in rng.choice(len(train), 60, replace=False)]
    babble = C.babble(babble_clips, seconds=60)
    tracks = sorted(MUSIC.rglob("*.mp3"))
    if not tracks:
        raise SystemExit(f"no instrumental music in {MUSIC}: run bash install.sh --test first")
    music = np.concatenate([load_audio(t, max_duration_s=None) for t in tracks])
    environment = environmental_noise()

    clean = [load_audio(r["audio"]) for r in test]
    powers = [C.active_speech_power(w, detector().probabilities(w)) for w in clean]
    rooms, measured_rt60 = room_banks()
    results = {}
    conditions = condition_functions(babble, music, environment, rooms)
    if args.conditions:
        unknown = set(args.conditions) - set(conditions)
        if unknown:
            parser.error(f"unknown conditions {sorted(unknown)}; the conditions: {list(conditions)}")
        conditions = {n: f for n, f in conditions.items() if n == "clean" or n in args.conditions}
    for name, degrade in conditions.items():
        predicted, refused, anchor_x, snr, narrow, clipped = [], 0, [], [], 0, 0
        for i, (wave, power) in enumerate(zip(clean, powers)):
            x = degrade(wave, power, i)
            try:
                prediction = classifier.classify(x, name=Path(test[i]["audio"]).name, quality=True)
                predicted.append(labels.index(prediction.label))
                snr.append(prediction.quality.snr_db)
                narrow += prediction.quality.narrowband
                clipped += prediction.quality.clipping_ratio > 0.001
            except AudioError:
                refused += 1
                predicted.append(-1)
            anchor_x.append(smile.process_signal(x, 16000).iloc[0].to_numpy())
        anchor_pred = anchor.predict(np.nan_to_num(np.array(anchor_x)))
        predicted = np.array(predicted)
        results[name] = {
            "accuracy": float(np.mean(predicted == y)),
            "uar": float(recall_score(y, predicted, labels=sorted(set(y)), average="macro", zero_division=0)),
            "refused": refused,
            "anchor_accuracy": float(np.mean(anchor_pred == y)),
            "anchor_uar": float(recall_score(y, anchor_pred, labels=sorted(set(y)), average="macro", zero_division=0)),
            "quality": {
                "median_snr_db": float(np.median(snr)) if snr else None,
                "narrowband": narrow,
                "clipped": clipped,
            },
        }
        print(name, json.dumps(results[name]), flush=True)
    clean_acc, clean_anchor = results["clean"]["accuracy"], results["clean"]["anchor_accuracy"]
    for r in results.values():
        r["ratio_to_clean"] = round(r["accuracy"] / clean_acc, 3)
        r["anchor_ratio_to_clean"] = round(r["anchor_accuracy"] / clean_anchor, 3)
    worst = min((n for n in results if n != "clean"), key=lambda n: results[n]["accuracy"])
    robustness = {"clean": round(clean_acc, 3)}
    robustness |= {
        family: round(min(results[n]["accuracy"] for n in rows), 3)
        for family, rows in FAMILIES.items()
        if all(n in results for n in rows)
    }
    summary = save(
        "robustness" if args.speakers == "test" else "robustness-validation",
        {
            "model": str(args.model.resolve().relative_to(REPO)) if args.model.resolve().is_relative_to(REPO) else args.model.name,
            "speakers": args.speakers,
            "measured_speakers": sorted(split[args.speakers]),
            "clips": len(test),
            "anchor": f"eGeMAPSv02 functionals + logistic regression (C=1), trained on {len(train)} clean clips of the other speakers",
            "conditions": results,
            "measured_rt60_s": measured_rt60,
            "worst_condition": worst,
            "worst_ratio_to_clean": results[worst]["ratio_to_clean"],
            "robustness_for_the_quality_report": robustness,
        },
    )
    if args.write_to_model:
        write_to_model(args.model, summary)


def write_to_model(model: Path, summary: Path) -> None:
    """The figures the input-quality report quotes go into the model's config, the table into its card."""
    from modeling import SERConfig
    from serving.files import write_json_atomic, write_text_atomic
    from training.card import render_card

    measured = json.loads(summary.read_text())
    config = SERConfig.from_pretrained(model)
    config.robustness = measured["robustness_for_the_quality_report"]
    config.save_pretrained(model)
    all_results = json.loads((model / "all_results.json").read_text())
    keep = ("command", "clips", "anchor", "conditions", "measured_rt60_s", "worst_condition", "worst_ratio_to_clean")
    all_results["robustness"] = {k: measured[k] for k in keep}
    write_json_atomic(model / "all_results.json", all_results)
    write_text_atomic(model / "README.md", render_card(all_results))


if __name__ == "__main__":
    main()
