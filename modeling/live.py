"""Live classification of a microphone stream: the current emotion and a rolling timeline, in bounded memory.

Chunks arrive every second or so (Gradio's streaming microphone); each one is mixed to mono, resampled and
appended to a buffer that keeps only the last `window_s` seconds. The buffer is classified when it holds speech,
through the same preprocessing and model as a clip; the timeline keeps the last `history` points. Memory per
session is therefore fixed, however long the person speaks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from .audio import SAMPLING_RATE, resample, to_float, to_mono
from .inference import predict_proba
from .speech import MusicWithoutVoiceError, NoSpeechError, detect_speech


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


def live_step(model, feature_extractor, session: LiveSession, sampling_rate: int, chunk: np.ndarray) -> LiveUpdate:
    """Adds a chunk; every `update_every_s` seconds of new audio, classifies the last `window_s` seconds if they
    hold speech. Between updates (browsers send a chunk every 0.1 s or so) it returns the last update."""
    session.add(sampling_rate, chunk)
    if session.last is not None and session.heard_s - session.classified_at_s < session.update_every_s:
        return session.last
    if len(session.buffer) < SAMPLING_RATE // 2:
        return LiveUpdate(None, f"Listening… {session.heard_s:.0f} s heard", list(session.timeline))
    session.classified_at_s = session.heard_s
    scores = session.last.scores if session.last else None
    try:
        detect_speech(session.buffer, SAMPLING_RATE, "microphone")  # silence included
    except NoSpeechError as err:
        advice = (
            "only music without a voice: the model recognises emotion in speech"
            if isinstance(err, MusicWithoutVoiceError)
            else "speak closer to the microphone, or check that it is the right one"
        )
        session.last = LiveUpdate(
            scores,
            f"No speech heard in the last {session.window_s:g} s ({session.heard_s:.0f} s heard in all): {advice}",
            list(session.timeline),
        )
        return session.last
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scores = dict(zip(labels, predict_proba(model, feature_extractor, [session.buffer])[0].tolist()))
    session.timeline.append((round(session.heard_s, 2), scores))
    top = max(scores, key=scores.get)
    session.last = LiveUpdate(
        scores, f"Speech heard: {top} ({scores[top]:.2f}) over the last {session.window_s:g} s, at {session.heard_s:.0f} s",
        list(session.timeline),
    )
    return session.last


class LiveSessions:
    """The sessions of a server, by the browser session's id: at most `max_sessions` (the least recently used
    goes first), each of fixed size, so memory is bounded whatever the number of listeners."""

    def __init__(self, max_sessions: int = 64, **session_kwargs):
        self.max_sessions = max_sessions
        self.session_kwargs = session_kwargs
        self._sessions: OrderedDict[str, LiveSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> LiveSession:
        with self._lock:
            session = self._sessions.pop(key, None) or LiveSession(**self.session_kwargs)
            self._sessions[key] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return session

    def reset(self, key: str) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    def __len__(self) -> int:
        return len(self._sessions)
