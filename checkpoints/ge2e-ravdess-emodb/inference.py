"""The inference policy, and `SERClassifier`, the one object that applies it: load once, then classify files, arrays,
batches and live streams.

The policy (its settings are saved in `preprocessor_config.json`): speech detection first (`speech.py`), so that
audio without speech is refused rather than given a confident emotion; audio up to `window_s` is then classified in
one pass; longer audio by its speech segments (with a little context; segments longer than a window in windows
every `hop_s`), or, for a model saved without speech detection, in fixed windows. The probabilities of the pieces
are averaged, weighted by their duration, and the pieces form the timeline. The model's logits are divided by its
fitted temperature, so every probability is calibrated.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from transformers import BatchFeature

from .audio import DEFAULT_MAX_DURATION_S, AudioError, AudioSource, _describe, check_waveform, load_audio, prepare_waveform
from .configuration_ser import SERConfig
from .feature_extraction_ser import SERFeatureExtractor
from .modeling_ser import SERForSequenceClassification
from .profile import ProfileError, SpeakerProfile
from .quality import InputQuality, assess
from .speech import (
    MusicWithoutVoiceError,
    NoSpeechError,
    SpeechSegment,
    analyse_speech,
    detect_speech,
    speech_probabilities,
)
from .streaming import LiveSession, LiveUpdate


@torch.inference_mode()
def probabilities(model, inputs: BatchFeature, speaker_center: torch.Tensor | None = None) -> np.ndarray:
    """Softmax over the model's logits for a prepared batch (`input_values`, `attention_mask`), relative to a
    speaker's centre (`SERForSequenceClassification.speaker_center`) when one is given."""
    inputs = inputs.to(model.device)
    if model.dtype != torch.float32:
        inputs["input_values"] = inputs["input_values"].to(model.dtype)
    extra = {} if speaker_center is None else {"speaker_center": speaker_center}
    return model(**inputs, **extra).logits.float().softmax(dim=-1).cpu().numpy()


def predict_proba(
    model, feature_extractor: SERFeatureExtractor, waves: list[np.ndarray], speaker_center: torch.Tensor | None = None
) -> np.ndarray:
    """Softmax probabilities `(len(waves), num_labels)` for 16 kHz mono waveforms, run as one padded batch."""
    return probabilities(model, feature_extractor(waves, return_tensors="pt"), speaker_center)


@torch.inference_mode()
def embed_features(model, feature_extractor: SERFeatureExtractor, waves: list[np.ndarray]) -> np.ndarray:
    """The pooled features `(len(waves), num_pooled_layers, pooled_size)` of `model.embed`."""
    inputs = feature_extractor(waves, return_tensors="pt").to(model.device)
    return model.embed(inputs["input_values"].to(model.dtype), inputs.get("attention_mask")).float().cpu().numpy()


@torch.inference_mode()
def profile_features(model, pooled: np.ndarray) -> np.ndarray:
    """`(clips, num_pooled_layers, pooled_size)` -> `(clips, pooled_size)`: what the head reads, and a profile averages."""
    return model.combine_layers(torch.from_numpy(pooled).to(model.device, model.dtype)).float().cpu().numpy()


def supports_profiles(model) -> bool:
    return bool(getattr(model.config, "speaker_adaptation", False)) and hasattr(model, "embed")


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
    long_enough = [s for s in segments if s.end_s - s.start_s >= MIN_SEGMENT_S]
    spans = []
    for segment in long_enough or segments:  # only short utterances: classify them rather than nothing
        start = max(0, int((segment.start_s - SEGMENT_CONTEXT_S) * sampling_rate))
        end = min(num_samples, int((segment.end_s + SEGMENT_CONTEXT_S) * sampling_rate))
        spans += [(start + a, start + b) for a, b in window_spans(end - start, window, hop)]
    return spans


def policy_spans(
    num_samples: int, sampling_rate: int, window_s: float, hop_s: float, segments: list[SpeechSegment] | None
) -> list[tuple[int, int]]:
    """The pieces the policy classifies: audio up to one window in one pass; longer audio by its speech segments
    (`speech_spans`), or in fixed windows when there are none (a model saved without speech detection)."""
    window, hop = int(window_s * sampling_rate), int(hop_s * sampling_rate)
    if segments is None or num_samples <= window:
        return window_spans(num_samples, window, hop)
    return speech_spans(segments, num_samples, sampling_rate, window, hop)


def is_voiced(piece: np.ndarray, sampling_rate: int) -> bool:
    """Whether a piece can be classified (not silent, not too short)."""
    try:
        check_waveform(piece, sampling_rate)
    except AudioError:
        return False
    return True


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
class Prediction:
    """The answer for one recording: calibrated probabilities, the top label, whether it is uncertain (its
    probability below the model's `uncertainty_threshold`), the timeline of the pieces classified, and (where
    asked for) the input-quality report of `quality.py`."""

    label: str
    scores: dict[str, float]
    duration_s: float
    windows: list[WindowPrediction] = field(default_factory=list)
    uncertain: bool = False
    quality: InputQuality | None = None
    adaptation: str | None = None  # the speaker profile used, if any (see `predict_long`)
    adaptation_weight: float = 0.0  # how far that profile moved the centre (0: answered as without one)

    @property
    def score(self) -> float:
        return self.scores[self.label]

    def timeline(self) -> list[dict]:
        """The classified pieces as plain records: `start_s`, `end_s`, `label`, `scores`."""
        return [
            {"start_s": round(w.start_s, 3), "end_s": round(w.end_s, 3), "label": w.label, "scores": w.scores}
            for w in self.windows
            if w.scores is not None
        ]


LongPrediction = Prediction  # the earlier name


def check_candidate_labels(labels: list[str], candidate_labels: list[str] | None) -> list[str] | None:
    """The candidates in the model's order; `ValueError` for a label the model does not have, or fewer than two."""
    if candidate_labels is None:
        return None
    if isinstance(candidate_labels, str):
        candidate_labels = [c.strip() for c in candidate_labels.split(",") if c.strip()]
    unknown = [c for c in candidate_labels if c not in labels]
    if unknown:
        raise ValueError(f"candidate_labels {unknown} are not labels of this model; its labels are {labels}")
    chosen = [label for label in labels if label in set(candidate_labels)]
    if len(chosen) < 2:
        raise ValueError(f"candidate_labels needs at least two of the model's labels {labels}, got {candidate_labels}")
    return chosen


def restrict(scores: dict[str, float], candidate_labels: list[str] | None) -> dict[str, float]:
    """The probabilities of the candidate labels, renormalized to sum to 1: the softmax over their logits alone
    (the same as slicing the logits before the softmax)."""
    if candidate_labels is None:
        return scores
    total = sum(scores[label] for label in candidate_labels)
    if not total > 0:  # every candidate underflowed: none is preferred
        return {label: 1 / len(candidate_labels) for label in candidate_labels}
    return {label: scores[label] / total for label in candidate_labels}


def predict_long(
    model,
    feature_extractor: SERFeatureExtractor,
    audio: np.ndarray | AudioSource,
    window_s: float | None = None,
    hop_s: float | None = None,
    batch_size: int = 8,
    name: str | None = None,
    candidate_labels: list[str] | None = None,
    segments: list[SpeechSegment] | None = None,
    profile: SpeakerProfile | None = None,
    self_adapt: bool = False,
) -> Prediction:
    """Classifies audio of any length with the policy of this module (a 16 kHz waveform or anything `load_audio`
    reads).

    With the feature extractor's `speech_detection` (the default), audio without speech raises `NoSpeechError`;
    `segments` are the speech segments when the caller has already detected them. Audio up to `window_s` (default:
    the feature extractor's) is one pass; longer audio its speech segments, or fixed windows every `hop_s` without
    speech detection. Pieces run `batch_size` at a time, so memory stays flat whatever the length. The aggregate is
    the mean of the pieces' probabilities weighted by their duration, silent pieces excluded. `candidate_labels`
    restricts every answer to those labels, renormalized. `name` (default: the file's name, or "audio") is how
    error messages refer to the input.

    Speaker adaptation (models with `config.speaker_adaptation`): every piece is classified relative to `profile`
    (a `SpeakerProfile` of the speaker); or, with `self_adapt` and no profile, relative to a profile of the
    recording's own pieces when it has at least `config.profile_min_clips` of them (one speaker assumed).
    `Prediction.adaptation` says which was used.
    """
    window_s = feature_extractor.window_s if window_s is None else window_s
    hop_s = feature_extractor.hop_s if hop_s is None else hop_s
    if hop_s <= 0 or window_s <= 0 or hop_s > window_s:
        raise ValueError(f"need 0 < hop_s <= window_s, got window_s={window_s}, hop_s={hop_s}")
    sr = feature_extractor.sampling_rate
    name = name or (_describe(audio) if not isinstance(audio, np.ndarray) else "audio")  # for messages
    if isinstance(audio, np.ndarray):
        check_waveform(audio, sr, name=name)
        wave = audio
    else:
        wave = load_audio(audio, sr)  # checked there
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    candidates = check_candidate_labels(labels, candidate_labels)
    detects = getattr(feature_extractor, "speech_detection", False)
    if detects and segments is None:
        segments = detect_speech(wave, sr, name)
    spans = policy_spans(len(wave), sr, window_s, hop_s, segments if detects else None)

    windows: list[WindowPrediction] = []
    voiced: list[tuple[int, tuple[int, int]]] = []
    for start, end in spans:
        windows.append(WindowPrediction(start / sr, end / sr, None))
        if is_voiced(wave[start:end], sr):  # silent or too short: no prediction for this piece
            voiced.append((len(windows) - 1, (start, end)))

    adaptation = None
    if profile is not None and not supports_profiles(model):
        raise ProfileError("this model takes no speaker profile (it was trained without speaker adaptation)")
    if (profile is not None or self_adapt) and supports_profiles(model) and voiced:
        # Features first, then the head relative to the speaker: the backbone runs once per piece either way.
        pooled = np.concatenate([
            embed_features(model, feature_extractor, [wave[s:e] for _, (s, e) in voiced[i : i + batch_size]])
            for i in range(0, len(voiced), batch_size)
        ])  # fmt: skip
        if profile is None and len(voiced) >= model.config.profile_min_clips:
            seconds = sum(e - s for _, (s, e) in voiced) / sr
            profile = SpeakerProfile.from_features(model, profile_features(model, pooled), seconds, [name])
            adaptation = f"self: {len(voiced)} pieces of this recording (weight {profile.weight(model.config):.2f})"
            if profile.one_mood(model.config):  # say why it did not act
                adaptation += f"; {profile.describe(model.config)}"
        elif profile is not None:
            adaptation = profile.describe(model.config)
        center = model.speaker_center(profile) if profile is not None else None
        with torch.inference_mode():
            logits = model.classify(torch.from_numpy(pooled).to(model.device, model.dtype), speaker_center=center).logits
        for (index, _), p in zip(voiced, logits.float().softmax(-1).cpu().numpy()):
            windows[index].scores = restrict(dict(zip(labels, p.tolist())), candidates)
    else:
        for i in range(0, len(voiced), batch_size):
            chunk = voiced[i : i + batch_size]
            probs = predict_proba(model, feature_extractor, [wave[s:e] for _, (s, e) in chunk])
            for (index, _), p in zip(chunk, probs):
                windows[index].scores = restrict(dict(zip(labels, p.tolist())), candidates)
    prediction = aggregate(windows, candidates or labels, len(wave) / sr, model.config.uncertainty_threshold, name)
    prediction.adaptation = adaptation
    prediction.adaptation_weight = profile.weight(model.config) if profile is not None else 0.0
    return prediction


def aggregate(windows: list[WindowPrediction], labels: list[str], duration_s: float, threshold: float, name: str) -> Prediction:
    """The duration-weighted mean of the pieces' probabilities."""
    scored = [w for w in windows if w.scores is not None]
    if not scored:
        raise AudioError(f"{name}: no piece of it could be classified (too short or silent where speech was found)")
    weights = np.array([w.end_s - w.start_s for w in scored])
    mean = np.average([[w.scores[label] for label in labels] for w in scored], axis=0, weights=weights)
    scores = dict(zip(labels, mean.tolist()))
    label = max(scores, key=scores.get)
    return Prediction(label, scores, duration_s, windows, scores[label] < threshold)


def quantize_int8(model: SERForSequenceClassification) -> SERForSequenceClassification:
    """A copy with every `nn.Linear` replaced by a dynamically quantized int8 one (weights int8, activations
    quantized per batch), for CPUs. Linear layers hold most of a transformer's weights and time; convolutions stay
    fp32."""
    with warnings.catch_warnings():
        # Eager dynamic quantization is deprecated in favour of torchao, which is not available for every torch.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class SERClassifier:
    """A speech emotion model with its feature extractor and inference policy, loaded once (in the spirit of
    SpeechBrain's `EncoderClassifier`). Every way of classifying a recording goes through here, so that a file gets
    the same answer from each.

        classifier = SERClassifier.from_pretrained("user/ser-model")
        prediction = classifier.classify_file("call.wav")         # label, scores, uncertain, timeline()
        prediction = classifier.classify(wave, sampling_rate=44100, candidate_labels=["angry", "neutral"])

    Args:
        model: a `SERForSequenceClassification` (or an object with its `config` and `logits` interface, such as an
            int8 or ONNX version of it).
        feature_extractor: its `SERFeatureExtractor`, which holds the policy's settings.
        batch_size: clips (or pieces of a long recording) classified together.
    """

    def __init__(self, model, feature_extractor: SERFeatureExtractor, batch_size: int = 16):
        # By model_type, not by class: a Hub user's copy of this code is another module than this one.
        if getattr(model.config, "model_type", None) != SERConfig.model_type:
            raise ValueError(f"{type(model).__name__} is not a speech emotion model of this kind (model_type 'ser')")
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.batch_size = batch_size
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, device: str | torch.device | None = None, dtype: str = "fp32", **kwargs
    ) -> SERClassifier:
        """Loads a saved model folder or Hub repository. `device`: "cpu", "cuda", ... (default: the first GPU if
        there is one); `dtype`: "fp32", "fp16", "bf16" (GPU) or "int8" (dynamic quantization, CPU). Other keyword
        arguments (`revision`, `token`, `cache_dir`, ...) go to `from_pretrained`."""
        model = SERForSequenceClassification.from_pretrained(name_or_path, **kwargs)
        feature_extractor = SERFeatureExtractor.from_pretrained(name_or_path, **kwargs)
        if dtype == "int8":
            return cls(quantize_int8(model), feature_extractor)  # CPU kernels only
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {[*DTYPES, 'int8']}, got {dtype!r}")
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(model.to(device=device, dtype=DTYPES[dtype]), feature_extractor)

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @property
    def uncertainty_threshold(self) -> float:
        return self.model.config.uncertainty_threshold

    @property
    def speech_detection(self) -> bool:
        return bool(getattr(self.feature_extractor, "speech_detection", False))

    def load_audio(self, source: AudioSource, max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> np.ndarray:
        """A file, its bytes or a stream, decoded to a checked mono waveform at the model's rate."""
        return load_audio(source, self.sampling_rate, max_duration_s=max_duration_s)

    def classify_file(
        self,
        source: AudioSource,
        candidate_labels: list[str] | None = None,
        max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
        name: str | None = None,
        quality: bool = False,
        profile: SpeakerProfile | None = None,
        self_adapt: bool = True,
    ) -> Prediction:
        """A file (or its bytes) of any length; `AudioError` (`NoSpeechError` for no speech) when it cannot be."""
        wave = self.load_audio(source, max_duration_s)
        return self.classify(
            wave, candidate_labels=candidate_labels, name=name or _describe(source), quality=quality, profile=profile, self_adapt=self_adapt
        )

    def classify(
        self,
        wave: np.ndarray | torch.Tensor,
        sampling_rate: int | None = None,
        candidate_labels: list[str] | None = None,
        name: str = "audio",
        segments: list[SpeechSegment] | None = None,
        quality: bool | InputQuality = False,
        profile: SpeakerProfile | None = None,
        self_adapt: bool = True,
    ) -> Prediction:
        """A waveform of any length: mono or multi-channel, at `sampling_rate` (default: the model's), resampled.
        `quality=True` adds the input-quality report (SNR, bandwidth, clipping, level), read from the same speech
        detection (from a Silero pass of its own when segments are given or the model does not detect speech).
        `profile` (from `build_profile`) classifies relative to that speaker; without one, a long recording
        of a model with speaker adaptation adapts to its own speech segments unless `self_adapt=False`
        (`Prediction.adaptation` says which was used)."""
        if isinstance(wave, torch.Tensor):
            wave = wave.detach().cpu().numpy()
        wave = np.asarray(wave)
        if sampling_rate is not None and sampling_rate != self.sampling_rate or wave.ndim != 1 or wave.dtype != np.float32:
            wave = prepare_waveform(wave, sampling_rate or self.sampling_rate, self.sampling_rate, name=name)
        report = quality if isinstance(quality, InputQuality) else None
        if quality and report is None:
            check_waveform(wave, self.sampling_rate, name=name)
            if segments is None and self.speech_detection:
                segments, probs = analyse_speech(wave, self.sampling_rate, name)
            else:  # segments given, or a model without speech detection: the report still needs Silero's frames
                probs = speech_probabilities(wave, self.sampling_rate)
            report = self.assess(wave, probs)
        prediction = predict_long(
            self.model, self.feature_extractor, wave, name=name, candidate_labels=candidate_labels, segments=segments,
            profile=profile, self_adapt=self_adapt,
        )  # fmt: skip
        prediction.quality = report
        return prediction

    @property
    def adapts_to_speakers(self) -> bool:
        """Whether the model takes speaker profiles (`config.speaker_adaptation`)."""
        return supports_profiles(self.model)

    def build_profile(
        self, references: list, names: list[str] | None = None, segments: list[list[SpeechSegment] | None] | None = None
    ) -> SpeakerProfile:
        """A speaker profile from reference recordings of one voice, in any mood and unlabelled: files, their bytes
        or waveforms at the model's rate. Each is cut into pieces by the policy (a short clip is one piece, a long
        recording its speech segments); `ProfileError` when there are fewer than `config.profile_min_clips`
        pieces, `AudioError` for a reference without speech. `segments`: their speech segments, when the caller
        has already detected them."""
        names = names or [_describe(r) if not isinstance(r, np.ndarray) else f"reference {i + 1}" for i, r in enumerate(references)]
        features, seconds = self.reference_features(references, names, segments)
        return SpeakerProfile.from_features(self.model, features, seconds, names)

    def reference_features(
        self, references: list, names: list[str] | None = None, segments: list[list[SpeechSegment] | None] | None = None
    ) -> tuple[np.ndarray, float]:
        """The pooled features `(pieces, pooled_size)` of reference recordings' pieces, and their seconds: what
        `SpeakerProfile.from_features` takes (for profiles built up one recording at a time)."""
        if not self.adapts_to_speakers:
            raise ProfileError("this model was trained without speaker adaptation: it takes no speaker profile")
        names = names or [f"reference {i + 1}" for i in range(len(references))]
        pieces = []
        fe = self.feature_extractor
        for i, (reference, name) in enumerate(zip(references, names)):
            wave = reference if isinstance(reference, np.ndarray) else self.load_audio(reference)
            check_waveform(wave, self.sampling_rate, name=name)
            found = segments[i] if segments is not None and segments[i] is not None else self.detect_speech(wave, name)
            for start, end in policy_spans(len(wave), self.sampling_rate, fe.window_s, fe.hop_s, found):
                if is_voiced(wave[start:end], self.sampling_rate):
                    pieces.append(wave[start:end])
        if not pieces:
            return np.zeros((0, self.model.config.pooled_size), np.float32), 0.0
        pooled = np.concatenate(
            [embed_features(self.model, self.feature_extractor, pieces[i : i + self.batch_size]) for i in range(0, len(pieces), self.batch_size)]
        )
        return profile_features(self.model, pooled), sum(len(p) for p in pieces) / self.sampling_rate

    def assess(self, wave: np.ndarray, probs: np.ndarray) -> InputQuality:
        """The input-quality report of a waveform from its per-frame speech probabilities, worded with the
        accuracy this model measured in such conditions (`robustness` in its config)."""
        return assess(wave, probs, getattr(self.model.config, "robustness", None), self.sampling_rate)

    def detect_speech(self, wave: np.ndarray, name: str = "audio") -> list[SpeechSegment] | None:
        """The speech segments of a waveform at the model's rate (`NoSpeechError` if there is none); None for a
        model saved without speech detection."""
        return detect_speech(wave, self.sampling_rate, name) if self.speech_detection else None

    def classify_batch(
        self,
        waves: list[np.ndarray],
        names: list[str] | None = None,
        candidate_labels: list[str] | None = None,
        features: list[np.ndarray | None] | None = None,
        segments: list[list[SpeechSegment] | None] | None = None,
        qualities: list[InputQuality | None] | None = None,
        profile: SpeakerProfile | None = None,
        self_adapt: bool = True,
    ) -> list[Prediction | AudioError]:
        """Many waveforms at the model's rate: the short ones (one pass) as one padded batch, the long ones by the
        policy. Each result is a `Prediction`, or the `AudioError` that input raised (no speech, silence): one bad
        input never costs the others. `features` (`process_waveform` of the short ones) and `segments` (speech
        detection) may come prepared, e.g. from decoder processes, and so may the input-quality reports
        (`qualities`), which are attached to the predictions. `profile`: every input is of that speaker (see
        `classify`)."""
        names = names or [f"audio {i}" for i in range(len(waves))]
        features = features or [None] * len(waves)
        segments = list(segments or [None] * len(waves))
        qualities = qualities or [None] * len(waves)
        candidates = check_candidate_labels(self.labels, candidate_labels)
        results: list[Prediction | AudioError | None] = [None] * len(waves)
        short = []
        for i, wave in enumerate(waves):
            try:
                check_waveform(wave, self.sampling_rate, name=names[i])
                if segments[i] is None:
                    segments[i] = self.detect_speech(wave, names[i])
            except AudioError as err:
                results[i] = err
                continue
            if self.feature_extractor.is_one_pass(len(wave)):
                short.append(i)
            else:
                try:
                    results[i] = self.classify(
                        wave, candidate_labels=candidates, name=names[i], segments=segments[i], quality=qualities[i] or False,
                        profile=profile, self_adapt=self_adapt,
                    )  # fmt: skip
                except AudioError as err:
                    results[i] = err
        center = self.speaker_center(profile)
        for chunk in range(0, len(short), self.batch_size):
            batch = short[chunk : chunk + self.batch_size]
            prepared = [features[i] if features[i] is not None else self.feature_extractor.process_waveform(waves[i]) for i in batch]
            probs = probabilities(self.model, self.feature_extractor.collate(prepared, return_tensors="pt"), center)
            for i, p in zip(batch, probs):
                duration = len(waves[i]) / self.sampling_rate
                scores = restrict(dict(zip(self.labels, p.tolist())), candidates)
                windows = [WindowPrediction(0.0, duration, scores)]
                results[i] = aggregate(windows, candidates or self.labels, duration, self.uncertainty_threshold, names[i])
                results[i].quality = qualities[i]
                if profile is not None:
                    results[i].adaptation = profile.describe(self.model.config)
                    results[i].adaptation_weight = profile.weight(self.model.config)
        return results

    def speaker_center(self, profile: SpeakerProfile | None) -> torch.Tensor | None:
        """The model's centre for a profile (None for None); `ProfileError` for a model without adaptation."""
        if profile is None:
            return None
        if not self.adapts_to_speakers:
            raise ProfileError("this model was trained without speaker adaptation: it takes no speaker profile")
        return self.model.speaker_center(profile)

    def new_stream(self, window_s: float = 4.0, history: int = 300, update_every_s: float = 1.0) -> LiveSession:
        """The state of a live stream: the last `window_s` seconds, classified every `update_every_s` seconds of
        new audio, and a timeline of the last `history` updates."""
        return LiveSession(window_s=window_s, history=history, update_every_s=update_every_s)

    def stream(
        self, session: LiveSession, sampling_rate: int, chunk: np.ndarray, profile: SpeakerProfile | None = None
    ) -> LiveUpdate:
        """Adds a live chunk (int16 or float, mono or `(samples, channels)`, any rate); when due, classifies the
        last `window_s` seconds if they hold speech (relative to `profile` when given). Between updates it returns
        the last one."""
        session.add(sampling_rate, chunk)
        if not session.due():
            return session.last
        if len(session.buffer) < self.sampling_rate // 2:
            return LiveUpdate(None, f"Listening… {session.heard_s:.0f} s heard", list(session.timeline))
        session.classified_at_s = session.heard_s
        scores = session.last.scores if session.last else None
        try:
            # Whatever the model's setting: a live stream is mostly silence between utterances.
            detect_speech(session.buffer, self.sampling_rate, "microphone")
        except NoSpeechError as err:
            advice = (
                "only music, a tone or noise without a voice: the model recognises emotion in speech"
                if isinstance(err, MusicWithoutVoiceError)
                else "speak closer to the microphone, or check that it is the right one"
            )
            session.last = LiveUpdate(
                scores,
                f"No speech heard in the last {session.window_s:g} s ({session.heard_s:.0f} s heard in all): {advice}",
                list(session.timeline),
            )
            return session.last
        center = self.speaker_center(profile)
        scores = dict(zip(self.labels, predict_proba(self.model, self.feature_extractor, [session.buffer], center)[0].tolist()))
        session.timeline.append((round(session.heard_s, 2), scores))
        top = max(scores, key=scores.get)
        session.last = LiveUpdate(
            scores,
            f"Speech heard: {top} ({scores[top]:.2f}) over the last {session.window_s:g} s, at {session.heard_s:.0f} s",
            list(session.timeline),
        )
        return session.last
