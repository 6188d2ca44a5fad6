"""An auxiliary training target: the 88 eGeMAPS functionals of each clip (openSMILE), predicted from the pooled
embedding by a linear layer that exists during training only.

A small encoder trained from scratch on a few hundred clips per speaker has to discover pitch, loudness and voice
quality by itself; eGeMAPS (Eyben et al. 2016) is the standard set of exactly those cues for affect, and a
classical eGeMAPS + logistic regression is a strong speaker-independent baseline on RAVDESS. Regressing it
alongside the emotion label steers the encoder towards those cues. The saved model is an ordinary `SERForSequenceClassification`:
the auxiliary layer is left out of it, and inference needs no openSMILE.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from torch import nn
from tqdm.auto import tqdm
from transformers.modeling_outputs import SequenceClassifierOutput

from modeling import SERForSequenceClassification, load_audio

from serving.files import atomic_path

from .sources import audio_source

logger = logging.getLogger(__name__)

FEATURE_SET = "eGeMAPSv02 functionals (openSMILE)"


def egemaps_functionals(records: list[dict], cache_dir: Path, sampling_rate: int = 16_000) -> np.ndarray:
    """`(len(records), 88)` eGeMAPS functionals of each clip's decoded audio, cached on disk by the clips' bytes.

    Clips that cannot be decoded get NaN rows (they are dropped later by the preprocessing anyway).
    """
    key = hashlib.sha1(json.dumps([FEATURE_SET, [r["sha1"] for r in records]]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"egemaps-{key}.npy"
    if path.exists():
        return np.load(path)
    import opensmile  # training-only dependency

    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
    )
    out = np.full((len(records), 88), np.nan, np.float32)
    for i, record in enumerate(tqdm(records, desc="eGeMAPS functionals", unit="clip")):
        try:
            wave = load_audio(audio_source(record["audio"]), sampling_rate)
        except ValueError:
            continue
        out[i] = smile.process_signal(wave, sampling_rate).to_numpy(np.float32)[0]
    with atomic_path(path) as tmp:
        np.save(tmp, out)
    return out


def standardize(targets: np.ndarray, train_rows: list[int]) -> np.ndarray:
    """Z-scores with the training part's mean and standard deviation (no statistics from held-out speakers)."""
    train = targets[train_rows]
    mean = np.nanmean(train, axis=0)
    std = np.nanstd(train, axis=0)
    std[~(std > 1e-8)] = 1.0
    # Clipped: a functional that barely varies among the training speakers would otherwise give held-out clips
    # z-scores in the thousands, and the squared error would drown the classification loss.
    return np.clip(np.nan_to_num((targets - mean) / std), -5.0, 5.0).astype(np.float32)


class AuxiliaryTargetModel(nn.Module):
    """`SERForSequenceClassification` plus a training-only linear layer from the pooled embedding to the auxiliary targets.

    `forward` returns the classifier's logits and the loss `cross_entropy + weight * mse(auxiliary)`; the wrapped
    model is what gets saved.
    """

    accepts_loss_kwargs = False  # Trainer averages the loss over devices and accumulation steps itself

    def __init__(self, model: SERForSequenceClassification, num_targets: int, weight: float):
        super().__init__()
        self.model = model
        self.auxiliary = nn.Linear(model.config.pooled_size, num_targets)
        self.weight = weight

    @property
    def config(self):
        return self.model.config

    def forward(self, input_values, attention_mask=None, labels=None, auxiliary_targets=None, class_weights=None, **kwargs):
        pooled = self.model.embed(input_values, attention_mask)
        output = self.model.classify(pooled, labels, class_weights=class_weights)
        if labels is not None and auxiliary_targets is not None:
            predicted = self.auxiliary(self.model.combine_layers(pooled))
            output.loss = output.loss + self.weight * nn.functional.mse_loss(predicted, auxiliary_targets.to(predicted.dtype))
        return SequenceClassifierOutput(loss=output.loss, logits=output.logits)


def unwrap(model: nn.Module) -> SERForSequenceClassification:
    return model.model if isinstance(model, AuxiliaryTargetModel) else model

