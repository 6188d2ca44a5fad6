"""`pipeline("audio-classification", model=..., trust_remote_code=True)` for speech emotion models: the model's
inference policy (`inference.py`), shipped with the model and named in its config's `custom_pipelines`.

transformers' own audio pipeline would classify any input as one pass: a tone would get an emotion, and a long
recording would exhaust memory. This one decodes files with `audio.py`, refuses audio without speech, classifies long
recordings by their speech segments, and returns calibrated probabilities; on request the timeline and the
uncertainty flag.

    classifier = pipeline("audio-classification", model="user/ser-model", trust_remote_code=True)
    classifier("call.wav", top_k=None)                          # [{"label": ..., "score": ...}, ...]
    classifier("call.wav", candidate_labels=["angry", "happy", "neutral", "sad"])   # renormalized over these
    classifier("call.wav", details=True)   # + "uncertain", "duration_s", "timeline", "quality" (SNR, bandwidth, ...)

Speaker adaptation (models trained with it): `reference_audio=[...]` (a few recordings of the same voice, any mood)
or `speaker_profile=` (a `SpeakerProfile`, or the path of one saved as JSON) classifies relative to that voice;
`pipeline.build_profile([...])` makes a profile to reuse. A long recording adapts to its own speech segments unless
`self_adapt=False`; `details=True` says which was used ("adaptation").
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from transformers.pipelines.audio_classification import AudioClassificationPipeline

from .audio import AudioError, load_audio, prepare_waveform
from .inference import SERClassifier, check_candidate_labels
from .profile import SpeakerProfile


class SERAudioClassificationPipeline(AudioClassificationPipeline):
    """Inputs: a file path, the bytes of a file, `{"raw"|"array": samples, "sampling_rate": rate}` (any rate, mono
    or multi-channel), or a 1-D array at the model's rate. Arguments: `top_k` (the number of labels returned),
    `candidate_labels` (a subset of the model's labels; the answer is renormalized over them), `details` (a dict
    with the timeline, the uncertainty flag and the input-quality report instead of the list of labels). Raises `AudioError` for input that
    is not usable audio and its subclass `NoSpeechError` for audio without speech."""

    # (transformers 5 returns every label when `top_k` is not given; pass `top_k=5` for the five most likely.)

    @property
    def classifier(self) -> SERClassifier:
        # Built on first use: `_sanitize_parameters` runs inside `__init__` (for arguments given at construction,
        # such as reference_audio) before anything could be set after it.
        if getattr(self, "_classifier", None) is None:
            self._classifier = SERClassifier(self.model, self.feature_extractor)
        return self._classifier

    def check_model_type(self, supported_models):
        # transformers' list of audio classifiers does not name this model type; the config's custom_pipelines does.
        if getattr(self.model.config, "model_type", None) != "ser":
            super().check_model_type(supported_models)

    def build_profile(self, references: list, names: list[str] | None = None) -> SpeakerProfile:
        """A speaker profile from a few recordings of one voice (files, bytes or arrays at the model's rate)."""
        return self.classifier.build_profile(references, names)

    def _sanitize_parameters(
        self,
        top_k=None,
        function_to_apply=None,
        candidate_labels=None,
        details=None,
        speaker_profile=None,
        reference_audio=None,
        self_adapt=None,
        **kwargs,
    ):
        if function_to_apply not in (None, "softmax"):
            raise ValueError("this pipeline returns calibrated softmax probabilities; function_to_apply must be 'softmax'")
        preprocess, forward, postprocess = super()._sanitize_parameters(top_k=top_k, **kwargs)
        if candidate_labels is not None:
            labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
            forward["candidate_labels"] = check_candidate_labels(labels, candidate_labels)
        if details is not None:
            postprocess["details"] = forward["quality"] = bool(details)
        if speaker_profile is not None and reference_audio is not None:
            raise ValueError("give speaker_profile or reference_audio, not both")
        if reference_audio is not None:
            if isinstance(reference_audio, (str, bytes, os.PathLike, np.ndarray, dict)):
                reference_audio = [reference_audio]  # one recording, not a list of characters
            forward["profile"] = self.build_profile(list(reference_audio))
        elif speaker_profile is not None:
            if hasattr(speaker_profile, "to_dict"):  # a SpeakerProfile, also from another copy of this code
                profile = SpeakerProfile.from_dict(speaker_profile.to_dict())
            elif isinstance(speaker_profile, dict):
                profile = SpeakerProfile.from_dict(speaker_profile)
            else:
                profile = SpeakerProfile.load(speaker_profile)
            forward["profile"] = profile
        if self_adapt is not None:
            forward["self_adapt"] = bool(self_adapt)
        return preprocess, forward, postprocess

    def preprocess(self, inputs: Any):
        sampling_rate = self.feature_extractor.sampling_rate
        name = "audio"
        if isinstance(inputs, (str, os.PathLike)):
            if str(inputs).startswith(("http://", "https://")):
                raise AudioError(f"{inputs}: download the file first; this pipeline reads files, bytes and arrays")
            wave, name = load_audio(inputs, sampling_rate), os.path.basename(os.fspath(inputs))
        elif isinstance(inputs, (bytes, bytearray)):
            wave = load_audio(inputs, sampling_rate)
        elif isinstance(inputs, dict) and "sampling_rate" in inputs and ("raw" in inputs or "array" in inputs):
            array = inputs["raw"] if "raw" in inputs else inputs["array"]
            wave = prepare_waveform(_to_numpy(array), int(inputs["sampling_rate"]), sampling_rate)
        elif isinstance(inputs, (np.ndarray, torch.Tensor)):
            wave = prepare_waveform(_to_numpy(inputs), sampling_rate, sampling_rate)
        else:
            raise AudioError(
                f"cannot classify a {type(inputs).__name__}: give a file path, its bytes, a 1-D array at {sampling_rate} "
                'Hz, or {"raw": samples, "sampling_rate": rate}'
            )
        return {"ser_waveform": wave, "ser_name": name}

    def _forward(self, model_inputs, candidate_labels=None, quality=False, profile=None, self_adapt=True):
        wave, name = model_inputs["ser_waveform"], model_inputs["ser_name"]
        prediction = self.classifier.classify(
            wave, candidate_labels=candidate_labels, name=name, quality=quality, profile=profile, self_adapt=self_adapt
        )
        return {"ser_prediction": prediction}

    def postprocess(self, model_outputs, top_k=5, function_to_apply=None, details=False):
        prediction = model_outputs["ser_prediction"]
        ranked = sorted(prediction.scores.items(), key=lambda item: item[1], reverse=True)[:top_k]
        scores = [{"label": label, "score": score} for label, score in ranked]
        if not details:
            return scores
        return {
            "label": prediction.label,
            "score": prediction.score,
            "scores": scores,
            "uncertain": prediction.uncertain,
            "duration_s": prediction.duration_s,
            "timeline": prediction.timeline(),
            "quality": prediction.quality.to_dict() if prediction.quality else None,
            "adaptation": prediction.adaptation,
        }


def _to_numpy(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)
