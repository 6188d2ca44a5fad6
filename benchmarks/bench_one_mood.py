"""Speaker adaptation where each speaker keeps one mood, and where their moods vary (the bundled model's speakers).

    python benchmarks/bench_one_mood.py --speakers validation            # choose the policy (never on test speakers)
    python benchmarks/bench_one_mood.py --speakers test                  # report it
    python benchmarks/bench_one_mood.py --write_to_model                 # fit the label offsets on the training speakers

For every speaker of the model's split (`all_results.json`), through `SERClassifier` as a user calls it:
- `varied`: a profile of all of the speaker's clips (every emotion; `predict.py --speaker_from` on a folder per
  speaker), all of them classified;
- `one_mood`: for each emotion, a profile of all of the speaker's clips of that emotion (8 per emotion in RAVDESS,
  up to about 15 in EmoDB), only those classified: a person who stays in one mood;
- `one_mood_recording`: those clips joined into one recording with pauses, classified whole, which adapts to its
  own speech segments (`self_adapt`); scored on the recording's label.
Each under the policies: `none` (no profile), `plain` (a profile's plain mean, as models before
`mood_aware_profiles`) and `mood_aware` (the model's policy). `--weight W` also scores the policies with the weight
that a profile's evidence gives set to W (the mood rule still scaling it), standing in for the dozens of clips a real
recording of one person holds (the corpora have at most 15 per emotion).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from common import BUNDLED, REPO, bundled_records, save

from modeling import SERClassifier, load_audio
from modeling.inference import embed_features, profile_features
from modeling.profile import SpeakerProfile

PAUSE_S = 0.6


def features_of(classifier: SERClassifier, waves: list[np.ndarray]) -> np.ndarray:
    """What a profile averages, one clip at a time (as `build_profile` reads each reference)."""
    model = classifier.model
    with torch.inference_mode():
        return np.concatenate([profile_features(model, embed_features(model, classifier.feature_extractor, [w])) for w in waves])


def centre(classifier: SERClassifier, features: np.ndarray, policy: str, weight: float | None) -> torch.Tensor | None:
    model, config = classifier.model, classifier.model.config
    if policy == "none":
        return None
    aware = config.mood_aware_profiles
    config.mood_aware_profiles = aware and policy == "mood_aware"
    try:
        profile = SpeakerProfile.from_features(model, features, 0.0)
        w = profile.weight(config)
        if weight is not None and profile.effective_clips(config) > 0:  # the evidence stood in for; the mood rule kept
            w = weight * profile.mood_factor(config)
    finally:
        config.mood_aware_profiles = aware
    mean = torch.from_numpy(profile.mean).to(model.population_mean)
    return w * mean + (1 - w) * model.population_mean


def predict(classifier: SERClassifier, features: np.ndarray, center: torch.Tensor | None) -> np.ndarray:
    with torch.inference_mode():
        x = torch.from_numpy(features).unsqueeze(1).to(classifier.model.population_mean)
        return classifier.model.classify(x, speaker_center=center).logits.argmax(-1).cpu().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=BUNDLED)
    parser.add_argument("--speakers", choices=("validation", "test"), default="validation")
    parser.add_argument("--weight", type=float, nargs="*", default=[0.5, 0.8], help="stand-in weights of many clips")
    parser.add_argument("--write_to_model", action="store_true", help="fit the label offsets on the training speakers and save")
    args = parser.parse_args()

    classifier = SERClassifier.from_pretrained(args.model, device="cpu")
    model, labels = classifier.model, classifier.labels
    split = json.loads((args.model / "all_results.json").read_text())["split"]["actors"]
    rows = [r for r in bundled_records() if r["label"] in labels]

    if args.write_to_model:
        train = [r for r in rows if r["speaker"] in split["train"]]
        features = features_of(classifier, [load_audio(r["audio"]) for r in train])
        model.set_label_offsets(torch.from_numpy(features), torch.tensor([labels.index(r["label"]) for r in train]))
        model.save_pretrained(args.model)
        print(f"label offsets of {len(train)} clean training clips written to {args.model}")
        return

    rows = [r for r in rows if r["speaker"] in split[args.speakers]]
    waves = [load_audio(r["audio"]) for r in rows]
    features = features_of(classifier, waves)
    y = np.array([labels.index(r["label"]) for r in rows])
    speakers = np.array([r["speaker"] for r in rows])
    policies = ("none", "plain", "mood_aware")
    results = {}
    for weight in [None, *args.weight]:
        scores = {p: {"varied": [], "one_mood": []} for p in policies}
        for speaker in np.unique(speakers):
            mine = np.where(speakers == speaker)[0]
            for policy in policies:
                scores[policy]["varied"] += list(predict(classifier, features[mine], centre(classifier, features[mine], policy, weight)) == y[mine])
                for label in np.unique(y[mine]):
                    one = mine[y[mine] == label]
                    if len(one) >= model.config.profile_min_clips:
                        c = centre(classifier, features[one], policy, weight)
                        scores[policy]["one_mood"] += list(predict(classifier, features[one], c) == y[one])
        key = "model's weights" if weight is None else f"weight {weight:g}"
        results[key] = {p: {k: round(float(np.mean(v)), 3) for k, v in s.items()} for p, s in scores.items()}
        results[key]["clips"] = {k: len(v) for k, v in scores["none"].items()}
        print(key, json.dumps(results[key]))

    # Long recordings of one person in one mood, through the whole policy (speech detection, self-adaptation).
    pause = np.zeros(int(PAUSE_S * classifier.sampling_rate), np.float32)
    recordings = {"self_adapt": [], "none": []}
    for speaker in np.unique(speakers):
        mine = np.where(speakers == speaker)[0]
        for label in np.unique(y[mine]):
            one = mine[y[mine] == label]
            wave = np.concatenate([part for i in one for part in (waves[i], pause)])
            for mode in recordings:
                prediction = classifier.classify(wave, name=f"{speaker} {labels[label]}", self_adapt=mode == "self_adapt")
                recordings[mode].append(prediction.label == labels[label])
    results["one_mood_recording"] = {
        mode: round(float(np.mean(v)), 3) for mode, v in recordings.items()
    } | {"recordings": len(recordings["none"])}
    print("one_mood_recording", json.dumps(results["one_mood_recording"]))
    save(f"one_mood_{args.speakers}", {
        "model": str(args.model.relative_to(REPO)) if args.model.is_relative_to(REPO) else str(args.model),
        "speakers": split[args.speakers], "mood_aware_profiles": model.config.mood_aware_profiles,
        "profile_mood_shares": list(model.config.profile_mood_shares), "results": results,
    })  # fmt: skip


if __name__ == "__main__":
    main()
