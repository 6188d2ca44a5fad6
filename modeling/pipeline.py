"""`pipeline("audio-classification")` with the project's decoding and resampling.

transformers' own pipeline decodes files with the ffmpeg CLI and needs torchaudio to resample; this subclass sends
files, bytes and arrays at any rate through `modeling.audio`, so the pipeline sees exactly what training saw.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from transformers.pipelines.audio_classification import AudioClassificationPipeline

from .audio import load_audio, prepare_waveform
from .configuration_ser import SERConfig


class SERAudioClassificationPipeline(AudioClassificationPipeline):
    """The "audio-classification" pipeline for every model once `modeling` is imported: SER models get this
    project's decoding and checks; any other model gets transformers' own preprocessing, unchanged."""

    def preprocess(self, inputs: Any):
        if not isinstance(self.model.config, SERConfig):
            return super().preprocess(inputs)
        sampling_rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, (str, os.PathLike)) and not str(inputs).startswith(("http://", "https://")):
            wave = load_audio(inputs, sampling_rate)
        elif isinstance(inputs, (bytes, bytearray)):
            wave = load_audio(inputs, sampling_rate)
        elif isinstance(inputs, dict) and "sampling_rate" in inputs and ("raw" in inputs or "array" in inputs):
            array = inputs["raw"] if "raw" in inputs else inputs["array"]
            wave = prepare_waveform(_to_numpy(array), int(inputs["sampling_rate"]), sampling_rate)
        elif isinstance(inputs, (np.ndarray, torch.Tensor)):
            wave = prepare_waveform(_to_numpy(inputs), sampling_rate, sampling_rate)
        else:
            return super().preprocess(inputs)
        processed = self.feature_extractor(wave, sampling_rate=sampling_rate, return_tensors="pt")
        if self.dtype is not None:
            processed = processed.to(dtype=self.dtype)
        return processed


def _to_numpy(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)
