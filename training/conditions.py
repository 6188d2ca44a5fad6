"""Real-world recording conditions applied to clean clips: telephone channels, lossy codecs, rooms, noise, music
beds, low levels and clipping. The robustness benchmark measures the model in each, and the tests check that the
input-quality report recognises them. All take and return float32 mono waveforms at 16 kHz; random ones take a seed.

Codecs run through FFmpeg (Debian's build has libmp3lame, libopus and libgsm); rooms are simulated with
pyroomacoustics (image source method, RT60 set by Sabine's formula).
"""

from __future__ import annotations

import io
import subprocess

import numpy as np
import scipy.signal
import soundfile as sf
import soxr

SR = 16_000


def active_speech_power(wave: np.ndarray, probs: np.ndarray, frame: int = 512) -> float:
    """Mean power of the frames Silero scores as speech (the whole clip if none): the level SNRs refer to, as ITU-T
    P.56's active speech level does, so that a clip's pauses do not lower its stated SNR."""
    usable = min(len(probs), len(wave) // frame)
    frames = wave[: usable * frame].reshape(usable, frame).astype(np.float64)
    speech = frames[probs[:usable] >= 0.5]
    return float((speech if len(speech) else frames).__pow__(2).mean())


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float, speech_power: float, seed: int = 0) -> np.ndarray:
    """`noise` (looped, from a random offset) added at `snr_db` below the clip's active speech power."""
    rng = np.random.default_rng(seed)
    start = int(rng.integers(0, max(1, len(noise) - len(wave))))
    bed = np.resize(np.roll(noise, -start), len(wave)).astype(np.float64)
    gain = np.sqrt(speech_power / (np.mean(bed**2) + 1e-20) / 10 ** (snr_db / 10))
    return (wave + gain * bed).astype(np.float32)


def babble(clips: list[np.ndarray], seconds: float = 30.0, talkers: int = 6, seed: int = 0) -> np.ndarray:
    """Babble noise: `talkers` streams of real speech clips laid end to end, summed (as NOISEX's babble is made)."""
    rng = np.random.default_rng(seed)
    total = int(seconds * SR)
    out = np.zeros(total)
    for _ in range(talkers):
        stream = np.concatenate([clips[i] / (np.std(clips[i]) + 1e-9) for i in rng.permutation(len(clips))])
        out += np.resize(stream, total)
    return (out / np.std(out)).astype(np.float32)


def telephone(wave: np.ndarray, codec: str = "mulaw") -> np.ndarray:
    """A narrowband call: 300-3400 Hz, 8 kHz, through G.711 mu-law ("mulaw") or GSM 06.10 ("gsm"), back at 16 kHz."""
    return narrowband(wave, SR, 300.0, 3400.0, codec)


# FFmpeg encoders of the narrowband codecs of telephony; "linear" is the band-limited 8 kHz signal without a codec.
NARROWBAND_CODECS = {
    "linear": None,
    "mulaw": ["-c:a", "pcm_mulaw", "-f", "wav"],
    "alaw": ["-c:a", "pcm_alaw", "-f", "wav"],
    "gsm": ["-c:a", "libgsm", "-f", "gsm"],
}


def narrowband(wave: np.ndarray, rate: int, low_hz: float, high_hz: float, codec: str) -> np.ndarray:
    """`wave` band-limited to `low_hz`-`high_hz`, at 8 kHz, through `codec` (`NARROWBAND_CODECS`), back at `rate`."""
    band = scipy.signal.butter(6, [low_hz, high_hz], btype="band", fs=rate, output="sos")
    narrow = soxr.resample(scipy.signal.sosfilt(band, wave), rate, 8000).astype(np.float32)
    encoder = NARROWBAND_CODECS[codec]
    coded = narrow if encoder is None else ffmpeg_roundtrip(narrow, 8000, encoder)
    back = soxr.resample(coded, 8000, rate).astype(np.float32)
    return np.pad(back[: len(wave)], (0, max(0, len(wave) - len(back))))


def compress(wave: np.ndarray, codec: str, kbps: int) -> np.ndarray:
    """A lossy file: MP3 ("mp3") or Opus ("opus") at `kbps`, decoded back to 16 kHz."""
    encoder = {"mp3": ["-c:a", "libmp3lame", "-f", "mp3"], "opus": ["-c:a", "libopus", "-f", "ogg"]}[codec]
    return ffmpeg_roundtrip(wave, SR, [*encoder, "-b:a", f"{kbps}k"])


def ffmpeg_roundtrip(wave: np.ndarray, rate: int, encoder: list[str]) -> np.ndarray:
    """Encodes with FFmpeg and decodes back to float32 at `rate`, the length kept."""
    source = io.BytesIO()
    sf.write(source, wave, rate, format="WAV", subtype="FLOAT")
    encoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "wav", "-i", "pipe:0", "-ar", str(rate), *encoder, "pipe:1"],
        input=source.getvalue(), capture_output=True, check=True,
    ).stdout  # fmt: skip
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-ar", str(rate), "-ac", "1", "-f", "f32le", "pipe:1"],
        input=encoded, capture_output=True, check=True,
    ).stdout  # fmt: skip
    out = np.frombuffer(decoded, np.float32)
    # Encoders add priming samples at the start; keep the clip's length, aligned by cross-correlation.
    lag = int(np.argmax(scipy.signal.correlate(out[: len(wave) + 4096], wave, mode="valid"))) if len(out) > len(wave) else 0
    return np.pad(out[lag : lag + len(wave)], (0, max(0, len(wave) - len(out[lag:]))))


def room_impulse_response(rt60_s: float, seed: int = 0) -> tuple[np.ndarray, float]:
    """A simulated shoebox room's impulse response (talker and microphone 1.5-3 m apart at random places; image
    sources for the early reflections, ray tracing for the tail, as pyroomacoustics' hybrid simulator does) and its
    measured RT60, which Sabine's formula only approximates. The same seed gives the same room."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    # The ray tracing draws from pyroomacoustics' own generators (numpy's and its C++ library's): seeded too, so that a
    # seed gives the same room on every run (the benchmark's rooms, training's bank of rooms).
    pra.random.seed(numpy=seed)
    room_dim = np.array([rng.uniform(5, 8), rng.uniform(4, 6), rng.uniform(2.6, 3.2)])
    absorption, _ = pra.inverse_sabine(rt60_s, room_dim)
    room = pra.ShoeBox(room_dim, fs=SR, materials=pra.Material(absorption), max_order=3, ray_tracing=True, air_absorption=True)
    room.set_ray_tracing(receiver_radius=0.5, n_rays=5000, energy_thres=1e-5)
    source = rng.uniform([1, 1, 1.2], room_dim - [1, 1, 1.2])
    for _ in range(1000):  # a direction and distance that keep the microphone 0.5 m inside the walls
        angle, distance = rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 3.0)
        mic = source + [distance * np.cos(angle), distance * np.sin(angle), 0.0]
        if np.all(mic > 0.5) and np.all(mic < room_dim - 0.5):
            break
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    return rir, float(pra.experimental.measure_rt60(rir, fs=SR))


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """The clip convolved with a room impulse response, its length and level kept."""
    out = scipy.signal.fftconvolve(wave.astype(np.float64), rir)[: len(wave)]
    return (out * np.sqrt(np.mean(wave.astype(np.float64) ** 2) / (np.mean(out**2) + 1e-20))).astype(np.float32)


def set_level(wave: np.ndarray, dbfs: float, speech_power: float) -> np.ndarray:
    """The clip scaled so that its active speech level is `dbfs`."""
    return (wave * np.sqrt(10 ** (dbfs / 10) / speech_power)).astype(np.float32)


def clip(wave: np.ndarray, overdrive: float = 4.0) -> np.ndarray:
    """Hard clipping: the clip amplified until its peak is `overdrive` times full scale, then cut at full scale."""
    return np.clip(wave * overdrive / (np.abs(wave).max() + 1e-12), -1.0, 1.0).astype(np.float32)
