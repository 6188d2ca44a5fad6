"""Property tests of the preprocessing: for any input in the domain, a usable output or a clear AudioError."""

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modeling import AudioError, SERFeatureExtractor, load_audio, prepare_waveform

FE = SERFeatureExtractor()
MAGIC = [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"ID3\x03\x00", b"\xff\xfb", b"\x1aE\xdf\xa3"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arrays(
        np.float32,
        st.integers(1600, 48000),
        elements=st.floats(-1.0, 1.0, width=32, allow_nan=False, allow_infinity=False),
    )
)
def test_any_finite_waveform_gives_finite_features_of_its_length(wave):
    assume(np.abs(wave).max() >= 1e-3)  # quieter input is refused as silent (tested elsewhere)
    features = FE(wave)
    values = features["input_values"]
    assert values.shape == (1, len(wave))
    assert np.isfinite(values).all()
    assert features["attention_mask"].sum() == len(wave)


@settings(max_examples=40, deadline=None)
@given(
    st.floats(0.1, 1.5),
    st.sampled_from([8000, 11025, 22050, 44100, 48000, 96000]),
    st.integers(1, 6),
)
def test_any_rate_and_channel_count_gives_16k_mono(seconds, rate, channels):
    n = int(np.ceil(seconds * rate))
    wave = np.random.default_rng(n).uniform(-0.5, 0.5, (n, channels)).astype(np.float32)
    out = prepare_waveform(wave, rate)
    assert out.ndim == 1 and abs(len(out) - round(n * 16000 / rate)) <= 1
    assert np.isfinite(out).all()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(MAGIC), st.binary(max_size=4096))
def test_any_bytes_decode_or_raise_audio_error(prefix, payload):
    try:
        wave = load_audio(prefix + payload)
    except AudioError as err:
        assert str(err)
        return
    assert wave.ndim == 1 and wave.dtype == np.float32 and np.isfinite(wave).all()
