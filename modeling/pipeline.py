"""`pipeline("audio-classification")` with the project's decoding and resampling.

transformers' own pipeline decodes files with the ffmpeg CLI and needs torchaudio to resample; this subclass sends
files, bytes and arrays at any rate through `modeling.audio`, so the pipeline sees exactly what training saw.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.pipelines.audio_classification import AudioClassificationPipeline

from .audio import load_audio, prepare_waveform
from .configuration_ser import SERConfig
from .inference import predict_long


class SERAudioClassificationPipeline(AudioClassificationPipeline):
    """The "audio-classification" pipeline for every model once `modeling` is imported: SER models get this
    project's decoding and checks; any other model gets transformers' own preprocessing, unchanged."""

    def preprocess(self, inputs: Any):
        if not isinstance(self.model.config, SERConfig):
            return super().preprocess(inputs)
        sampling_rate = self.feature_extractor.sampling_rate
        # The longest audio the pipeline classifies: files are refused from their header, arrays before resampling.
        limit = self.feature_extractor.max_duration_s
        if isinstance(inputs, (str, os.PathLike)) and not str(inputs).startswith(("http://", "https://")):
            wave = load_audio(inputs, sampling_rate, max_duration_s=limit)
        elif isinstance(inputs, (bytes, bytearray)):
            wave = load_audio(inputs, sampling_rate, max_duration_s=limit)
        elif isinstance(inputs, dict) and "sampling_rate" in inputs and ("raw" in inputs or "array" in inputs):
            array = inputs["raw"] if "raw" in inputs else inputs["array"]
            wave = prepare_waveform(_to_numpy(array), int(inputs["sampling_rate"]), sampling_rate, max_duration_s=limit)
        elif isinstance(inputs, (np.ndarray, torch.Tensor)):
            wave = prepare_waveform(_to_numpy(inputs), sampling_rate, sampling_rate, max_duration_s=limit)
        else:
            return super().preprocess(inputs)
        return {"ser_waveform": wave}

    def _forward(self, model_inputs):
        if "ser_waveform" not in model_inputs:
            return super()._forward(model_inputs)
        # One pass or windows, exactly as predict.py and the demo decide (modeling.predict_long).
        result = predict_long(self.model, self.feature_extractor, model_inputs["ser_waveform"])
        probs = torch.tensor([list(result.scores.values())], dtype=torch.float64)  # in id2label order
        # postprocess applies a softmax: the log of probabilities that sum to 1 gives them back.
        return SequenceClassifierOutput(logits=probs.clamp_min(1e-30).log())


def _to_numpy(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)
