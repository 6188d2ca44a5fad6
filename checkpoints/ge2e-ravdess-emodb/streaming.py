"""The state of one live stream (a microphone): the last seconds of audio and a rolling timeline, in fixed memory.

Chunks arrive every second or so; each one is mixed to mono, resampled and appended to a buffer that keeps only the
last `window_s` seconds. `SERClassifier.stream` classifies the buffer when it holds speech, through the same
preprocessing and model as a clip, and the timeline keeps the last `history` points, so memory per stream is fixed
however long the person speaks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .audio import SAMPLING_RATE, resample, to_float, to_mono


@dataclass
class LiveUpdate:
    scores: dict[str, float] | None  # None until speech is heard
    status: str
    timeline: list[tuple[float, dict[str, float]]]  # (seconds since the start, probabilities)


@dataclass
class LiveSession:
    """What one listener's stream keeps between chunks."""

    window_s: float = 4.0
    history: int = 300
    update_every_s: float = 1.0
    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    heard_s: float = 0.0
    classified_at_s: float = 0.0
    last: LiveUpdate | None = None
    timeline: deque = field(default_factory=deque)

    def __post_init__(self):
        self.timeline = deque(self.timeline, maxlen=self.history)

    def add(self, sampling_rate: int, chunk: np.ndarray) -> None:
        """Appends a chunk as the microphone delivers it: int16 or float, mono or `(samples, channels)`."""
        chunk = to_float(chunk, "microphone")
        mono = to_mono(chunk.astype(np.float32, copy=False), channel_axis=1 if chunk.ndim == 2 else None)
        wave = resample(mono, int(sampling_rate), SAMPLING_RATE)
        self.buffer = np.concatenate([self.buffer, wave])[-int(self.window_s * SAMPLING_RATE) :]
        self.heard_s += len(wave) / SAMPLING_RATE

    def due(self) -> bool:
        """Whether enough new audio arrived since the last classification (browsers send a chunk every 0.1 s)."""
        return self.last is None or self.heard_s - self.classified_at_s >= self.update_every_s
