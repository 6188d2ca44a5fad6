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

Music without a voice: Silero often takes instruments for voice (31% of instrumental game music it never saw
reaches its presence threshold or a segment). So each segment (or, when speech is present but not delimited, the
whole audio) also goes through a small speech/music check: a logistic regression over Silero's probabilities and
openSMILE eGeMAPS voicing, rhythm and pitch descriptors, on pieces of 2-4 s. A segment is dropped as music when
every piece of it scores above the threshold; audio with nothing left raises `MusicWithoutVoiceError`. Its
weights, threshold and provenance are in `music_gate.json`, fitted on Debian's game-music packages and on the
speech of half the speakers of ../shared/data (`python benchmarks/bench_music.py --fit`). On held-out music and
speakers, 87% of the music is refused (Silero alone: 69%) and no speech segment is dropped (README). Singing is
voice: a song may pass, as speech over background music should.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .audio import SAMPLING_RATE, AudioError

SEGMENT_THRESHOLD = 0.5
PRESENCE_THRESHOLD = 0.15
MIN_SPEECH_S = 0.25
MIN_SILENCE_S = 0.5
PAD_S = 0.03  # Silero's default
FRAME = 512  # samples per Silero frame at 16 kHz
MUSIC_GATE = Path(__file__).with_name("music_gate.json")
PIECE_S = (2.0, 4.0)  # the music check looks at pieces this long (shorter segments get context around them)
MAX_PIECES = 8  # per segment, evenly spread: a long segment counts as music only if all of them sound like it


@dataclass(frozen=True)
class SpeechSegment:
    start_s: float
    end_s: float


class NoSpeechError(AudioError):
    """The input holds no speech: silence, noise, a tone, a DC offset, music without a voice."""


class MusicWithoutVoiceError(NoSpeechError):
    """What sounded like speech to the voice activity detector is music without a voice."""


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


def gate_pieces(segment: SpeechSegment, n_samples: int, sampling_rate: int = SAMPLING_RATE) -> list[tuple[int, int]]:
    """The stretches (sample indices) of a segment the music check looks at: pieces of at most 4 s, each widened
    to 2 s around its centre where the audio allows, at most `MAX_PIECES` of them, evenly spread."""
    start, end = int(segment.start_s * sampling_rate), min(int(segment.end_s * sampling_rate), n_samples)
    shortest, longest = (int(s * sampling_rate) for s in PIECE_S)
    count = max(1, -(-(end - start) // longest))
    bounds = np.linspace(start, end, count + 1).astype(int)
    pieces = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a < shortest:
            centre = (a + b) // 2
            a, b = max(0, centre - shortest // 2), min(n_samples, centre + shortest // 2)
        pieces.append((int(a), int(b)))
    keep = np.unique(np.linspace(0, len(pieces) - 1, min(len(pieces), MAX_PIECES)).round().astype(int))
    return [pieces[i] for i in keep]


def voice_features(piece: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> dict[str, float]:
    """What the music check weighs: Silero's speech probability over the piece, and eGeMAPS functionals of
    voicing (segment rates and lengths), loudness rhythm, pitch movement and voice quality."""
    piece = piece / max(float(np.abs(piece).max()), 1e-9) * 0.5  # level-free, as the pipeline's normalization
    model = _vad()
    with _lock, torch.inference_mode():  # openSMILE too: one extraction at a time, as for Silero
        probs = model.audio_forward(_audio(piece, sampling_rate), sampling_rate)[0].numpy()
        model.reset_states()
        smile = _smile().process_signal(piece, sampling_rate).iloc[0].to_dict()
    features = {
        "p_max": float(probs.max()),
        "p_mean": float(probs.mean()),
        "p_q90": float(np.quantile(probs, 0.9)),
        "p_frac5": float((probs > SEGMENT_THRESHOLD).mean()),
        "p_frac15": float((probs > PRESENCE_THRESHOLD).mean()),
    }
    return features | smile


@lru_cache(maxsize=1)
def _smile():
    import opensmile

    return opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel.Functionals)


def warm_up() -> None:
    """Loads Silero, openSMILE and the music check now, so that a server's first request does not wait for them."""
    _vad()
    _smile()
    music_gate()


@lru_cache(maxsize=1)
def music_gate() -> dict:
    """The fitted check (`music_gate.json`): feature names, standardization, weights, threshold, provenance."""
    return json.loads(MUSIC_GATE.read_text())


def music_probability(features: dict[str, float]) -> float:
    gate = music_gate()
    x = np.nan_to_num(np.array([features[name] for name in gate["features"]], dtype=np.float64))
    z = (x - np.array(gate["mean"])) / np.array(gate["scale"])
    return float(1 / (1 + np.exp(-(z @ np.array(gate["coef"]) + gate["intercept"]))))


def is_music(wave: np.ndarray, segment: SpeechSegment, sampling_rate: int = SAMPLING_RATE) -> bool:
    """Whether every piece of the segment sounds like music without a voice (see the module notes)."""
    threshold = music_gate()["threshold"]
    return all(
        music_probability(voice_features(wave[a:b], sampling_rate)) > threshold
        for a, b in gate_pieces(segment, len(wave), sampling_rate)
    )


def voice_activity(wave: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> list[SpeechSegment]:
    """What Silero hears as speech, before the music check: its segments, else the whole audio when speech is
    present but not delimited, else nothing."""
    segments = speech_segments(wave, sampling_rate)
    if not segments and max_speech_probability(wave, sampling_rate) >= PRESENCE_THRESHOLD:
        segments = [SpeechSegment(0.0, len(wave) / sampling_rate)]
    return segments


def detect_speech(wave: np.ndarray, sampling_rate: int = SAMPLING_RATE, name: str = "audio") -> list[SpeechSegment]:
    """The speech segments, those that sound like music without a voice left out; the whole audio as one segment
    when speech is present but not delimited (see the module notes); `NoSpeechError` when there is none."""
    segments = voice_activity(wave, sampling_rate)
    if not segments:
        raise NoSpeechError(
            f"{name}: no speech found (it sounds like silence, noise, a tone or a constant signal); the model "
            "recognises emotion in speech only"
        )
    voiced = [s for s in segments if not is_music(wave, s, sampling_rate)]
    if not voiced:
        raise MusicWithoutVoiceError(
            f"{name}: no speech found (it sounds like music without a voice); the model recognises emotion in "
            "speech only"
        )
    return voiced
