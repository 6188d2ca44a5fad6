"""Speaker adaptation in training and evaluation.

Training: every training clip is seen relative to a speaker profile drawn from its own speaker's clips, as users
will give them: often none, often few, often of a single mood (`ProfileSampler`). Evaluation: the same held-out
clips without a profile, with a profile of all of their speaker's clips, of 16 random ones, and the hard case of a
speaker who has only 2-4 clips of 1-2 emotions (`adaptation_report`).
"""

from __future__ import annotations

import numpy as np
import torch

from modeling.profile import effective_clips, spread_of

from .metrics import full_report

# How the training profiles are drawn: no profile a quarter of the time; otherwise this many clips, half of the
# time from only one or two of the speaker's emotions.
NO_PROFILE_P = 0.25
PROFILE_SIZES = (2, 4, 6, 8, 12, 16, 24, 32, None)  # None: all of the speaker's clips
SKEWED_P = 0.5


def center_of(features: np.ndarray, population_mean: np.ndarray, population_std: np.ndarray, config) -> np.ndarray:
    """`SERForSequenceClassification.speaker_center` of the profile of these reference features."""
    n = effective_clips(len(features), spread_of(features, population_std), config)
    weight = n / (n + config.profile_prior_clips) if n > 0 else 0.0
    return weight * features.mean(axis=0) + (1.0 - weight) * population_mean


def reference_spread(features: np.ndarray, speakers: list[str], population_std: np.ndarray) -> float:
    """How much one speaker's clips vary, on average over the speakers (`SERConfig.reference_spread`)."""
    speakers = np.asarray(speakers)
    return float(np.mean([spread_of(features[speakers == s], population_std) for s in np.unique(speakers)]))


class ProfileSampler:
    """Draws, for a training row, the centre of a profile of its speaker (see the module docstring), from the
    speaker's clean clips (`features` and `speakers` of the clean training rows; augmented copies are not new
    clips of a voice).

    The draws come from a generator seeded by the seed and torch's seed of the process: data-loader workers
    (which torch seeds per worker and epoch) draw differently from each other and from epoch to epoch."""

    def __init__(self, features: np.ndarray, speakers: list[str], labels: list[int], model, seed: int):
        self.features = features
        self.rows: dict[str, np.ndarray] = {}
        self.labels = np.asarray(labels)
        for i, s in enumerate(speakers):
            self.rows.setdefault(s, []).append(i)
        self.rows = {s: np.asarray(r) for s, r in self.rows.items()}
        self.mean = model.population_mean.detach().cpu().numpy()
        self.std = model.population_std.detach().cpu().numpy()
        self.config = model.config
        self.seed = seed
        self._rng, self._torch_seed = None, None

    @property
    def rng(self) -> np.random.Generator:
        torch_seed = torch.initial_seed()
        if self._rng is None or torch_seed != self._torch_seed:
            self._rng, self._torch_seed = np.random.default_rng([self.seed, torch_seed % 2**32]), torch_seed
        return self._rng

    def __call__(self, speaker: str) -> np.ndarray:
        rng = self.rng
        if rng.random() < NO_PROFILE_P:
            return self.mean
        rows = self.rows[speaker]
        if rng.random() < SKEWED_P:
            emotions = np.unique(self.labels[rows])
            keep = rng.choice(emotions, size=min(len(emotions), int(rng.integers(1, 3))), replace=False)
            rows = rows[np.isin(self.labels[rows], keep)]
        size = PROFILE_SIZES[int(rng.integers(len(PROFILE_SIZES)))]
        if size is not None and size < len(rows):
            rows = rng.choice(rows, size=size, replace=False)
        if len(rows) < 2:
            return self.mean
        return center_of(self.features[rows], self.mean, self.std, self.config).astype(np.float32)


@torch.inference_mode()
def _predict(model, features: np.ndarray, centers: np.ndarray | None) -> np.ndarray:
    model.eval()
    x = torch.from_numpy(features).float().unsqueeze(1).to(model.device)
    center = None if centers is None else torch.from_numpy(np.asarray(centers, dtype=np.float32)).to(model.device)
    return model.classify(x, speaker_center=center).logits.argmax(-1).cpu().numpy()


def adaptation_report(
    model, features: np.ndarray, y: np.ndarray, speakers: list[str], labels: list[str], seed: int, draws: int = 10
) -> dict:
    """Accuracy and UAR of held-out clips under each reference condition (references drawn without labels'
    knowledge by the model; the labels only pick the skewed subsets a user might have):

    - `none`: no profile;
    - `all`: a profile of all of the speaker's clips;
    - `random_16`: of 16 of the speaker's clips, drawn at random (`draws` times);
    - `few_skewed`: the speaker has only 2-4 clips of 1-2 emotions (`draws` draws per speaker): the profile is built
      from those clips and only they are classified, with and without it (`few_skewed_none`);
    - `one_mood`: a speaker who keeps one mood: the profile is built from all of the speaker's clips of one emotion
      and only they are classified, with and without it (`one_mood_none`), for every speaker and emotion.

    The centres are the ones the model gives at inference (`SpeakerProfile.from_features`, `speaker_center`).
    """
    from modeling.profile import SpeakerProfile

    model.eval()
    rng = np.random.default_rng(seed)
    speakers = np.asarray(speakers)
    by_speaker = {s: np.where(speakers == s)[0] for s in np.unique(speakers)}

    def center(rows):
        if len(rows) < model.config.profile_min_clips:  # a speaker with one clip in a small subset: no profile
            return model.population_mean.float().cpu().numpy()
        profile = SpeakerProfile.from_features(model, features[rows], 0.0)
        with torch.no_grad():
            return model.speaker_center(profile).float().cpu().numpy()

    def report(truth, predicted):
        r = full_report(truth, predicted, labels)
        return {"accuracy": r["accuracy"], "uar": r["uar"], "clips": int(len(truth))}

    out = {"none": report(y, _predict(model, features, None))}
    of_speaker = {s: center(rows) for s, rows in by_speaker.items()}  # one profile per speaker, not per clip
    out["all"] = report(y, _predict(model, features, np.stack([of_speaker[s] for s in speakers])))
    truth, predicted = [], []
    for _ in range(draws):
        centers = {s: center(rng.choice(rows, size=min(16, len(rows)), replace=False)) for s, rows in by_speaker.items()}
        truth.append(y)
        predicted.append(_predict(model, features, np.stack([centers[s] for s in speakers])))
    out["random_16"] = report(np.concatenate(truth), np.concatenate(predicted))
    truth, with_profile, without = [], [], []
    for _ in range(draws):
        for rows in by_speaker.values():
            emotions = np.unique(y[rows])
            keep = rng.choice(emotions, size=min(len(emotions), int(rng.integers(1, 3))), replace=False)
            pool = rows[np.isin(y[rows], keep)]
            chosen = rng.choice(pool, size=min(len(pool), int(rng.integers(2, 5))), replace=False)
            if len(chosen) < 2:
                continue
            truth.append(y[chosen])
            with_profile.append(_predict(model, features[chosen], np.repeat(center(chosen)[None], len(chosen), 0)))
            without.append(_predict(model, features[chosen], None))
    out["few_skewed"] = report(np.concatenate(truth), np.concatenate(with_profile))
    out["few_skewed_none"] = report(np.concatenate(truth), np.concatenate(without))
    truth, with_profile, without = [], [], []
    for rows in by_speaker.values():
        for label in np.unique(y[rows]):
            chosen = rows[y[rows] == label]
            if len(chosen) < model.config.profile_min_clips:
                continue
            truth.append(y[chosen])
            with_profile.append(_predict(model, features[chosen], np.repeat(center(chosen)[None], len(chosen), 0)))
            without.append(_predict(model, features[chosen], None))
    if truth:  # a small subset may hold no speaker with two clips of one emotion
        out["one_mood"] = report(np.concatenate(truth), np.concatenate(with_profile))
        out["one_mood_none"] = report(np.concatenate(truth), np.concatenate(without))
    out["references"] = {
        "all": "every clip of the test speaker (balanced over the 8 emotions in RAVDESS: this flatters the figure)",
        "random_16": f"16 random clips of the test speaker, {draws} draws",
        "few_skewed": f"2-4 clips of 1-2 emotions per test speaker, {draws} draws each; only those clips classified",
        "one_mood": "all of a test speaker's clips of one emotion, for each emotion; only those clips classified",
    }
    return out
