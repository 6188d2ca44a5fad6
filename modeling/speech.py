"""Where the speech is: voice activity detection with Silero VAD (MIT licence; its weights ship in the package,
so it runs offline).

An emotion model answers for any input, so silence, noise, a tone or a DC offset would get a confident emotion.
Every entry point that classifies whole recordings first asks `detect_speech` whether anyone speaks, and long
recordings are classified by their speech segments rather than by fixed windows that straddle pauses.

Two thresholds, both on Silero's per-frame (32 ms) speech probability:
- segments are stretches above 0.5 (Silero's default), at least 0.25 s long, ended by 0.5 s below it;
- presence: audio with no such segment still counts as speech when some frame reaches 0.15. Silero delimits
  ordinary speech well but scores shouted or screamed speech low: of the 1,735 acted clips this project trains
  on, 13 (shouted, strong-intensity clips of one speaker) have no segment above 0.5, and their highest frame is
  0.21-0.35 (`benchmarks/bench_speech.py`). White or pink noise, tones, DC offsets, sweeps and clicks stay below
  0.08. Such audio is classified whole.
  Synthetic music made of pure tones (chords, melodies) and mains hum can reach 0.2-0.56 and is not rejected.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from .audio import SAMPLING_RATE, AudioError

SEGMENT_THRESHOLD = 0.5
PRESENCE_THRESHOLD = 0.15
MIN_SPEECH_S = 0.25
MIN_SILENCE_S = 0.5
PAD_S = 0.03  # Silero's default
FRAME = 512  # samples per Silero frame at 16 kHz


@dataclass(frozen=True)
class SpeechSegment:
    start_s: float
    end_s: float


class NoSpeechError(AudioError):
    """The input holds no speech: silence, noise, a tone, a DC offset."""


_model = None
_get_speech_timestamps = None
# The model keeps a recurrent state from frame to frame, so one recording at a time goes through it.
_lock = threading.Lock()


def _vad():
    global _model, _get_speech_timestamps
    if _model is None:
        # Importing silero_vad sets torch to one thread for the whole process; the emotion model needs them all.
        threads = torch.get_num_threads()
        try:
            from silero_vad import get_speech_timestamps, load_silero_vad

            _model, _get_speech_timestamps = load_silero_vad(), get_speech_timestamps
        finally:
            torch.set_num_threads(threads)
    return _model


def _audio(wave: np.ndarray, sampling_rate: int) -> torch.Tensor:
    if sampling_rate != SAMPLING_RATE:
        raise ValueError(f"speech detection runs at {SAMPLING_RATE} Hz, got {sampling_rate} Hz: resample first")
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))


def speech_segments(wave: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> list[SpeechSegment]:
    """Start and end (seconds) of each stretch of speech Silero delimits in a 16 kHz mono waveform."""
    audio = _audio(wave, sampling_rate)
    model = _vad()
    with _lock, torch.inference_mode():
        stamps = _get_speech_timestamps(
            audio,
            model,
            threshold=SEGMENT_THRESHOLD,
            sampling_rate=sampling_rate,
            min_speech_duration_ms=int(MIN_SPEECH_S * 1000),
            min_silence_duration_ms=int(MIN_SILENCE_S * 1000),
            speech_pad_ms=int(PAD_S * 1000),
        )
    return [SpeechSegment(s["start"] / sampling_rate, s["end"] / sampling_rate) for s in stamps]


def max_speech_probability(wave: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> float:
    """The highest per-frame speech probability anywhere in the waveform."""
    audio = _audio(wave, sampling_rate)
    model = _vad()
    best = 0.0
    with _lock, torch.inference_mode():
        model.reset_states()
        for start in range(0, len(audio) - FRAME + 1, FRAME):
            best = max(best, float(model(audio[start : start + FRAME], sampling_rate)))
        model.reset_states()
    return best


def detect_speech(wave: np.ndarray, sampling_rate: int = SAMPLING_RATE, name: str = "audio") -> list[SpeechSegment]:
    """The speech segments; the whole audio as one segment when speech is present but not delimited (see the
    module notes); `NoSpeechError` when there is none."""
    segments = speech_segments(wave, sampling_rate)
    if segments:
        return segments
    if max_speech_probability(wave, sampling_rate) >= PRESENCE_THRESHOLD:
        return [SpeechSegment(0.0, len(wave) / sampling_rate)]
    raise NoSpeechError(
        f"{name}: no speech found (it sounds like silence, noise, a tone or a constant signal); the model "
        "recognises emotion in speech only"
    )
