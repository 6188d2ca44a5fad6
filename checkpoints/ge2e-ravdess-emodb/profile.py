"""Speaker profiles: a voice described by the statistics of a few of its clips (no labels), so that a model with
`config.speaker_adaptation` hears each clip relative to that voice rather than to the average speaker.

A profile is the mean of the model's pooled features over the reference clips, with how much evidence it holds:
the number of clips (or speech segments of a long recording) and their spread (their seconds are recorded for
reports; the weight counts pieces of at most one window each). The model shrinks the profile toward its training
population by that evidence (`SERConfig.profile_prior_clips`); clips that vary less than a speaker's clips usually
do (all of one mood) count as fewer, and the first `profile_offset_clips` count for nothing: a handful of angry
references leaves the answer as it is, because their mean says as much about the anger as about the voice.

Models with `config.mood_aware_profiles` also read the references without adaptation: references mostly heard as one
label look like one mood (a caller angry all along, an interview in one tone), and the larger that share, the less
the profile acts, down to not at all (`config.profile_mood_shares`), however many clips it holds; and its mean is
taken without the offsets of the labels each reference was heard as. Measured on the validation speakers: centring
on one mood's clips cost accuracy, more the more clips there were, and these two rules remove that loss while
keeping the gain of varied references.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

import numpy as np


def spread_of(features: np.ndarray, population_std: np.ndarray) -> float:
    """How much clips vary: the mean standard deviation over them of their features scaled by the population's."""
    return float((features / population_std).std(axis=0).mean())


def effective_clips(num_clips: int, spread: float, config) -> float:
    """How many clips a profile counts as (see `SERConfig.profile_prior_clips` and `profile_offset_clips`)."""
    varied = num_clips * min(1.0, spread / config.reference_spread)
    return max(0.0, varied - config.profile_offset_clips)


class ProfileError(ValueError):
    """A profile that cannot be built or used (too few clips, another model's profile, a damaged file)."""


def model_signature(model) -> str:
    """Ties a profile to the population statistics of the model it was built with (`config.profile_signature`,
    set with them in training; in any dtype the same)."""
    if model.config.profile_signature:
        return model.config.profile_signature
    return hashlib.sha1(model.population_mean.detach().float().cpu().numpy().round(5).tobytes()).hexdigest()[:16]


@dataclass
class SpeakerProfile:
    """The statistics of a speaker's reference clips.

    Attributes:
        mean: mean of the model's pooled features over the clips, `(pooled_size,)`.
        num_clips: how many clips (or speech segments) it was built from.
        seconds: their total duration.
        spread: mean standard deviation of the standardized features over the clips (how much they vary).
        model: signature of the model whose features these are (`model_signature`).
        sources: the names of the references, for reports.
        mood_label, mood_share: the label most of the references are heard as without adaptation, and their
            share (None for a model without `config.mood_aware_profiles`).
    """

    mean: np.ndarray
    num_clips: int
    seconds: float
    spread: float
    model: str
    sources: list[str] | None = None
    mood_label: str | None = None
    mood_share: float | None = None

    @classmethod
    def from_features(cls, model, features: np.ndarray, seconds: float, sources: list[str] | None = None) -> SpeakerProfile:
        """A profile from the pooled features `(clips, pooled_size)` of a speaker's references (`ProfileError`
        for fewer than `config.profile_min_clips` clips)."""
        config = model.config
        if not config.speaker_adaptation:
            raise ProfileError("this model was trained without speaker adaptation: it takes no speaker profile")
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != config.pooled_size:
            raise ProfileError(f"expected features of shape (clips, {config.pooled_size}), got {features.shape}")
        if len(features) < config.profile_min_clips:
            raise ProfileError(
                f"a speaker profile needs at least {config.profile_min_clips} clips or speech segments, got "
                f"{len(features)}: one clip cannot tell a voice from its mood"
            )
        spread = spread_of(features, model.population_std.detach().float().cpu().numpy())
        mean, mood_label, mood_share = features.mean(axis=0), None, None
        if getattr(config, "mood_aware_profiles", False):
            import torch

            probs = model.reference_probabilities(torch.from_numpy(features)).cpu().numpy()
            counts = np.bincount(probs.argmax(axis=1), minlength=config.num_labels)
            mood_label, mood_share = config.id2label[int(counts.argmax())], float(counts.max() / len(features))
            offsets = model.label_offsets.detach().float().cpu().numpy()
            mean = (features - probs @ offsets).mean(axis=0)
        return cls(mean, len(features), float(seconds), spread, model_signature(model), sources, mood_label, mood_share)

    def mood_factor(self, config) -> float:
        """How much of its weight the profile keeps given the share of its references heard as one label: 1 up to
        the first of `config.profile_mood_shares`, 0 from the second on, linear between (1 without mood-aware
        profiles)."""
        if not getattr(config, "mood_aware_profiles", False) or self.mood_share is None:
            return 1.0
        full, none = config.profile_mood_shares
        return float(np.clip((none - self.mood_share) / (none - full), 0.0, 1.0))

    def one_mood(self, config) -> bool:
        """Whether the references sound so much like one mood that the profile does not act."""
        return self.mood_factor(config) == 0.0

    def effective_clips(self, config) -> float:
        """The clips the profile counts as: fewer when they vary less than a training speaker's clips do, less the
        model's `profile_offset_clips` (never below 0)."""
        return effective_clips(self.num_clips, self.spread, config)

    def weight(self, config) -> float:
        """How far the profile moves the centre from the population's toward its own mean (0 to 1)."""
        n = self.effective_clips(config)
        return self.mood_factor(config) * n / (n + config.profile_prior_clips) if n > 0 else 0.0

    def check(self, model) -> None:
        if model_signature(model) != self.model:
            raise ProfileError("this speaker profile was built with another model's features: build it again with this model")

    def describe(self, config) -> str:
        if self.one_mood(config):
            return (
                f"a speaker profile of {self.num_clips} clips that sound like one mood ({self.mood_share:.0%} heard as "
                f"{self.mood_label}): answered as without one, since centring on them would take that mood away"
            )
        if self.weight(config) == 0:
            return (
                f"a speaker profile of {self.num_clips} clips, too few to act (it needs more than "
                f"{config.profile_offset_clips:g} varied clips): answered as without one"
            )
        mood = self.mood_factor(config)
        reduced = f"; less, as {self.mood_share:.0%} of them are heard as {self.mood_label}" if mood < 1 else ""
        return (
            f"adapted to a speaker profile of {self.num_clips} clips ({self.seconds:.0f} s; "
            f"weight {self.weight(config):.2f}{reduced})"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": [float(x) for x in self.mean]}

    @classmethod
    def from_dict(cls, data: dict) -> SpeakerProfile:
        try:
            return cls(**{**data, "mean": np.asarray(data["mean"], dtype=np.float32)})
        except (TypeError, KeyError) as err:
            raise ProfileError(f"not a speaker profile: {err}") from err

    def save(self, path: str | os.PathLike) -> None:
        """Writes the profile as JSON."""
        with open(path, "w") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpeakerProfile:
        try:
            with open(path) as f:
                return cls.from_dict(json.load(f))
        except (OSError, TypeError, json.JSONDecodeError) as err:
            raise ProfileError(f"cannot read a speaker profile from {path}: {err}") from err
