"""Decoding and checking audio: training and every way of classifying a recording go through here.

Files are decoded with libsndfile (WAV, FLAC, OGG, MP3, ...) and, for containers it does not read
(WebM, M4A/AAC, ...), with FFmpeg through torchcodec. Whatever the source, the result is a float32
mono waveform at the model's sampling rate.
"""

from __future__ import annotations

import io
import logging
import os
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr

logger = logging.getLogger(__name__)

# The rate every model of this project takes its input at: the one place this fact is defined.
SAMPLING_RATE = 16_000

AudioSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]

# What folder scans pick up: everything libsndfile or FFmpeg decodes, video containers included (their audio
# track is used). A file named explicitly is tried whatever its extension.
AUDIO_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .ogg .oga .opus .webm .m4a .aac .aif .aiff .mp4 .mkv .mka .mov .wma .amr .3gp .caf .au".split()
)

MIN_DURATION_S = 0.1
# What a header of sound audio can declare. Outside these the file is damaged or crafted, and honouring it could
# take gigabytes: a few hundred kilobytes that claim a 1 Hz rate resample into billions of samples.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64
# Longest audio decoded when the caller sets no limit: generous for hours of speech classified in pieces, and a
# bound on memory (4 h at 16 kHz is 0.9 GB of float32) whatever a header claims.
DEFAULT_MAX_DURATION_S = 4 * 3600.0
# -80 dBFS: below this peak there is nothing a microphone picked up beyond dither.
SILENCE_PEAK = 1e-4


class AudioError(ValueError):
    """Raised for input that is not usable audio; the message says what is wrong with it."""


def _describe(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source)) or os.fspath(source)
    return "the audio data"


def _open(source: AudioSource) -> tuple[str | io.BytesIO, str]:
    """A path or an in-memory stream for the decoders, and the name used in messages."""
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise AudioError(f"{path}: no such file")
        if os.path.isdir(path):
            raise AudioError(f"{path}: is a folder, not an audio file")
        # Only a regular file's size means anything: a pipe or device reports 0 and is read like any stream.
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise AudioError(f"{name}: the file is empty (0 bytes)")
        return path, name
    data = bytes(source) if isinstance(source, (bytes, bytearray)) else source.read()
    if not data:
        raise AudioError(f"{name}: the file is empty (0 bytes)")
    return io.BytesIO(data), name


def _too_long(name: str, duration: float, max_duration_s: float) -> AudioError:
    return AudioError(f"{name}: is too long ({duration:.1f} s); the limit is {max_duration_s:g} s")


def check_rate(name: str, sample_rate: float) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{name}: declares a sampling rate of {sample_rate:g} Hz, outside what sound audio uses "
            f"({MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz); the file is damaged or not audio"
        )


def check_header(name: str, sample_rate: float, channels: int, duration: float | None, max_duration_s: float | None) -> None:
    """Refuses, from what a header declares and before any sample is decoded, what cannot be sound audio or would
    exceed the duration limit (whatever the rate, the decoded and resampled sizes follow from the duration)."""
    check_rate(name, sample_rate)
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{name}: declares {channels} channels; sound audio has 1 to {MAX_CHANNELS}")
    if max_duration_s is not None and duration is not None and duration > max_duration_s:
        raise _too_long(name, duration, max_duration_s)


def _decode_soundfile(file, name: str, max_duration_s: float | None) -> tuple[np.ndarray, int]:
    with sf.SoundFile(file) as f:
        # Refuse impossible or over-long input from the header, before spending memory on decoding it.
        check_header(name, f.samplerate, f.channels, f.frames / f.samplerate if f.samplerate > 0 else None, max_duration_s)
        # Into one buffer of the announced size (no second copy for hour-long files), block by block, so that a
        # file cut short (an interrupted upload or copy) yields the audio it holds.
        out = np.empty((max(f.frames, 0), f.channels), np.float32)
        pos = 0
        try:
            while pos < len(out):
                read = f.read(out=out[pos : pos + 4096])  # small blocks: a damaged one loses little
                if len(read) == 0:
                    break
                pos += len(read)
        except sf.LibsndfileError:
            if pos == 0:
                raise
            logger.warning("%s: the file is damaged or cut short; using the %.2f s before that", name, pos / f.samplerate)
        return out[:pos].T, f.samplerate


def _decode_ffmpeg(file, name: str, max_duration_s: float | None) -> tuple[np.ndarray, int]:
    try:  # optional: WAV, FLAC, OGG and MP3 decode without it
        from torchcodec.decoders import AudioDecoder
    except ImportError:
        raise RuntimeError("decoding this container needs torchcodec and FFmpeg: pip install torchcodec") from None

    if isinstance(file, io.BytesIO):
        file = file.getvalue()
    decoder = AudioDecoder(file)
    meta = decoder.metadata
    check_header(name, meta.sample_rate or 0, meta.num_channels or 0, meta.duration_seconds, max_duration_s)
    samples = decoder.get_all_samples()
    return samples.data.numpy().astype(np.float32, copy=False), int(samples.sample_rate)


def decode_audio(source: AudioSource, max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> tuple[np.ndarray, int]:
    """Decodes a file, its bytes or a binary stream to `(channels, samples)` float32 and its sampling rate."""
    file, name = _open(source)
    errors = []
    for decoder in (_decode_soundfile, _decode_ffmpeg):
        if isinstance(file, io.BytesIO):
            file.seek(0)
        try:
            return decoder(file, name, max_duration_s)
        except (AudioError, MemoryError):  # the input's fault, or this process's: another decoder will not help
            raise
        except Exception as err:  # each decoder has its own error types; any failure means "try the next"
            errors.append(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    raise AudioError(
        f"{name}: could not be decoded as audio; the file is corrupt or not in a supported format "
        f"(WAV, FLAC, MP3, OGG, WebM, M4A) [{'; '.join(errors)}]"
    )


def to_float(wave: np.ndarray, name: str = "audio") -> np.ndarray:
    """Samples as floats: integer PCM is scaled to [-1, 1]; float input is returned as it is."""
    wave = np.asarray(wave)
    if np.issubdtype(wave.dtype, np.floating):
        return wave
    if np.issubdtype(wave.dtype, np.integer):
        return wave.astype(np.float32) / float(np.iinfo(wave.dtype).max)
    raise AudioError(f"{name}: expected numeric samples, got dtype {wave.dtype}")


def to_mono(wave: np.ndarray, channel_axis: int | None = None) -> np.ndarray:
    """Averages channels. Without `channel_axis`, the shorter axis of a 2-D array is taken as the channels."""
    wave = np.asarray(wave)
    if wave.ndim == 1:
        return wave
    if wave.ndim != 2:
        raise AudioError(f"audio must be 1-D (mono) or 2-D (multi-channel), got shape {wave.shape}")
    if channel_axis is None:
        channel_axis = 0 if wave.shape[0] <= wave.shape[1] else 1
    if wave.shape[channel_axis] == 1:
        return wave[0] if channel_axis == 0 else wave[:, 0]  # a view: no copy of long mono files
    return wave.mean(axis=channel_axis)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLING_RATE) -> np.ndarray:
    check_rate("audio", orig_sr)
    if orig_sr == target_sr:
        return wave
    return soxr.resample(wave, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def check_waveform(
    wave: np.ndarray, sampling_rate: int = SAMPLING_RATE, max_duration_s: float | None = None, name: str = "audio"
) -> None:
    """Raises `AudioError` for a waveform the model cannot use: empty, non-finite, too short, too long or silent."""
    if wave.size == 0:
        raise AudioError(f"{name}: contains no audio samples (empty)")
    # min/max propagate NaN and show inf, without the temporary arrays of isfinite() or abs() on long audio.
    low, high = float(wave.min()), float(wave.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise AudioError(f"{name}: contains NaN or infinite sample values")
    duration = wave.shape[-1] / sampling_rate
    if duration < MIN_DURATION_S:
        raise AudioError(f"{name}: is too short ({duration:.3f} s); at least {MIN_DURATION_S} s of audio is needed")
    if max_duration_s is not None and duration > max_duration_s:
        raise _too_long(name, duration, max_duration_s)
    if max(high, -low) < SILENCE_PEAK:
        raise AudioError(f"{name}: is silent (no signal above -80 dBFS)")


def prepare_waveform(
    wave: np.ndarray,
    sampling_rate: int,
    target_sr: int = SAMPLING_RATE,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    name: str = "audio",
    channel_axis: int | None = None,
) -> np.ndarray:
    """Mixes to mono, resamples to `target_sr` and checks an in-memory waveform (at most `max_duration_s`)."""
    wave = to_float(wave, name)
    check_rate(name, sampling_rate)
    mono = to_mono(wave, channel_axis).astype(np.float32, copy=False)
    # Checked before resampling so that NaN or empty input is named as such, not as a resampler failure, and so
    # that the resampled size (which follows from the duration) is bounded before it is allocated.
    check_waveform(mono, sampling_rate, max_duration_s, name)
    mono = resample(mono, sampling_rate, target_sr)
    check_waveform(mono, target_sr, max_duration_s, name)
    return mono


def load_audio(
    source: AudioSource, sampling_rate: int = SAMPLING_RATE, max_duration_s: float | None = DEFAULT_MAX_DURATION_S
) -> np.ndarray:
    """Decodes any supported audio to a checked float32 mono waveform at `sampling_rate`.

    The header is checked before decoding: a sampling rate outside 1-768 kHz, more than 64 channels, or a
    duration over `max_duration_s` (default 4 hours; `None` for no limit) is refused without allocating.

    Raises:
        AudioError: the input is missing, empty, undecodable, silent, too short, too long, not finite, or its
            header declares what sound audio cannot be.
    """
    channels, source_sr = decode_audio(source, max_duration_s)
    return prepare_waveform(channels, source_sr, sampling_rate, max_duration_s, _describe(source), channel_axis=0)
