"""Configuration of the speech emotion recognition model."""

from __future__ import annotations

from typing import Literal

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

POOLING_MODES = ("mean", "weighted_mean")


class SERConfig(PretrainedConfig):
    r"""
    Configuration of a [`SERForSequenceClassification`]: a Wav2Vec2-family backbone, pooling over time and an MLP head.

    Args:
        backbone_config (`dict` or `PretrainedConfig`, *optional*):
            Config of the speech encoder: any Wav2Vec2-family config that `AutoConfig` knows (wav2vec2, hubert,
            wavlm, data2vec-audio). Defaults to a `Wav2Vec2Config()`, the size of `facebook/wav2vec2-base`.
        head_hidden_size (`int`, *optional*, defaults to 256):
            Width of the head's hidden layer: `Linear(hidden -> 256) -> ReLU -> Dropout -> Linear(256 -> labels)`.
        head_dropout (`float`, *optional*, defaults to 0.3):
            Dropout between the two layers of the head.
        pooling (`str`, *optional*, defaults to `"mean"`):
            `"mean"`: mean of the last hidden layer over the non-padding frames. `"weighted_mean"`: the same mean
            over a learned softmax-weighted sum of all hidden layers (embeddings included), as in SUPERB.
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
    pooling: Literal["mean", "weighted_mean"] = "mean"
    freeze_feature_encoder: bool = True
    freeze_backbone: bool = False
    temperature: float = 1.0
    uncertainty_threshold: float = 0.5
    robustness: dict | None = None

    def __post_init__(self, **kwargs):
        if self.id2label is not None and self.label2id is None:
            self.label2id = {label: int(i) for i, label in self.id2label.items()}
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        super().__post_init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        return self.backbone_config.hidden_size

    @property
    def num_pooled_layers(self) -> int:
        """How many hidden layers the pooling reads: the last one, or all of them (embeddings included)."""
        return self.backbone_config.num_hidden_layers + 1 if self.pooling == "weighted_mean" else 1
