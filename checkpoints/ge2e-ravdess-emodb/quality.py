"""What the input sounds like: an estimate of its signal-to-noise ratio, bandwidth, clipping and level, measured on
its speech, and a note when it lies outside the conditions the model was trained and measured on.

An emotion model answers for anything it is given, with the same confidence on a clean studio clip as on a phone
call through a noisy room. This report tells its user when not to trust the answer, with the accuracy the model's
robustness benchmark measured on such audio (`robustness` in the model's config, where it was measured).

All four are measured on the frames Silero scores as speech (at most `MAX_FRAMES` of them, evenly spread):
- SNR: speech power against noise power (frames Silero scores as non-speech, else the quietest tenth of the speech
  frames), in dB, floored at -10 dB.
- Bandwidth: the highest frequency at which the long-term spectrum of the speech, less that of the noise, is within
  `BANDWIDTH_DB` of its peak: about 3.4-4 kHz through a telephone channel, 6-8 kHz for wideband audio at 16 kHz.
- Clipping: the share of speech samples in flat tops (runs of three or more at the waveform's peak). Resampling or
  a codec after the clipping (a 44.1 kHz recording, an MP3) turns flat tops into ringing; then the samples piled up
  within 20% of the peak stand for them, counted when they are over 2% of the speech (unclipped studio speech:
  at most 1%). Clipping that touched only a few peaks may go unseen.
- Level: RMS of the speech in dB relative to full scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.signal

from .audio import SAMPLING_RATE

FRAME = 512  # Silero's frame: the report reads the detector's per-frame speech probabilities
SPEECH_P, NOISE_P = 0.5, 0.15
BANDWIDTH_DB = 50.0
# Where the notes start: below these the conditions differ from the studio speech the model learned from.
NARROWBAND_HZ = 4200.0
NOISY_SNR_DB = 15.0
CLIPPED_RATIO = 0.001
NEAR_PEAK, NEAR_PEAK_CLIPPED = 0.8, 0.02
MAX_FRAMES = 18_750  # ten minutes: the report of a long recording costs no more than that
SNR_FLOOR_DB = -10.0
QUIET_DBFS = -60.0  # the model normalizes the level; this low, quantization and the noise floor take over


@dataclass
class InputQuality:
    snr_db: float
    bandwidth_hz: float
    clipping_ratio: float
    level_dbfs: float
    notes: list[str] = field(default_factory=list)

    @property
    def narrowband(self) -> bool:
        return self.bandwidth_hz < NARROWBAND_HZ

    def to_dict(self) -> dict:
        return {**asdict(self), "narrowband": self.narrowband}


def _frames(wave: np.ndarray, probs: np.ndarray, low: float, high: float) -> np.ndarray:
    """The samples of the frames whose speech probability lies in [low, high), as `(frames, FRAME)` float64, at most
    `MAX_FRAMES` of them, evenly spread."""
    usable = min(len(probs), len(wave) // FRAME)
    keep = np.nonzero((probs[:usable] >= low) & (probs[:usable] < high))[0]
    if len(keep) > MAX_FRAMES:
        keep = keep[np.linspace(0, len(keep) - 1, MAX_FRAMES).astype(int)]
    frames = wave[: usable * FRAME].reshape(usable, FRAME)
    return frames[keep].astype(np.float64)


def _spectrum(frames: np.ndarray, sampling_rate: int) -> np.ndarray:
    return scipy.signal.welch(frames.reshape(-1), fs=sampling_rate, nperseg=FRAME)[1]


def assess(wave: np.ndarray, probs: np.ndarray, robustness: dict | None = None, sampling_rate: int = SAMPLING_RATE) -> InputQuality:
    """The quality report of a 16 kHz waveform (at least one 32 ms frame, finite), from the detector's per-frame
    speech probabilities `probs`. `robustness` (condition -> measured accuracy, from the model's config) words the
    notes."""
    wave = np.asarray(wave)
    if len(wave) < FRAME or len(probs) == 0 or not np.isfinite(wave).all():
        raise ValueError(f"the quality report needs finite audio of at least {FRAME} samples with its speech probabilities")
    speech = _frames(wave, probs, SPEECH_P, 1.01)
    if len(speech) == 0:  # speech present but not delimited (shouted): the whole audio stands for it
        speech = _frames(wave, np.ones(len(probs)), 0.0, 1.01)
    energy = (speech**2).mean(axis=1) + 1e-12
    noise = _frames(wave, probs, -1.0, NOISE_P)
    if len(noise) < 0.3 * sampling_rate / FRAME:  # talk without pauses: the quietest speech frames come closest
        noise = speech[energy <= np.quantile(energy, 0.1)]
    noise_power = float((noise**2).mean()) + 1e-12
    speech_power = float(energy.mean())
    snr_db = max(SNR_FLOOR_DB, 10 * np.log10(max(speech_power - noise_power, 1e-12) / noise_power))

    # The speech's own spectrum: bins where it does not rise 3 dB over the noise's do not count, so that noise over
    # a telephone call does not widen it.
    excess = np.maximum(_spectrum(speech, sampling_rate) - 2 * _spectrum(noise, sampling_rate), 0.0)
    level = 10 * np.log10(excess + 1e-20)
    above = np.nonzero(level >= level.max() - BANDWIDTH_DB)[0]
    bandwidth_hz = float(above.max() * sampling_rate / FRAME)

    clipping_ratio = _clipping(wave, speech)
    level_dbfs = float(10 * np.log10(speech_power))

    report = InputQuality(round(float(snr_db), 1), bandwidth_hz, round(clipping_ratio, 5), round(level_dbfs, 1))
    report.notes = notes(report, robustness or {})
    return report


def _clipping(wave: np.ndarray, speech: np.ndarray) -> float:
    peak = float(np.abs(wave).max())
    if peak <= 0:
        return 0.0
    samples = np.abs(speech.reshape(-1))
    at_peak = samples >= 0.999 * peak
    run = at_peak[2:] & at_peak[1:-1] & at_peak[:-2]
    flat = np.zeros_like(at_peak)
    for shift in range(3):
        flat[shift : len(run) + shift] |= run
    if flat.any():
        return float(flat.mean())
    near = float((samples >= NEAR_PEAK * peak).mean())
    return near if near > NEAR_PEAK_CLIPPED else 0.0


def notes(report: InputQuality, robustness: dict) -> list[str]:
    """One line per condition outside those the model was trained on, with its measured accuracy where known."""
    found = []
    if report.narrowband:
        found.append(("telephone", f"telephone band (up to {report.bandwidth_hz / 1000:.1f} kHz)"))
    if report.snr_db < NOISY_SNR_DB:
        found.append(("noise", f"noisy (SNR about {report.snr_db:.0f} dB)"))
    if report.clipping_ratio > CLIPPED_RATIO:
        found.append(("clipping", f"clipped ({report.clipping_ratio:.1%} of the speech at its ceiling)"))
    if report.level_dbfs < QUIET_DBFS:
        found.append(("quiet", f"quiet ({report.level_dbfs:.0f} dBFS)"))
    lines = []
    clean = robustness.get("clean")
    for condition, text in found:
        measured = robustness.get(condition)
        if measured is None or clean is None:
            text += ": outside the conditions this model was measured on; expect lower accuracy"
        elif measured >= 0.95 * clean:
            text += f": accuracy measured {measured:.2f} on such audio, close to clean speech ({clean:.2f})"
        else:
            text += f": accuracy measured {measured:.2f} on such audio ({clean:.2f} on clean speech)"
        lines.append(text)
    return lines
