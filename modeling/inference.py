"""Inference helpers: class probabilities for clips, and a sliding-window timeline for long recordings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import BatchFeature

from .audio import AudioError, AudioSource, check_waveform, load_audio
from .feature_extraction_ser import SERFeatureExtractor
from .modeling_ser import SERModel


@torch.inference_mode()
def probabilities(model: SERModel, inputs: BatchFeature) -> np.ndarray:
    """Softmax over the model's logits for a prepared batch (`input_values`, `attention_mask`)."""
    inputs = inputs.to(model.device)
    if model.dtype != torch.float32:
        inputs["input_values"] = inputs["input_values"].to(model.dtype)
    return model(**inputs).logits.float().softmax(dim=-1).cpu().numpy()


def predict_proba(model: SERModel, feature_extractor: SERFeatureExtractor, waves: list[np.ndarray]) -> np.ndarray:
    """Softmax probabilities `(len(waves), num_labels)` for 16 kHz mono waveforms, run as one padded batch."""
    return probabilities(model, feature_extractor(waves, return_tensors="pt"))


def window_spans(num_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Start/end sample of each window; the last one is aligned to the end so that every sample is covered."""
    if num_samples <= window:
        return [(0, num_samples)]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return [(s, s + window) for s in starts]


@dataclass
class WindowPrediction:
    start_s: float
    end_s: float
    scores: dict[str, float] | None  # None for a silent window, which is left out of the aggregate


@dataclass
class LongPrediction:
    label: str
    scores: dict[str, float]
    duration_s: float
    windows: list[WindowPrediction] = field(default_factory=list)


def predict_long(
    model: SERModel,
    feature_extractor: SERFeatureExtractor,
    audio: np.ndarray | AudioSource,
    window_s: float | None = None,
    hop_s: float | None = None,
    batch_size: int = 8,
) -> LongPrediction:
    """Classifies audio of any length: the one inference policy of the pipeline, `predict.py` and the demo.

    Audio up to `window_s` (default: the feature extractor's `window_s`, saved with the model) is one pass over
    the whole clip. Longer audio is cut into `window_s` windows every `hop_s` seconds (default: the feature
    extractor's `hop_s`), run `batch_size` windows at a time: memory stays flat whatever the length, since
    self-attention cost grows with the square of the input length. Each window goes through the same
    preprocessing as a single clip. The aggregate is the mean of the window probabilities, silent windows
    excluded.
    """
    window_s = feature_extractor.window_s if window_s is None else window_s
    hop_s = feature_extractor.hop_s if hop_s is None else hop_s
    if hop_s <= 0 or window_s <= 0 or hop_s > window_s:
        raise ValueError(f"need 0 < hop_s <= window_s, got window_s={window_s}, hop_s={hop_s}")
    sr = feature_extractor.sampling_rate
    if isinstance(audio, np.ndarray):
        check_waveform(audio, sr)
        wave = audio
    else:
        wave = load_audio(audio, sr)  # checked there
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    spans = window_spans(len(wave), int(window_s * sr), int(hop_s * sr))

    windows: list[WindowPrediction] = []
    voiced: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        probs = predict_proba(model, feature_extractor, [wave[s:e] for _, (s, e) in voiced])
        for (index, _), p in zip(voiced, probs):
            windows[index].scores = dict(zip(labels, p.tolist()))
        voiced.clear()

    for start, end in spans:
        windows.append(WindowPrediction(start / sr, end / sr, None))
        try:
            check_waveform(wave[start:end], sr)
        except AudioError:
            continue  # silent or too short: no prediction for this window
        voiced.append((len(windows) - 1, (start, end)))
        if len(voiced) == batch_size:
            flush()
    if voiced:
        flush()

    # The whole-signal check above guarantees at least one voiced window.
    scored = [w.scores for w in windows if w.scores is not None]
    mean = np.mean([[s[label] for label in labels] for s in scored], axis=0)
    scores = dict(zip(labels, mean.tolist()))
    return LongPrediction(max(scores, key=scores.get), scores, len(wave) / sr, windows)
