import subprocess

import numpy as np
import pytest
import soundfile as sf

from modeling import AudioError, SERFeatureExtractor, load_audio, prepare_waveform
from modeling.audio import resample

SR = 16_000


@pytest.fixture(scope="module")
def reference(clip_path):
    wave, sr = sf.read(clip_path, dtype="float32")
    assert sr == SR
    return wave


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 4000) -> float:
    """Peak normalized cross-correlation within +-max_lag samples (lossy codecs add a delay)."""
    n = min(len(a), len(b)) - max_lag
    a0 = a[max_lag : max_lag + n]
    best = 0.0
    for lag in range(-max_lag, max_lag + 1, 1):
        b0 = b[max_lag + lag : max_lag + lag + n]
        if len(b0) < n:
            continue
        best = max(best, float(np.dot(a0, b0) / (np.linalg.norm(a0) * np.linalg.norm(b0) + 1e-12)))
    return best


def ffmpeg_encode(src, dst, *codec_args):
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *codec_args, str(dst)], check=True)


@pytest.mark.parametrize(
    "subtype,sr",
    [("PCM_U8", 8000), ("PCM_16", 44100), ("PCM_24", 48000), ("PCM_32", 22050), ("FLOAT", 96000), ("DOUBLE", 16000)],
)
def test_wav_bit_depths_and_rates(subtype, sr, reference, tmp_path):
    path = tmp_path / f"clip_{subtype}_{sr}.wav"
    sf.write(path, resample(reference, SR, sr), sr, subtype=subtype)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - len(reference)) <= 2
    # 8-bit at 8 kHz loses the top half of the band and most of the dynamic range; the rest is near-exact.
    floor = 0.9 if subtype == "PCM_U8" else 0.999
    assert best_correlation(reference, wave, max_lag=8) > floor


@pytest.mark.parametrize(
    "ext,args",
    [
        ("flac", ["-c:a", "flac"]),
        ("mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
        ("ogg", ["-c:a", "libvorbis"]),
        ("webm", ["-c:a", "libopus"]),
        ("m4a", ["-c:a", "aac"]),
    ],
)
def test_compressed_formats(ext, args, clip_path, reference, tmp_path):
    src = tmp_path / "src.wav"
    sf.write(src, resample(reference, SR, 44100), 44100, subtype="PCM_16")
    dst = tmp_path / f"clip.{ext}"
    ffmpeg_encode(src, dst, *args)
    wave = load_audio(dst)
    assert abs(len(wave) / SR - len(reference) / SR) < 0.1  # encoder padding is a few ms
    assert best_correlation(reference, wave) > 0.9
    assert np.array_equal(load_audio(dst.read_bytes()), wave)  # bytes decode like the path


def test_stereo_and_multichannel_are_mixed_to_mono(reference, tmp_path):
    stereo = np.stack([reference, 0.5 * reference], axis=1)
    sf.write(tmp_path / "stereo.wav", stereo, SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "stereo.wav"), 0.75 * reference, atol=1e-6)
    six = np.stack([reference * (i + 1) / 6 for i in range(6)], axis=1)
    sf.write(tmp_path / "six.wav", six, SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "six.wav"), reference * 3.5 / 6, atol=1e-6)


def test_arrays_at_any_rate(reference):
    wave = prepare_waveform(resample(reference, SR, 44100), 44100)
    assert abs(len(wave) - len(reference)) <= 1
    int16 = (reference * 32767).astype(np.int16)
    np.testing.assert_allclose(prepare_waveform(int16, SR), reference, atol=1e-4)


def write(path, wave, sr=SR, subtype="FLOAT"):
    sf.write(path, wave, sr, subtype=subtype)
    return path


BAD_INPUTS = {
    "zero_bytes": (lambda p: p.write_bytes(b"") or p, "empty (0 bytes)"),
    "header_only": (lambda p: write(p, np.zeros(0, np.float32)), "no audio samples"),
    "silent": (lambda p: write(p, np.zeros(SR, np.float32)), "silent"),
    "too_short": (lambda p: write(p, 0.1 * np.ones(800, np.float32)), "too short (0.050 s)"),
    "nan": (lambda p: write(p, np.full(SR, np.nan, np.float32)), "NaN or infinite"),
    "inf": (lambda p: write(p, np.r_[np.ones(SR - 1, np.float32) * 0.1, np.inf]), "NaN or infinite"),
    "random_bytes": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)) or p, "could not be decoded"),
    "text": (lambda p: p.write_text("this is not audio\n" * 50) or p, "could not be decoded"),
}


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_raises_clear_error(kind, tmp_path):
    make, message = BAD_INPUTS[kind]
    path = tmp_path / f"{kind}.wav"
    make(path)
    with pytest.raises(AudioError, match=f"^{path.name}: .*{message.replace('(', '.').replace(')', '.')}"):
        load_audio(path)


def test_missing_file_and_duration_limit(reference, tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    path = write(tmp_path / "long.wav", np.tile(reference, 5))
    with pytest.raises(AudioError, match=rf"too long \({5 * len(reference) / SR:.1f} s\); the limit is 10 s"):
        load_audio(path, max_duration_s=10)


def test_feature_extractor_rejects_bad_arrays():
    fe = SERFeatureExtractor()
    with pytest.raises(AudioError, match="silent"):
        fe(np.zeros(SR, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        fe(np.full(SR, np.nan, np.float32))
    with pytest.raises(AudioError, match="resample it first"):
        fe(np.ones(SR, np.float32), sampling_rate=44100)


def test_feature_extractor_normalizes_and_denoises(reference):
    rng = np.random.default_rng(0)
    noisy = reference + 0.01 * rng.standard_normal(len(reference)).astype(np.float32)
    fe = SERFeatureExtractor()
    out = fe([noisy, noisy[:20000]])
    values, mask = out["input_values"], out["attention_mask"]
    assert values.shape == (2, len(noisy)) and mask[1].sum() == 20000 and (values[1, 20000:] == 0).all()
    assert abs(values[0].mean()) < 1e-4 and values[0].std() == pytest.approx(1.0, abs=1e-3)
    # Spectral gating lowers the noise floor: the quietest 10% of 20 ms frames lose energy relative to the clip.
    plain = SERFeatureExtractor(noise_reduction=False)(noisy)["input_values"][0]

    def floor_ratio(x):
        frames = x[: len(x) // 320 * 320].reshape(-1, 320)
        energy = (frames**2).mean(1)
        return np.percentile(energy, 10) / energy.mean()

    assert floor_ratio(values[0]) < 0.5 * floor_ratio(plain)


def crafted_wav(path, rate: int, channels: int, data_bytes: int = 32_000):
    """A WAV whose header declares `rate` and `channels` over `data_bytes` of real 16-bit samples."""
    import struct

    block = channels * 2
    data = (np.random.default_rng(0).standard_normal(data_bytes // 2) * 3000).astype("<i2").tobytes()
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", len(data)) + data)
    return path


@pytest.mark.parametrize(
    "rate, channels, message",
    [
        (1, 1, "declares a sampling rate of 1 Hz, outside what sound audio uses"),
        (200, 1, "declares a sampling rate of 200 Hz"),
        (4_000_000, 1, "declares a sampling rate of 4e\\+06 Hz"),
        (16_000, 200, "declares 200 channels; sound audio has 1 to 64"),
    ],
)
def test_impossible_headers_are_refused_before_decoding(rate, channels, message, tmp_path):
    """A few hundred kilobytes whose header claims a 1 Hz rate used to be resampled into billions of samples."""
    import tracemalloc

    path = crafted_wav(tmp_path / "crafted.wav", rate, channels, data_bytes=400_000)
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match=message):
            load_audio(path)
        with pytest.raises(AudioError, match=message):
            load_audio(path.read_bytes())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # the refusal comes from the header: nothing the size of the audio was allocated


def test_duration_limit_from_the_header(tmp_path):
    """4 MB of 16-bit samples declared at 1 kHz are 33 minutes of audio: refused from the header at a lower limit
    (nothing the size of the audio is allocated); every decoding entry point has a limit by default."""
    import tracemalloc

    import modeling.audio as audio

    path = crafted_wav(tmp_path / "long.wav", 1_000, 1, data_bytes=4_000_000)  # 2,000,000 frames: 2,000 s
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match=r"is too long \(2000.0 s\); the limit is 600 s"):
            load_audio(path, max_duration_s=600)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # decoding it would take 8 MB, resampling it 128 MB
    assert audio.DEFAULT_MAX_DURATION_S >= 3600  # generous enough for predict_long on long recordings
    assert len(load_audio(path)) == 2_000_000 * 16  # within the default limit: decoded and resampled
    import inspect

    for function in (audio.load_audio, audio.decode_audio, audio.prepare_waveform):  # the limit holds by default
        assert inspect.signature(function).parameters["max_duration_s"].default == audio.DEFAULT_MAX_DURATION_S


def test_arrays_with_impossible_rates_are_refused():
    wave = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    with pytest.raises(AudioError, match="declares a sampling rate of 1 Hz"):
        prepare_waveform(wave, 1)
    with pytest.raises(AudioError, match=r"is too long \(8.0 s\); the limit is 5 s"):
        prepare_waveform(wave, 1_000, max_duration_s=5)  # refused before resampling to 16 kHz
