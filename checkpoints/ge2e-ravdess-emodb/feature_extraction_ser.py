"""The model's preprocessing: noise reduction, normalization and padding, saved as `preprocessor_config.json`."""

from __future__ import annotations

import numpy as np
import noisereduce
from transformers import BatchFeature, SequenceFeatureExtractor

from .audio import SAMPLING_RATE, AudioError, check_waveform


class SERFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns 16 kHz mono waveforms into the model's `input_values` and `attention_mask`.

    Each waveform is checked (see `audio.check_waveform`), denoised by spectral gating (`noisereduce`),
    then normalized to zero mean and unit variance over its own samples, as wav2vec2 was pre-trained on, before the
    batch is zero-padded. The same steps run in training and at inference (`SERClassifier`, `pipeline(...)`).

    Args:
        sampling_rate (`int`, *optional*, defaults to 16000):
            The rate the model expects; callers resample to it with `audio.py` first.
        noise_reduction (`bool`, *optional*, defaults to `True`):
            Apply spectral gating.
        noise_reduction_stationary (`bool`, *optional*, defaults to `False`):
            `False` (noisereduce's default) tracks a noise floor that changes over time; `True` estimates one
            noise profile per clip, which suits steady noise (hum, fans, room tone).
        noise_reduction_prop_decrease (`float`, *optional*, defaults to 0.8):
            How much of the estimated noise is removed (1.0 = all). Less than 1 keeps speech artefacts low.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Zero-mean, unit-variance normalization of each waveform.
        padding_value (`float`, *optional*, defaults to 0.0):
            Value used for padding.
        return_attention_mask (`bool`, *optional*, defaults to `True`):
            The model pools over non-padding frames only, so the mask is returned by default.
        max_duration_s (`float`, *optional*, defaults to 60.0):
            Longest waveform this feature extractor prepares for one pass of the model. Self-attention memory grows
            with the square of the length; recordings of any length are classified in pieces by the inference policy
            (`SERClassifier`, the pipeline), which never asks for a pass longer than `window_s`.
        window_s (`float`, *optional*, defaults to 5.0):
            The inference policy (`inference.py`, one for the pipeline and every other way of classifying a
            recording): audio up to `window_s` is classified in one pass; longer audio by its speech segments (with
            `speech_detection`; segments longer than `window_s` in `window_s` windows every `hop_s`), or else in
            `window_s` windows every `hop_s`; the probabilities are averaged, weighted by duration. 5 s holds a
            typical acted utterance (3-5 s).
        hop_s (`float`, *optional*, defaults to 2.5):
            Step between windows (half a window: every moment is seen by two windows).
        speech_detection (`bool`, *optional*, defaults to `True`):
            Check for speech (Silero VAD, `speech.py`) before classifying a recording: audio without speech
            (silence, noise, a tone, a DC offset, most music without a voice) raises `NoSpeechError`, and long
            audio is classified by speech segments. Not applied to training clips, which are speech by construction.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = SAMPLING_RATE,
        padding_value: float = 0.0,
        noise_reduction: bool = True,
        noise_reduction_stationary: bool = False,
        noise_reduction_prop_decrease: float = 0.8,
        do_normalize: bool = True,
        return_attention_mask: bool = True,
        max_duration_s: float = 60.0,
        window_s: float = 5.0,
        hop_s: float = 2.5,
        speech_detection: bool = True,
        **kwargs,
    ):
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.noise_reduction = noise_reduction
        self.noise_reduction_stationary = noise_reduction_stationary
        self.noise_reduction_prop_decrease = noise_reduction_prop_decrease
        self.do_normalize = do_normalize
        self.return_attention_mask = return_attention_mask
        self.max_duration_s = max_duration_s
        if not 0 < hop_s <= window_s:
            raise ValueError(f"need 0 < hop_s <= window_s, got window_s={window_s}, hop_s={hop_s}")
        self.window_s = window_s
        self.hop_s = hop_s
        self.speech_detection = speech_detection

    def is_one_pass(self, num_samples: int) -> bool:
        """Whether audio of this many samples is classified in one pass (else by speech segments or windows)."""
        return num_samples <= int(self.window_s * self.sampling_rate)

    def denoise(self, wave: np.ndarray) -> np.ndarray:
        if not self.noise_reduction:
            return wave
        denoised = noisereduce.reduce_noise(
            y=wave,
            sr=self.sampling_rate,
            stationary=self.noise_reduction_stationary,
            prop_decrease=self.noise_reduction_prop_decrease,
        )
        return denoised.astype(np.float32, copy=False)

    @staticmethod
    def normalize(wave: np.ndarray) -> np.ndarray:
        return ((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).astype(np.float32, copy=False)

    def process_waveform(self, wave: np.ndarray) -> np.ndarray:
        """Checks, denoises and normalizes one 16 kHz mono waveform."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise AudioError(f"expected a mono waveform (1-D), got shape {wave.shape}; mix it down first")
        check_waveform(wave, self.sampling_rate)
        if len(wave) > self.max_duration_s * self.sampling_rate:
            raise AudioError(
                f"audio is {len(wave) / self.sampling_rate:.1f} s long; one pass takes at most {self.max_duration_s:g} s "
                "(attention cost grows with the square of the length): classify it with the pipeline or "
                "SERClassifier, which take long audio in pieces"
            )
        wave = self.denoise(wave)
        return self.normalize(wave) if self.do_normalize else wave

    def __call__(
        self,
        raw_speech: np.ndarray | list[float] | list[np.ndarray],
        sampling_rate: int | None = None,
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Prepares one waveform or a batch of them (a list of 1-D arrays)."""
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise AudioError(
                f"audio at {sampling_rate} Hz was given to a feature extractor for {self.sampling_rate} Hz; "
                "resample it first (audio.load_audio or audio.prepare_waveform do)"
            )
        is_batched = isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0 and np.ndim(raw_speech[0]) == 1
        if not is_batched:
            raw_speech = [raw_speech]
        waves = [self.process_waveform(np.asarray(w)) for w in raw_speech]
        return self.collate(
            waves,
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=return_attention_mask,
            return_tensors=return_tensors,
        )

    def collate(
        self,
        waves: list[np.ndarray],
        padding: bool | str = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
    ) -> BatchFeature:
        """Pads waveforms that `process_waveform` already prepared (cached features, prefetched batches)."""
        padded = self.pad(
            BatchFeature({"input_values": [np.asarray(w, dtype=np.float32) for w in waves]}),
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=self.return_attention_mask if return_attention_mask is None else return_attention_mask,
        )
        input_values = padded["input_values"]
        if isinstance(input_values, list):
            padded["input_values"] = [np.asarray(v, dtype=np.float32) for v in input_values]
        else:
            padded["input_values"] = np.asarray(input_values, dtype=np.float32)
        if return_tensors is not None:
            padded = padded.convert_to_tensors(return_tensors)
        return padded
