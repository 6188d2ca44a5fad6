"""Speech emotion recognition: a Wav2Vec2-family (or GE2E) backbone, masked pooling and an MLP head, optionally
relative to a speaker profile."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.dynamic_module_utils import custom_object_save
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils.generic import can_return_tuple

from .configuration_ser import SERConfig
from .voice_encoder import GE2EConfig, GE2EModel

AutoModel.register(GE2EConfig, GE2EModel, exist_ok=True)

# The pipeline that carries this model's inference policy (speech detection, speech segments, calibration): written
# into config.json's `custom_pipelines` on save, with its code, so that `pipeline("audio-classification", model=...,
# trust_remote_code=True)` runs it wherever the folder goes.
CUSTOM_PIPELINES = {
    "audio-classification": {
        "impl": "pipeline_ser.SERAudioClassificationPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "tf": [],
        "type": "audio",
    }
}


def masked_mean(hidden_states: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the time axis (-2) of `(..., frames, hidden)`, counting only frames where `frame_mask` is 1."""
    if frame_mask is None:
        return hidden_states.mean(dim=-2)
    mask = frame_mask.to(hidden_states.dtype)
    while mask.dim() < hidden_states.dim() - 1:
        mask = mask.unsqueeze(1)  # broadcast over the layer axis
    total = (hidden_states * mask.unsqueeze(-1)).sum(dim=-2)
    return total / mask.sum(dim=-1, keepdim=True).clamp(min=1.0)


def masked_mean_std(hidden_states: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
    """Statistics pooling: mean and standard deviation over the non-padding frames, concatenated on the last axis."""
    mean = masked_mean(hidden_states, frame_mask)
    variance = masked_mean((hidden_states - mean.unsqueeze(-2)).pow(2), frame_mask)
    return torch.cat([mean, variance.clamp(min=0.0).sqrt()], dim=-1)


class SERPreTrainedModel(PreTrainedModel):
    config: SERConfig
    config_class = SERConfig
    base_model_prefix = "backbone"
    main_input_name = "input_values"
    input_modalities = "audio"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # Weights load from safetensors only: a pickled checkpoint (.bin) can run code when unpickled.
        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(*args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Saves as transformers does, plus the pipeline of the inference policy (`CUSTOM_PIPELINES`) and its code."""
        from .pipeline_ser import SERAudioClassificationPipeline

        # Only with the code beside it: a config must not name a pipeline file that is not there.
        ships_code = self._auto_class is not None
        if ships_code:
            self.config.custom_pipelines = CUSTOM_PIPELINES
        super().save_pretrained(save_directory, *args, **kwargs)
        if ships_code and kwargs.get("is_main_process", True):
            custom_object_save(SERAudioClassificationPipeline, save_directory)

    def _init_weights(self, module: nn.Module) -> None:
        # The backbone is a PreTrainedModel and initializes its own modules; this covers the head.
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, SERForSequenceClassification):
            if module.layer_weights is not None:
                init.constant_(module.layer_weights, 1.0 / module.layer_weights.numel())
            if module.config.speaker_adaptation:
                init.zeros_(module.population_mean)
                init.ones_(module.population_std)
                if module.config.mood_aware_profiles:
                    init.zeros_(module.label_offsets)


class SERForSequenceClassification(SERPreTrainedModel):
    """Wav2Vec2-family encoder -> mean over non-padding frames -> Linear-ReLU-Dropout-Linear.

    `forward` takes raw `input_values` (from [`SERFeatureExtractor`]) or, to train the head on cached features,
    `pooled_embeddings` from [`SERForSequenceClassification.embed`].
    """

    # forward(**kwargs) passes backbone options on; it takes no loss-scaling arguments, so Trainer must average
    # the loss over devices and accumulation steps itself.
    accepts_loss_kwargs = False

    def __init__(self, config: SERConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.backbone_config)
        self.layer_weights = nn.Parameter(torch.empty(config.num_pooled_layers)) if config.pooling == "weighted_mean" else None
        if config.speaker_adaptation:
            # Set from the training data (`set_population`); saved with the weights.
            self.register_buffer("population_mean", torch.zeros(config.pooled_size))
            self.register_buffer("population_std", torch.ones(config.pooled_size))
            if config.mood_aware_profiles:  # set with `set_label_offsets`
                self.register_buffer("label_offsets", torch.zeros(config.num_labels, config.pooled_size))
        self.head = nn.Sequential(
            nn.Linear(config.pooled_size, config.head_hidden_size),
            nn.ReLU(),
            nn.Dropout(config.head_dropout),
            nn.Linear(config.head_hidden_size, config.num_labels),
        )
        self.post_init()
        self.apply_freezing()

    @classmethod
    def from_backbone(cls, backbone_name_or_path: str, **kwargs) -> "SERForSequenceClassification":
        """A new model around pretrained backbone weights (a Hub id such as `facebook/wav2vec2-base`, or a folder).

        Keyword arguments are `SERConfig` fields (`pooling`, `freeze_backbone`, ...); the head starts random.
        """
        hub_kwargs = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "token", "local_files_only") if k in kwargs}
        saved, _ = PretrainedConfig.get_config_dict(backbone_name_or_path, **hub_kwargs)
        if saved.get("model_type") == SERConfig.model_type:
            raise ValueError(
                f"{backbone_name_or_path} is already a speech emotion model, not a backbone: load it with "
                f"{cls.__name__}.from_pretrained({str(backbone_name_or_path)!r}) (new labels: add id2label=..., "
                "ignore_mismatched_sizes=True)"
            )
        backbone = AutoModel.from_pretrained(backbone_name_or_path, **hub_kwargs)
        model = cls(SERConfig(backbone_config=backbone.config.to_dict(), **kwargs))
        model.backbone.load_state_dict(backbone.state_dict())
        return model

    def apply_freezing(self) -> None:
        """Applies `config.freeze_feature_encoder` and `config.freeze_backbone` to `requires_grad`."""
        if self.config.freeze_feature_encoder and hasattr(self.backbone, "feature_extractor"):
            self.backbone.feature_extractor._freeze_parameters()
        if self.config.freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "SERForSequenceClassification":
        super().train(mode)
        # A frozen backbone stays deterministic (no dropout, no SpecAugment), so it matches cached embeddings.
        if self.config.freeze_backbone:
            self.backbone.eval()
        return self

    def _backbone_attention_mask(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        # Group-norm feature encoders (e.g. wav2vec2-base) were pre-trained on zero-padded batches without a mask;
        # the transformers docs advise not passing one to them. Pooling uses the mask either way.
        if getattr(self.config.backbone_config, "feat_extract_norm", "layer") == "group":
            return None
        return attention_mask

    def embed(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled backbone features, `(batch, num_pooled_layers, hidden)`: the input of [`classify`]."""
        return self._encode(input_values, attention_mask)[0]

    def _encode(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None, **kwargs):
        """Runs the backbone (`kwargs` go to it) and pools: `(pooled features, backbone outputs)`."""
        weighted = self.config.pooling == "weighted_mean"
        outputs = self.backbone(
            input_values,
            attention_mask=self._backbone_attention_mask(attention_mask),
            **{**kwargs, "output_hidden_states": weighted or self._wants_hidden_states(kwargs), "return_dict": True},
        )
        hidden = torch.stack(outputs.hidden_states, dim=1) if weighted else outputs.last_hidden_state.unsqueeze(1)
        pool = masked_mean_std if self.config.pooling == "mean_std" else masked_mean
        return pool(hidden, self._frame_mask(hidden.shape[-2], attention_mask)), outputs

    def _wants_hidden_states(self, kwargs: dict) -> bool:
        """The caller's `output_hidden_states`, else the config's, as in transformers."""
        wanted = kwargs.get("output_hidden_states")
        return bool(self.config.output_hidden_states if wanted is None else wanted)

    def _frame_mask(self, num_frames: int, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """1 for encoder frames computed from real samples. Padding is on the right, so a length comparison
        suffices: fewer kernels than transformers' cumsum-and-scatter version, which matters at small sizes."""
        if attention_mask is None:
            return None
        lengths = self.backbone._get_feat_extract_output_lengths(attention_mask.sum(-1))
        return torch.arange(num_frames, device=attention_mask.device)[None, :] < lengths[:, None]

    def combine_layers(self, pooled_embeddings: torch.Tensor) -> torch.Tensor:
        """`(batch, num_pooled_layers, hidden)` -> `(batch, hidden)`: the learned layer mix, or the last layer."""
        if self.layer_weights is not None:
            weights = nn.functional.softmax(self.layer_weights, dim=-1)
            return (pooled_embeddings * weights.view(1, -1, 1)).sum(dim=1)
        return pooled_embeddings[:, -1]

    def set_population(self, features: torch.Tensor) -> None:
        """Sets `population_mean` and `population_std` from the training data's combined pooled features
        `(clips, pooled_size)` (`combine_layers` of [`embed`]), and `config.profile_signature`. (The training
        code also sets `config.reference_spread`, from the same speakers.)"""
        if not self.config.speaker_adaptation:
            raise ValueError("the model was not built with speaker_adaptation=True")
        import hashlib

        features = features.detach().float()
        with torch.no_grad():
            self.population_mean.copy_(features.mean(0))
            self.population_std.copy_(features.std(0).clamp(min=1e-6))
        digest = hashlib.sha1(features.mean(0).cpu().numpy().round(5).tobytes()).hexdigest()[:16]
        self.config.profile_signature = digest

    def set_label_offsets(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Sets `label_offsets` from clean training clips' combined pooled features `(clips, pooled_size)` and their
        label ids (each label's mean minus `population_mean`, which `set_population` must have set; zeros for a
        label without clips), and turns on `config.mood_aware_profiles`. A reference heard as a label is, on
        average, the population's mean, that label's offset and its speaker's voice."""
        if not self.config.speaker_adaptation:
            raise ValueError("the model was not built with speaker_adaptation=True")
        features, labels = features.detach().float(), labels.to(features.device)
        offsets = torch.zeros(self.config.num_labels, self.config.pooled_size, device=features.device)
        for label in range(self.config.num_labels):
            if (labels == label).any():
                offsets[label] = features[labels == label].mean(0) - self.population_mean.to(features)
        if not self.config.mood_aware_profiles:
            self.register_buffer("label_offsets", offsets.to(self.population_mean))
            self.config.mood_aware_profiles = True
        else:
            with torch.no_grad():
                self.label_offsets.copy_(offsets)

    @torch.no_grad()
    def reference_probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """How a profile's references `(clips, pooled_size)` are heard without adaptation (calibrated probabilities)."""
        logits = self.head((features.to(self.population_mean) - self.population_mean) / self.population_std)
        return (logits / self.config.temperature).float().softmax(-1)

    def speaker_center(self, profile) -> torch.Tensor:
        """The centre a [`SpeakerProfile`] gives: its mean, shrunk toward the population's by its evidence."""
        profile.check(self)
        weight = profile.weight(self.config)
        mean = torch.as_tensor(profile.mean).to(self.population_mean)
        return weight * mean + (1.0 - weight) * self.population_mean

    def classify(
        self,
        pooled_embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        speaker_center: torch.Tensor | None = None,
        class_weights: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        """Head and loss on pooled features `(batch, num_pooled_layers, pooled_size)`. With `config.speaker_adaptation`,
        the features are first centred on `speaker_center` (`(pooled_size,)` or `(batch, pooled_size)`, from
        [`speaker_center`]; the population mean when None) and scaled by the population's spread. The logits are
        divided by `config.temperature` (1 until calibration), so every path to probabilities gets calibrated ones."""
        features = self.combine_layers(pooled_embeddings)
        if self.config.speaker_adaptation:
            center = self.population_mean if speaker_center is None else speaker_center.to(features)
            features = (features - center) / self.population_std
        elif speaker_center is not None:
            raise ValueError("this model was trained without speaker adaptation: it takes no speaker profile")
        logits = self.head(features) / self.config.temperature
        loss = None
        if labels is not None:
            weight = None if class_weights is None else class_weights.to(logits)
            loss = nn.functional.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1), weight=weight)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pooled_embeddings: torch.Tensor | None = None,
        speaker_center: torch.Tensor | None = None,
        class_weights: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch, samples)`):
            Waveforms prepared by [`SERFeatureExtractor`].
        attention_mask (`torch.LongTensor` of shape `(batch, samples)`, *optional*):
            1 for real samples, 0 for padding; padding frames are left out of the mean.
        labels (`torch.LongTensor` of shape `(batch,)`, *optional*):
            Class indices; when given, the output holds the cross-entropy loss.
        pooled_embeddings (`torch.FloatTensor` of shape `(batch, num_pooled_layers, hidden)`, *optional*):
            Cached output of [`embed`], used instead of running the backbone.
        speaker_center (`torch.FloatTensor` of shape `(pooled_size,)` or `(batch, pooled_size)`, *optional*):
            A speaker profile's centre ([`speaker_center`]); only for models with `config.speaker_adaptation`.
        class_weights (`torch.FloatTensor` of shape `(num_labels,)`, *optional*):
            Weights of the classes in the loss (training on unbalanced corpora).
        kwargs:
            Passed on to the backbone, as in transformers' classifiers: `output_hidden_states` and
            `output_attentions` (returned in the output's `hidden_states` and `attentions`), `mask_time_indices`.
            `return_dict=False` returns a tuple.
        """
        backbone_outputs = None
        if pooled_embeddings is None:
            if input_values is None:
                raise ValueError(f"{type(self).__name__} needs `input_values` or `pooled_embeddings`")
            pooled_embeddings, backbone_outputs = self._encode(input_values, attention_mask, **kwargs)
        output = self.classify(pooled_embeddings, labels, speaker_center, class_weights)
        if backbone_outputs is not None:
            # Weighted pooling computes every hidden state; they are returned only when asked for, as in transformers.
            output.hidden_states = backbone_outputs.hidden_states if self._wants_hidden_states(kwargs) else None
            output.attentions = backbone_outputs.attentions
        return output


# The name of this class before it followed transformers' naming; code and folders saved with it keep working.
SERModel = SERForSequenceClassification
