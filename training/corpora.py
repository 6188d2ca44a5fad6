"""Converts the public RAVDESS and EmoDB archives into the 16 kHz FLAC copies the recipes and the test suite read.

    python -m training.corpora --ravdess Audio_Speech_Actors_01-24.zip --emodb download.zip --out ../shared/data

- RAVDESS speech (Livingstone & Russo 2018, CC BY-NC-SA 4.0): `Audio_Speech_Actors_01-24.zip` from
  https://zenodo.org/records/1188976. Written to `OUT/ravdess16k/Actor_NN/<name>.flac`; actors 01-20 by default
  (`--ravdess_actors`): the project keeps 21-24 out of every folder it trains or tunes on, as unseen speakers.
- EmoDB (Burkhardt et al. 2005, free for research use): `download.zip` from http://emodb.bilderbar.info/download/.
  Written to `OUT/emodb16k/NN/<name>.flac` (a folder per speaker).

Each folder gets a `manifest.csv` (one row per clip: its path relative to the folder, emotion, speaker, sex,
duration, the source's sampling rate and the SHA-1 of the 16-bit samples). Resampled with soxr (very high quality),
mono, 16-bit. Files off the corpus's naming layout are skipped and counted.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf
import soxr

from modeling.audio import SAMPLING_RATE
from serving.files import atomic_path

from .sources import EMODB_NAME, RAVDESS_NAME, parse_emodb_name, parse_ravdess_name

RAVDESS_COLUMNS = ["path", "emotion", "emotion_code", "intensity", "statement", "repetition", "actor", "sex", "duration_s", "source_sr", "sha1_16k"]
EMODB_COLUMNS = ["path", "corpus", "speaker", "sex", "emotion", "emotion_code", "duration_s", "source_sr", "sha1_16k"]


def _to_16k(data: bytes) -> tuple[np.ndarray, int]:
    wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if rate != SAMPLING_RATE:
        wave = soxr.resample(wave, rate, SAMPLING_RATE, quality="VHQ")
    pcm = np.clip(np.round(wave * 32767), -32768, 32767).astype(np.int16)
    return pcm, rate


def _write(pcm: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(tmp, pcm, SAMPLING_RATE, format="FLAC", subtype="PCM_16")


def _members(archive: zipfile.ZipFile, pattern) -> tuple[list[zipfile.ZipInfo], int]:
    """The archive's WAV files whose names follow the layout, and how many others were skipped."""
    wavs = [m for m in archive.infolist() if not m.is_dir() and m.filename.lower().endswith(".wav") and "__MACOSX" not in m.filename]
    kept = [m for m in wavs if pattern.match(PurePosixPath(m.filename).stem)]
    return kept, len(wavs) - len(kept)


def convert_ravdess(zip_path: str | Path, out_dir: str | Path, actors: set[int]) -> tuple[int, int]:
    """RAVDESS speech into `out_dir` (`Actor_NN/*.flac` and `manifest.csv`); returns (clips written, skipped)."""
    out_dir = Path(out_dir)
    rows, skipped = [], 0
    with zipfile.ZipFile(zip_path) as archive:
        members, skipped = _members(archive, RAVDESS_NAME)
        for member in members:
            name = PurePosixPath(member.filename).stem
            modality, channel, emotion, intensity, statement, repetition, actor = name.split("-")
            if (modality, channel) != ("03", "01") or int(actor) not in actors:  # audio-only speech of the chosen actors
                skipped += 1
                continue
            pcm, rate = _to_16k(archive.read(member))
            path = f"Actor_{actor}/{name}.flac"
            _write(pcm, out_dir / path)
            info = parse_ravdess_name(name)
            rows.append({
                "path": path, "emotion": info["label"], "emotion_code": int(emotion), "intensity": info["intensity"],
                "statement": int(statement), "repetition": int(repetition), "actor": int(actor), "sex": info["sex"],
                "duration_s": round(len(pcm) / SAMPLING_RATE, 4), "source_sr": rate,
                "sha1_16k": hashlib.sha1(pcm.tobytes()).hexdigest(),
            })  # fmt: skip
    _write_manifest(out_dir, RAVDESS_COLUMNS, rows)
    return len(rows), skipped


def convert_emodb(zip_path: str | Path, out_dir: str | Path) -> tuple[int, int]:
    """EmoDB into `out_dir` (`NN/*.flac` per speaker and `manifest.csv`); returns (clips written, skipped)."""
    out_dir = Path(out_dir)
    rows = []
    with zipfile.ZipFile(zip_path) as archive:
        members, skipped = _members(archive, EMODB_NAME)
        for member in members:
            name = PurePosixPath(member.filename).stem
            info = parse_emodb_name(name)
            if info is None:  # a speaker number the corpus does not have
                skipped += 1
                continue
            pcm, rate = _to_16k(archive.read(member))
            speaker = name[:2]
            path = f"{speaker}/{name}.flac"
            _write(pcm, out_dir / path)
            rows.append({
                "path": path, "corpus": "emodb", "speaker": speaker, "sex": info["sex"], "emotion": info["label"],
                "emotion_code": name[5], "duration_s": round(len(pcm) / SAMPLING_RATE, 4), "source_sr": rate,
                "sha1_16k": hashlib.sha1(pcm.tobytes()).hexdigest(),
            })  # fmt: skip
    _write_manifest(out_dir, EMODB_COLUMNS, rows)
    return len(rows), skipped


def _write_manifest(out_dir: Path, columns: list[str], rows: list[dict]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "manifest.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(sorted(rows, key=lambda row: row["path"]))


def _actors(text: str) -> set[int]:
    """'1-20' or '1,3,5-8' -> the actor numbers."""
    actors = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        actors.update(range(int(low), int(high or low) + 1))
    return actors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.corpora", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ravdess", help="Audio_Speech_Actors_01-24.zip (https://zenodo.org/records/1188976)")
    parser.add_argument("--emodb", help="EmoDB's download.zip (http://emodb.bilderbar.info/download/)")
    parser.add_argument("--out", required=True, help="writes OUT/ravdess16k and OUT/emodb16k")
    parser.add_argument("--ravdess_actors", default="1-20", help="actors to keep (default 1-20; 21-24 stay unseen)")
    args = parser.parse_args(argv)
    if not (args.ravdess or args.emodb):
        parser.error("give --ravdess, --emodb or both")
    for flag, convert, folder in (
        ("ravdess", lambda z, o: convert_ravdess(z, o, _actors(args.ravdess_actors)), "ravdess16k"),
        ("emodb", convert_emodb, "emodb16k"),
    ):
        source = getattr(args, flag)
        if source is None:
            continue
        try:
            written, skipped = convert(source, Path(args.out) / folder)
        except (OSError, zipfile.BadZipFile) as err:
            print(f"--{flag} {source}: {err}", file=sys.stderr)
            return 2
        print(f"{Path(args.out) / folder}: {written} clips ({skipped} files off the layout or not kept)")
        if written == 0:
            print(f"--{flag} {source}: no clip named in the corpus's layout", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
