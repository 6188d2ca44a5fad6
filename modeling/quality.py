"""What the input sounds like: an estimate of its signal-to-noise ratio, bandwidth, clipping and level, measured on
its speech, and a note when it lies outside the conditions the model was trained and measured on.

An emotion model answers for anything it is given, with the same confidence on a clean studio clip as on a phone
call through a noisy room. This report tells its user when not to trust the answer, with the accuracy the model's
robustness benchmark measured on such audio (`robustness` in the model's config, where it was measured).

- SNR: speech power (frames Silero scores as speech) against noise power (frames it scores as non-speech, else
  the quietest tenth of the speech frames), in dB.
- Bandwidth: the highest frequency at which the long-term spectrum of the speech is within `BANDWIDTH_DB` of its
  peak: about 3.4-4 kHz through a telephone channel, 6-8 kHz for wideband recordings at 16 kHz.
- Clipping: the share of speech samples in runs of three or more at the waveform's peak value (flat tops).
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
    """The samples of the frames whose speech probability lies in [low, high), as `(frames, FRAME)`."""
    usable = min(len(probs), len(wave) // FRAME)
    frames = wave[: usable * FRAME].reshape(usable, FRAME)
    keep = (probs[:usable] >= low) & (probs[:usable] < high)
    return frames[keep]


def assess(wave: np.ndarray, probs: np.ndarray, robustness: dict | None = None, sampling_rate: int = SAMPLING_RATE) -> InputQuality:
    """The quality report of a 16 kHz waveform, from the detector's per-frame speech probabilities `probs`.
    `robustness` (condition -> measured accuracy, from the model's config) words the notes."""
    speech = _frames(wave, probs, SPEECH_P, 1.01)
    if len(speech) == 0:  # speech present but not delimited (shouted): the whole audio stands for it
        speech = _frames(wave, np.ones(len(probs)), 0.0, 1.01)
    energy = (speech.astype(np.float64) ** 2).mean(axis=1) + 1e-12
    noise = _frames(wave, probs, -1.0, NOISE_P)
    if len(noise) >= 0.3 * sampling_rate / FRAME:
        noise_power = float(np.median((noise.astype(np.float64) ** 2).mean(axis=1))) + 1e-12
    else:  # talk without pauses: the quietest speech frames come closest to the noise floor
        noise_power = float(np.quantile(energy, 0.1))
    speech_power = float(energy.mean())
    snr_db = 10 * np.log10(max(speech_power - noise_power, 1e-12) / noise_power)

    samples = speech.reshape(-1)
    _, psd = scipy.signal.welch(samples, fs=sampling_rate, nperseg=FRAME)
    level = 10 * np.log10(psd + 1e-20)
    above = np.nonzero(level >= level.max() - BANDWIDTH_DB)[0]
    bandwidth_hz = float(above.max() * sampling_rate / FRAME)

    peak = float(np.abs(wave).max())
    at_peak = np.abs(samples) >= 0.999 * peak
    # Runs of three or more samples at the peak: a flat top, which unclipped speech almost never has.
    run = at_peak[2:] & at_peak[1:-1] & at_peak[:-2]
    clipped = np.zeros_like(at_peak)
    for shift in range(3):
        clipped[shift : len(run) + shift] |= run
    clipping_ratio = float(clipped.mean())
    level_dbfs = float(10 * np.log10(speech_power))

    report = InputQuality(round(float(snr_db), 1), bandwidth_hz, round(clipping_ratio, 5), round(level_dbfs, 1))
    report.notes = notes(report, robustness or {})
    return report


def notes(report: InputQuality, robustness: dict) -> list[str]:
    """One line per condition outside those the model was trained on, with its measured accuracy where known."""
    found = []
    if report.narrowband:
        found.append(("telephone", f"telephone band (up to {report.bandwidth_hz / 1000:.1f} kHz)"))
    if report.snr_db < NOISY_SNR_DB:
        found.append(("noise", f"noisy (SNR about {report.snr_db:.0f} dB)"))
    if report.clipping_ratio > CLIPPED_RATIO:
        found.append(("clipping", f"clipped ({report.clipping_ratio:.1%} of the speech samples)"))
    if report.level_dbfs < QUIET_DBFS:
        found.append(("quiet", f"quiet ({report.level_dbfs:.0f} dBFS)"))
    lines = []
    for condition, text in found:
        measured = robustness.get(condition)
        clean = robustness.get("clean")
        if measured is not None and clean is not None:
            text += f": accuracy measured {measured:.2f} on such audio ({clean:.2f} on clean speech)"
        else:
            text += ": the model was trained on clean studio speech; expect lower accuracy"
        lines.append(text)
    return lines
