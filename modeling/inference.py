"""Inference helpers: class probabilities for clips, and a sliding-window timeline for long recordings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import BatchFeature

from .audio import AudioError, AudioSource, _describe, check_waveform, load_audio
from .feature_extraction_ser import SERFeatureExtractor
from .modeling_ser import SERModel
from .speech import SpeechSegment, detect_speech


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


# Context kept around each speech segment (the model was trained on clips with their pauses), and the shortest
# segment classified on its own when there are others (shorter ones are a cough or a click, not an utterance).
SEGMENT_CONTEXT_S = 0.5
MIN_SEGMENT_S = 0.5


def speech_spans(
    segments: list[SpeechSegment], num_samples: int, sampling_rate: int, window: int, hop: int
) -> list[tuple[int, int]]:
    """The pieces of a long recording to classify: each speech segment with some context, cut into windows when
    it is longer than one."""
    spans = []
    for segment in segments:
        start = max(0, int((segment.start_s - SEGMENT_CONTEXT_S) * sampling_rate))
        end = min(num_samples, int((segment.end_s + SEGMENT_CONTEXT_S) * sampling_rate))
        if segment.end_s - segment.start_s < MIN_SEGMENT_S and len(segments) > 1:
            continue
        spans += [(start + a, start + b) for a, b in window_spans(end - start, window, hop)]
    return spans


@dataclass
class WindowPrediction:
    """One piece of the timeline: a speech segment (or a window of a long one), or a fixed window."""

    start_s: float
    end_s: float
    scores: dict[str, float] | None  # None for a silent window, which is left out of the aggregate

    @property
    def label(self) -> str | None:
        return max(self.scores, key=self.scores.get) if self.scores else None


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
    name: str | None = None,
) -> LongPrediction:
    """Classifies audio of any length: the one inference policy of the pipeline, `predict.py` and the demo.

    With the feature extractor's `speech_detection` (the default), audio without speech raises `NoSpeechError`.
    Audio up to `window_s` (default: the feature extractor's `window_s`, saved with the model) is one pass over
    the whole clip. Longer audio is classified by its speech segments (with a little context; segments longer
    than `window_s` in windows every `hop_s`), or, without speech detection, in `window_s` windows every `hop_s`.
    Pieces run `batch_size` at a time: memory stays flat whatever the length, since self-attention cost grows
    with the square of the input length. Each piece goes through the same preprocessing as a single clip. The
    aggregate is the mean of the pieces' probabilities weighted by their duration, silent pieces excluded.
    `name` (default: the file's name, or "audio") is how error messages refer to the input.
    """
    window_s = feature_extractor.window_s if window_s is None else window_s
    hop_s = feature_extractor.hop_s if hop_s is None else hop_s
    if hop_s <= 0 or window_s <= 0 or hop_s > window_s:
        raise ValueError(f"need 0 < hop_s <= window_s, got window_s={window_s}, hop_s={hop_s}")
    sr = feature_extractor.sampling_rate
    name = name or (_describe(audio) if not isinstance(audio, np.ndarray) else "audio")  # for messages
    if isinstance(audio, np.ndarray):
        check_waveform(audio, sr)
        wave = audio
    else:
        wave = load_audio(audio, sr)  # checked there
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    window, hop = int(window_s * sr), int(hop_s * sr)
    if getattr(feature_extractor, "speech_detection", False):
        segments = detect_speech(wave, sr, name)
        spans = window_spans(len(wave), window, hop) if len(wave) <= window else speech_spans(segments, len(wave), sr, window, hop)
    else:
        spans = window_spans(len(wave), window, hop)

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
            continue  # silent or too short: no prediction for this piece
        voiced.append((len(windows) - 1, (start, end)))
        if len(voiced) == batch_size:
            flush()
    if voiced:
        flush()

    scored = [w for w in windows if w.scores is not None]
    if not scored:
        raise AudioError(f"{name}: no piece of it could be classified (too short or silent where speech was found)")
    weights = np.array([w.end_s - w.start_s for w in scored])
    mean = np.average([[w.scores[label] for label in labels] for w in scored], axis=0, weights=weights)
    scores = dict(zip(labels, mean.tolist()))
    return LongPrediction(max(scores, key=scores.get), scores, len(wave) / sr, windows)
