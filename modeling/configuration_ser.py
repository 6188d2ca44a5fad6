"""Configuration of the speech emotion recognition model."""

from __future__ import annotations

from typing import Literal

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .voice_encoder import GE2EConfig

POOLING_MODES = ("mean", "weighted_mean", "mean_std")

# The GE2E speaker encoder is a backbone this package brings itself: registered so that `backbone_config`
# {"model_type": "ge2e"} resolves wherever this file is imported (also as remote code).
AutoConfig.register(GE2EConfig.model_type, GE2EConfig, exist_ok=True)


class SERConfig(PretrainedConfig):
    r"""
    Configuration of a [`SERForSequenceClassification`]: a Wav2Vec2-family backbone, pooling over time and an MLP head.

    Args:
        backbone_config (`dict` or `PretrainedConfig`, *optional*):
            Config of the speech encoder: any Wav2Vec2-family config that `AutoConfig` knows (wav2vec2, hubert,
            wavlm, data2vec-audio), or `{"model_type": "ge2e"}` for the pretrained GE2E speaker encoder of
            `voice_encoder.py`. Defaults to a `Wav2Vec2Config()`, the size of `facebook/wav2vec2-base`.
        head_hidden_size (`int`, *optional*, defaults to 256):
            Width of the head's hidden layer: `Linear(hidden -> 256) -> ReLU -> Dropout -> Linear(256 -> labels)`.
        head_dropout (`float`, *optional*, defaults to 0.3):
            Dropout between the two layers of the head.
        pooling (`str`, *optional*, defaults to `"mean"`):
            `"mean"`: mean of the last hidden layer over the non-padding frames. `"weighted_mean"`: the same mean
            over a learned softmax-weighted sum of all hidden layers (embeddings included), as in SUPERB.
            `"mean_std"`: statistics pooling, the mean and the standard deviation of the last hidden layer over the
            non-padding frames, concatenated (as in x-vectors).
        freeze_feature_encoder (`bool`, *optional*, defaults to `True`):
            Keep the convolutional feature encoder fixed during training (standard for wav2vec2 fine-tuning).
        freeze_backbone (`bool`, *optional*, defaults to `False`):
            Keep the whole backbone fixed and train the head (and layer weights) only.
        temperature (`float`, *optional*, defaults to 1.0):
            The logits are divided by it (temperature scaling), so that the probabilities are calibrated: it is
            fitted on the validation speakers after training (the model card gives the figures). The predicted label
            does not depend on it.
        uncertainty_threshold (`float`, *optional*, defaults to 0.5):
            A prediction is flagged as uncertain (`SERClassifier`, the pipeline with `details=True`) when its top
            (calibrated) probability is below
            this: at 0.5, the model is then more likely wrong than right.
        robustness (`dict[str, float]`, *optional*):
            Accuracy measured by a robustness benchmark on held-out speakers, per condition (`clean`, `telephone`,
            `noise`, `clipping`, `quiet`, ...): the input-quality report quotes it when an input falls in one of
            them. None when not measured.
        speaker_adaptation (`bool`, *optional*, defaults to `False`):
            Standardize the pooled features before the head: centred on a speaker's profile when one is given (see
            `profile.py`), else on the training population, and scaled by the population's spread. The model
            then holds `population_mean` and `population_std` buffers, set from the training data.
        profile_prior_clips (`float`, *optional*, defaults to 8.0):
            Shrinkage of a speaker profile toward the population: the centre used is
            `(n * profile_mean + k * population_mean) / (n + k)`, with `k` this value and `n` the profile's
            effective number of clips (its clips, fewer when they vary less than a speaker's clips usually do,
            as references of a single mood do, less `profile_offset_clips`). Training picks it on the validation
            speakers.
        profile_offset_clips (`float`, *optional*, defaults to 4.0):
            Clips a profile must hold beyond these before it acts: on held-out speakers, centring on 2-4 clips of
            one or two moods cost accuracy at every shrinkage tried, because their mean carries the mood away with
            the voice. A profile of up to this many (effective) clips leaves the answer as it is without one.
        reference_spread (`float`, *optional*, defaults to 1.0):
            How much a training speaker's clips usually vary (mean standard deviation of the standardized
            features over one speaker's clips); a profile whose clips vary less counts as fewer clips.
        profile_signature (`str`, *optional*):
            Identifies the population statistics a speaker profile was measured against (set with them); a profile
            of another model is refused.
        profile_min_clips (`int`, *optional*, defaults to 2):
            Fewest clips (or speech segments) a speaker profile is built from; one clip cannot tell a voice from
            its mood.
        mood_aware_profiles (`bool`, *optional*, defaults to `False`):
            Speaker profiles that keep a mood the speaker holds throughout. The model then holds `label_offsets`
            (each label's mean pooled features over its clean training clips, minus `population_mean`). A profile
            reads its references without adaptation first: the larger the share of them heard as one label, the
            more they look like one mood and the less the profile acts (see `profile_mood_shares`; centring on an
            angry speaker's clips would remove the anger); and each reference is counted without the offsets of
            the labels it was heard as, so that the profile describes the voice rather than its moods. False for
            models saved before (their profiles are plain means).
        profile_mood_shares (`list[float]`, *optional*, defaults to `[0.35, 0.75]`):
            With `mood_aware_profiles`: a profile acts fully while at most the first share of its references are
            heard as one label, not at all from the second share on, and in proportion between; picked on the
            validation speakers.
        id2label (`dict[int, str]`, *optional*):
            The model's labels, taken from the training data. Without labels (and without
            `num_labels`), the config gets transformers' two placeholders `LABEL_0`, `LABEL_1`: no dataset's label
            set is assumed.
    """

    model_type = "ser"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="wav2vec2")}

    backbone_config: dict | PretrainedConfig | None = None
    head_hidden_size: int = 256
    head_dropout: float = 0.3
    pooling: Literal["mean", "weighted_mean", "mean_std"] = "mean"
    freeze_feature_encoder: bool = True
    freeze_backbone: bool = False
    temperature: float = 1.0
    uncertainty_threshold: float = 0.5
    robustness: dict | None = None
    speaker_adaptation: bool = False
    profile_prior_clips: float = 8.0
    profile_offset_clips: float = 4.0
    reference_spread: float = 1.0
    profile_min_clips: int = 2
    profile_signature: str | None = None
    mood_aware_profiles: bool = False
    profile_mood_shares: list[float] | tuple[float, float] = (0.35, 0.75)

    def __post_init__(self, **kwargs):
        if self.id2label is not None and self.label2id is None:
            self.label2id = {label: int(i) for i, label in self.id2label.items()}
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        if not self.profile_prior_clips >= 0:
            raise ValueError(f"profile_prior_clips must be >= 0, got {self.profile_prior_clips}")
        full, none = self.profile_mood_shares
        if not 0 <= full < none <= 1:
            raise ValueError(f"profile_mood_shares must be two shares, the first below the second, got {self.profile_mood_shares}")
        super().__post_init__(**kwargs)
        if self.pooling == "weighted_mean" and self.backbone_config.model_type == GE2EConfig.model_type:
            raise ValueError("the GE2E backbone has a single hidden layer: use pooling 'mean' or 'mean_std'")

    @property
    def hidden_size(self) -> int:
        return self.backbone_config.hidden_size

    @property
    def pooled_size(self) -> int:
        """Width of the head's input: the hidden size, twice it with statistics pooling."""
        return 2 * self.hidden_size if self.pooling == "mean_std" else self.hidden_size

    @property
    def num_pooled_layers(self) -> int:
        """How many hidden layers the pooling reads: the last one, or all of them (embeddings included)."""
        return self.backbone_config.num_hidden_layers + 1 if self.pooling == "weighted_mean" else 1
