"""Where the speech is: voice activity detection with Silero VAD (MIT licence; its weights ship in its package,
so it runs offline).

An emotion model answers for any input, so silence, noise, a tone or a DC offset would get a confident emotion.
Every way of classifying a recording first asks `detect_speech` whether anyone speaks, and long recordings are
classified by their speech segments rather than by fixed windows that straddle pauses.

One Silero pass gives a speech probability per 32 ms frame; everything below is read from it:
- segments are stretches above 0.5 (Silero's default), at least 0.25 s long, ended by 0.5 s below it (Silero's own
  `get_speech_timestamps_from_probs`);
- presence: audio with no such segment still counts as speech when some frame reaches 0.06. Silero delimits
  ordinary speech well but scores shouted or screamed speech low: of 1,735 acted clips of two corpora, 13
  have no segment above 0.5 and their highest frame is 0.21-0.35, and in a reverberant room (RT60 about 1.3 s)
  shouted clips can peak below 0.09. Some noise, sweeps and tones near a voice's pitch reach 0.06 too: like
  music, they go on to the music check below, which refuses those `tests/test_speech.py` tries. Speech present but
  not delimited is classified whole: a wrong emotion with a low confidence is better than refusing a person's
  speech.
Audio up to `STREAM_S` + `WARMUP_S` (34 s) is one stream, as Silero is meant to be run. Longer audio is cut into
streams of `STREAM_S`, each started `WARMUP_S` early so that its recurrent state has settled, and the streams run
side by side as one batch: ten times faster than frame after frame, with each sample still seen once.

Music without a voice: Silero often takes instruments for voice, so each segment (or, when speech is present but not
delimited, the whole audio) also goes through a speech/music check on pieces of 2-4 s: a logistic regression over
Silero's probabilities in the piece and openSMILE eGeMAPS voicing, rhythm and pitch descriptors. A segment is
dropped as music only when every piece scores above the threshold; audio with nothing left raises
`MusicWithoutVoiceError`. openSMILE costs more than Silero, so a first stage reads Silero's probabilities alone
and keeps, without openSMILE, the pieces that no music of the fitting data resembled. The weights, threshold and
provenance are in `music_gate.py`. Singing is voice: a song may pass, as speech over background music should.

Silero keeps a recurrent state from frame to frame, and openSMILE an extraction pipeline: each thread gets its own
detector, so that concurrent requests do not wait for each other.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

# Importing silero_vad sets torch to one thread for the whole process; the emotion model needs them all. Imported
# here, once and outside any `try`, so that transformers names silero-vad to a Hub user who lacks it.
_threads = torch.get_num_threads()
import silero_vad  # noqa: E402  (silero-vad >= 6.2: get_speech_timestamps_from_probs)

torch.set_num_threads(_threads)

from .audio import SAMPLING_RATE, AudioError  # noqa: E402
from .music_gate import GATE  # noqa: E402

SEGMENT_THRESHOLD = 0.5
PRESENCE_THRESHOLD = 0.06
FRAC_THRESHOLD = 0.15  # a feature of the music check (`p_frac15`), fitted at this level: not the presence threshold
MIN_SPEECH_S = 0.25
MIN_SILENCE_S = 0.5
PAD_S = 0.03  # Silero's default
FRAME = 512  # samples per Silero frame at 16 kHz
STREAM_S = 32.0
WARMUP_S = 2.0
PIECE_S = (2.0, 4.0)  # the music check looks at pieces this long (shorter segments get context around them)
MAX_PIECES = 8  # per segment, evenly spread: a long segment counts as music only if all of them sound like it


@dataclass(frozen=True)
class SpeechSegment:
    start_s: float
    end_s: float


class NoSpeechError(AudioError):
    """The input holds no speech: silence, noise, a tone, a DC offset, music without a voice."""


class MusicWithoutVoiceError(NoSpeechError):
    """What sounded like speech to the voice activity detector is music, a tone or noise without a voice."""


def _load_smile():
    import opensmile

    return opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel.Functionals)


class SpeechDetector:
    """Silero VAD and the music check for one thread. `detect` is what `detect_speech` runs."""

    def __init__(self):
        threads = torch.get_num_threads()
        self.vad = silero_vad.load_silero_vad()
        torch.set_num_threads(threads)
        self._smile = None  # loaded on first need: most speech never reaches openSMILE

    @property
    def smile(self):
        if self._smile is None:
            self._smile = _load_smile()
        return self._smile

    @torch.inference_mode()
    def probabilities(self, wave: np.ndarray) -> np.ndarray:
        """Silero's speech probability for each 32 ms frame (the last one zero-padded), in one pass."""
        audio = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        frames = -(-len(audio) // FRAME)
        stream, warmup = stream_samples()
        if len(audio) <= stream + warmup:
            self.vad.reset_states()
            probs = self.vad.audio_forward(audio[None], SAMPLING_RATE)
            self.vad.reset_states()
            return probs[0, :frames].numpy()
        starts = range(0, len(audio), stream)
        batch = torch.zeros(len(starts), warmup + stream)
        for row, start in enumerate(starts):
            piece = audio[max(0, start - warmup) : start + stream]
            offset = warmup - min(warmup, start)
            batch[row, offset : offset + len(piece)] = piece
        self.vad.reset_states()
        probs = self.vad.audio_forward(batch, SAMPLING_RATE)
        self.vad.reset_states()
        # Each row: the warm-up's frames, then exactly the stream's, so that row r holds frames r * stream // FRAME on.
        return probs[:, warmup // FRAME : (warmup + stream) // FRAME].reshape(-1)[:frames].numpy()

    def voice_activity(self, wave: np.ndarray, probs: np.ndarray) -> list[SpeechSegment]:
        """What Silero hears as speech, before the music check: its segments, else the whole audio when speech is
        present but not delimited, else nothing."""
        stamps = silero_vad.get_speech_timestamps_from_probs(
            probs.tolist(),
            sampling_rate=SAMPLING_RATE,
            threshold=SEGMENT_THRESHOLD,
            min_speech_duration_ms=int(MIN_SPEECH_S * 1000),
            min_silence_duration_ms=int(MIN_SILENCE_S * 1000),
            speech_pad_ms=int(PAD_S * 1000),
            audio_length_samples=len(wave),
        )
        segments = [SpeechSegment(s["start"] / SAMPLING_RATE, s["end"] / SAMPLING_RATE) for s in stamps]
        if not segments and len(probs) and probs.max() >= PRESENCE_THRESHOLD:
            segments = [SpeechSegment(0.0, len(wave) / SAMPLING_RATE)]
        return segments

    def piece_features(self, wave: np.ndarray, probs: np.ndarray, start: int, end: int) -> dict:
        """What the music check weighs for the piece `wave[start:end]`: Silero's probabilities over it, and eGeMAPS
        functionals of voicing (segment rates and lengths), loudness rhythm, pitch movement and voice quality."""
        return silero_features(probs, start, end) | self.smile_features(wave[start:end])

    def smile_features(self, piece: np.ndarray) -> dict:
        piece = piece / max(float(np.abs(piece).max()), 1e-9) * 0.5  # level-free, as the model's normalization
        return self.smile.process_signal(piece, SAMPLING_RATE).iloc[0].to_dict()

    def is_music(self, wave: np.ndarray, probs: np.ndarray, segment: SpeechSegment) -> bool:
        """Whether every piece of the segment sounds like music without a voice (see the module notes)."""
        stage = GATE["silero_stage"]
        for start, end in gate_pieces(segment, len(wave)):
            features = silero_features(probs, start, end)
            if music_probability(features, stage) < stage["keep_below"]:
                return False  # clearly speech to Silero: no music of the fitting data scored this low
            if music_probability(features | self.smile_features(wave[start:end]), GATE) <= GATE["threshold"]:
                return False
        return True

    def detect(self, wave: np.ndarray, name: str = "audio") -> list[SpeechSegment]:
        return self.analyse(wave, name)[0]

    def analyse(self, wave: np.ndarray, name: str = "audio") -> tuple[list[SpeechSegment], np.ndarray]:
        """The speech segments (as `detect`) and the per-frame speech probabilities they were read from."""
        probs = self.probabilities(wave)
        segments = self.voice_activity(wave, probs)
        if not segments:
            raise NoSpeechError(
                f"{name}: no speech found (it sounds like silence, noise, a tone or a constant signal); the model "
                "recognises emotion in speech only"
            )
        voiced = [s for s in segments if not self.is_music(wave, probs, s)]
        if not voiced:
            raise MusicWithoutVoiceError(
                f"{name}: no speech found (it sounds like music, a tone or noise without a voice); the model recognises "
                "emotion in speech only"
            )
        return voiced, probs


def stream_samples() -> tuple[int, int]:
    """Samples of one stream and of its warm-up, whole frames both, so that every row's frames line up."""
    return int(STREAM_S * SAMPLING_RATE) // FRAME * FRAME, int(WARMUP_S * SAMPLING_RATE) // FRAME * FRAME


def silero_features(probs: np.ndarray, start: int, end: int) -> dict:
    """Silero's probabilities over the frames of `[start, end)` samples, summarized for the music check."""
    p = probs[start // FRAME : max(start // FRAME + 1, -(-end // FRAME))]
    return {
        "p_max": float(p.max()),
        "p_mean": float(p.mean()),
        "p_q90": float(np.quantile(p, 0.9)),
        "p_frac5": float((p > SEGMENT_THRESHOLD).mean()),
        "p_frac15": float((p > FRAC_THRESHOLD).mean()),
    }


_local = threading.local()


def detector() -> SpeechDetector:
    """This thread's detector, made on first use."""
    if getattr(_local, "detector", None) is None:
        _local.detector = SpeechDetector()
    return _local.detector


def warm_up() -> None:
    """Loads Silero and openSMILE in this thread now, so that a server's first request does not wait for them."""
    detector().smile  # noqa: B018


def _check_rate(sampling_rate: int) -> None:
    if sampling_rate != SAMPLING_RATE:
        raise ValueError(f"speech detection runs at {SAMPLING_RATE} Hz, got {sampling_rate} Hz: resample first")


def speech_probabilities(wave: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    _check_rate(sampling_rate)
    return detector().probabilities(wave)


def voice_activity(wave: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> list[SpeechSegment]:
    """Silero's segments (or the whole audio when speech is present but not delimited), before the music check."""
    _check_rate(sampling_rate)
    return detector().voice_activity(wave, detector().probabilities(wave))


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


def music_probability(features: dict[str, float], gate: dict = GATE) -> float:
    """A logistic regression of `music_gate.py` (the full check, or its Silero-only first stage)."""
    x = np.nan_to_num(np.array([features[name] for name in gate["features"]], dtype=np.float64))
    z = (x - np.array(gate["mean"])) / np.array(gate["scale"])
    return float(1 / (1 + np.exp(-(z @ np.array(gate["coef"]) + gate["intercept"]))))


def detect_speech(wave: np.ndarray, sampling_rate: int = SAMPLING_RATE, name: str = "audio") -> list[SpeechSegment]:
    """The speech segments, those that sound like music without a voice left out; the whole audio as one segment
    when speech is present but not delimited (see the module notes); `NoSpeechError` when there is none."""
    _check_rate(sampling_rate)
    return detector().detect(wave, name)


def analyse_speech(wave: np.ndarray, sampling_rate: int = SAMPLING_RATE, name: str = "audio") -> tuple[list[SpeechSegment], np.ndarray]:
    """`detect_speech`'s segments and the per-frame speech probabilities of its one Silero pass."""
    _check_rate(sampling_rate)
    return detector().analyse(wave, name)
