"""The bad-input matrix: files a user's microphone or folder may hold, made on disk, with what must happen.

`expect[entry point]` is "ok" (a sound prediction) or a regex the error message must match. Entry points:
"pipeline" (the model's own pipeline, trust_remote_code), "predict" (predict.py) and "demo" (the app's API, max duration 30 s,
max upload 2 MB).
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000
UNDECODABLE = "could not be decoded as audio"


@dataclass
class Case:
    name: str
    path: Path
    expect: dict[str, str]

    def expected(self, entry: str) -> str:
        return self.expect.get(entry, self.expect["pipeline"])


def _same(outcome: str) -> dict[str, str]:
    return {"pipeline": outcome}


def make_cases(root: Path, speech: np.ndarray, long_file: bool = True) -> list[Case]:
    """Writes every case under `root`; `speech` is a real 16 kHz clip."""
    root.mkdir(parents=True, exist_ok=True)
    cases = []

    def add(name: str, expect: dict[str, str], write) -> None:
        path = root / name
        write(path)
        cases.append(Case(name, path, expect))

    def wav(wave, sr=SR, subtype="PCM_16"):
        return lambda p: sf.write(p, wave, sr, subtype=subtype)

    full_wav = io.BytesIO()
    sf.write(full_wav, speech, SR, format="WAV", subtype="PCM_16")
    add("zero_bytes.wav", _same("is empty|empty \\(0 bytes\\)"), lambda p: p.write_bytes(b""))
    add("header_only.wav", _same("no audio samples"), lambda p: p.write_bytes(full_wav.getvalue()[:44]))
    add("truncated.wav", _same("ok"), lambda p: p.write_bytes(full_wav.getvalue()[: len(full_wav.getvalue()) // 2]))

    def truncated_with_ffmpeg(ext, codec):
        def write(p):
            tmp = p.with_suffix(".full" + p.suffix)
            sf.write(tmp.with_suffix(".wav"), speech, SR)
            subprocess.run(
                ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(tmp.with_suffix(".wav")), *codec, str(tmp)],
                check=True,
            )
            data = tmp.read_bytes()
            p.write_bytes(data[: len(data) // 2])
            tmp.unlink()
            tmp.with_suffix(".wav").unlink()

        return write

    add("truncated.flac", _same("ok"), truncated_with_ffmpeg(".flac", ["-c:a", "flac"]))
    add("truncated.mp3", _same("ok"), truncated_with_ffmpeg(".mp3", ["-c:a", "libmp3lame"]))
    add("random_bytes.wav", _same(UNDECODABLE), lambda p: p.write_bytes(np.random.default_rng(1).bytes(20_000)))
    add("text.wav", _same(UNDECODABLE), lambda p: p.write_text("hello, this is a text file\n" * 100))

    def png(p):
        from PIL import Image

        Image.new("RGB", (64, 64), (200, 30, 30)).save(p, format="PNG")

    add("image_png.wav", _same(UNDECODABLE), png)
    add("all_zero.wav", _same("is silent"), wav(np.zeros(SR * 2, np.float32)))
    add("one_sample.wav", _same("is too short"), wav(np.array([0.5], np.float32)))
    add("short_50ms.wav", _same("is too short"), wav(speech[SR : SR + SR // 20]))
    add("nan.wav", _same("NaN or infinite"), wav(np.r_[speech[:SR], np.nan].astype(np.float32), subtype="FLOAT"))
    add("inf.wav", _same("NaN or infinite"), wav(np.r_[speech[:SR], np.inf].astype(np.float32), subtype="FLOAT"))
    t = np.arange(SR * 2) / SR
    # Signal, but no speech: refused by speech detection, not given a confident emotion.
    no_speech = "no speech found"
    add("square_clipped.wav", _same(no_speech), wav(np.sign(np.sin(2 * np.pi * 220 * t)).astype(np.float32)))
    add("tone_440hz.wav", _same(no_speech), wav((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)))
    add("dc_offset.wav", _same(no_speech), wav(np.full(SR * 2, 0.3, np.float32)))
    add("white_noise.wav", _same(no_speech), wav((0.1 * np.random.default_rng(2).standard_normal(SR * 2)).astype(np.float32)))
    add("pcm_u8.wav", _same("ok"), wav(speech, subtype="PCM_U8"))
    add("pcm_24.wav", _same("ok"), wav(speech, subtype="PCM_24"))
    add("float32.wav", _same("ok"), wav(speech, subtype="FLOAT"))
    import soxr

    add("rate_8k.wav", _same("ok"), wav(soxr.resample(speech, SR, 8000), 8000))
    add("rate_96k.wav", _same("ok"), wav(soxr.resample(speech, SR, 96000), 96000))
    add("six_channels.wav", _same("ok"), wav(np.stack([speech * (k + 1) / 6 for k in range(6)], axis=1)))
    add("name with spaces ü ñ 日本.wav", _same("ok"), wav(speech))
    if long_file:

        def long(p):  # ten minutes: long enough for every limit (and for predict.py's windows), quick to classify
            with sf.SoundFile(p, "w", SR, 1, format="FLAC", subtype="PCM_16") as f:
                for _ in range(int(600 * SR / len(speech)) + 1):
                    f.write(speech)

        add(
            "ten_minutes.flac",
            {"pipeline": "ok", "demo": "(?i)too long|file.*(size|large|exceed)"},
            long,
        )
    return cases
