"""Music without a voice: fit the speech/music check of `modeling/speech.py` (`modeling/music_gate.py`) and measure it on music and speech
it never saw.

    python benchmarks/bench_music.py          # held-out figures of the committed modeling/music_gate.py
    python benchmarks/bench_music.py --fit    # refit it first (about 10 min on 2 cores), then the same figures

Music: instrumental game soundtracks from Debian's archive (GPL-2+ and free licences; fetched with
`apt-get download` into .cache/music, never committed). Four packages (composers) fit the check, four others are
held out. Excerpts of 3.5 s and 10 s at four places in each track.
Speech: ../shared/data. RAVDESS actors 01-10 and EmoDB speakers 03, 08, 09, 10, 11 fit the check; the other
speakers are held out. Each clip plain, and a quarter of them each with white noise at 5 dB SNR, a music bed at
5 dB SNR (speech over music must pass), a 300-3400 Hz telephone band, or three other clips after pauses; and every
other clip also in a reverberant room (one of 12 simulated rooms with RT60 0.3-1.5 s, `training/conditions.py`,
seeded apart from the robustness benchmark's and training's rooms): a long reverberant tail makes speech sustained
and smeared, as music is, and the check refused such speech before it heard any.
Tones: steady sine tones and sweeps (80-1200 Hz, 2-6 s, three levels), every other one fitting the check as not a
voice, the rest held out.

The check sees what `detect_speech` would give it: the pieces of Silero's segments (or of the whole audio when
speech is present but not delimited). Audio Silero already refuses never reaches it. A segment is music when all
its pieces score above the threshold: 0.9995, or the highest score at which a fit speech segment would be
dropped, whichever is higher (a margin for speech it has not heard). A first stage over Silero's features alone
keeps, without openSMILE, a piece that scores below every piece of the fit music and tones the full check refuses.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import subprocess
import zipfile
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import scipy.signal
from common import DATA_DIR, REPO, save

FIT_MUSIC = ("hyperrogue-music", "singularity-music", "wesnoth-1.16-music", "drascula-music")
HELD_OUT_MUSIC = ("asc-music", "warzone2100-music", "ufoai-music", "nexuiz-music")
FIT_RAVDESS = {f"Actor_{i:02d}" for i in range(1, 11)}
FIT_EMODB = {"03", "08", "09", "10", "11"}
FEATURES = [
    "p_max", "p_mean", "p_q90", "p_frac5", "p_frac15",
    "VoicedSegmentsPerSec", "MeanVoicedSegmentLengthSec", "StddevVoicedSegmentLengthSec",
    "MeanUnvoicedSegmentLength", "StddevUnvoicedSegmentLength", "loudnessPeaksPerSec",
    "F0semitoneFrom27.5Hz_sma3nz_stddevNorm", "F0semitoneFrom27.5Hz_sma3nz_meanRisingSlope",
    "F0semitoneFrom27.5Hz_sma3nz_meanFallingSlope", "HNRdBACF_sma3nz_amean", "jitterLocal_sma3nz_amean",
    "shimmerLocaldB_sma3nz_amean", "spectralFlux_sma3_stddevNorm", "loudness_sma3_stddevNorm",
]  # fmt: skip
# The lowest threshold: the previous check's operating point (0.9995). A first refit with 0.998 dropped one held-out
# speech-over-music segment; keeping a person's speech matters more than refusing a little more music.
MIN_THRESHOLD = 0.9995
CACHE = REPO / ".cache" / "music"
SR = 16000


def fetch(package: str, cache: Path = CACHE) -> Path:
    """The package's files, downloaded and unpacked once (game archives, .pk3, unzipped too)."""
    target = cache / package
    if not target.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["apt-get", "download", package], cwd=cache).returncode:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "download", package], cwd=cache, check=True)
        deb = next(cache.glob(f"{package}_*.deb"))
        shutil.rmtree(target, ignore_errors=True)  # what an interrupted run left
        (target / "tmp").mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(target / "tmp")], check=True)
        for pk3 in (target / "tmp").rglob("*.pk3"):
            zipfile.ZipFile(pk3).extractall(target / "tmp" / pk3.stem)
        (target / "tmp").rename(target / "files")
        deb.unlink()
    return target


def music_tracks(package: str, cache: Path = CACHE) -> list[Path]:
    files = fetch(package, cache) / "files"
    tracks = {}  # one per (name, size): some packages ship the same track for each language
    for p in sorted(files.rglob("*")):
        if p.suffix.lower() in (".ogg", ".opus", ".mp3") and "sounds" not in p.parts:
            tracks.setdefault((p.name, p.stat().st_size), p)
    return sorted(tracks.values())


def music_excerpts(path: Path):
    from modeling import load_audio

    wave = load_audio(path, max_duration_s=None)
    for where, seconds in ((0.15, 3.5), (0.4, 10), (0.65, 3.5), (0.9, 10)):
        excerpt = wave[int(len(wave) * where) :][: int(seconds * SR)]
        if len(excerpt) >= SR:
            yield f"{path.name}@{where}", excerpt


def _mix(speech: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    other = np.resize(other, len(speech))
    gain = np.sqrt(np.mean(speech**2) / (np.mean(other**2) + 1e-12) / 10 ** (snr_db / 10))
    return (speech + gain * other).astype(np.float32)


# Seeds of the rooms the check is fitted and measured with: none of the robustness benchmark's (3000-10005);
# training's banks draw theirs from `np.random.SeedSequence`.
ROOM_SEED = 70_000
ROOMS = 12


def speech_examples(clips: list[Path], beds: list[np.ndarray]):
    from modeling import load_audio
    from training.conditions import reverberate, room_impulse_response

    rooms = [room_impulse_response(float(rt60), seed=ROOM_SEED + k)[0] for k, rt60 in enumerate(np.linspace(0.3, 1.5, ROOMS))]
    rng = np.random.default_rng(0)
    band = scipy.signal.butter(6, [300, 3400], btype="band", fs=SR, output="sos")
    for i, path in enumerate(clips):
        wave = load_audio(path)
        yield "plain", path, wave
        variant = i % 4
        if variant == 0:
            yield "noise 5 dB", path, _mix(wave, rng.standard_normal(len(wave)).astype(np.float32), 5)
        elif variant == 1:
            yield "music bed 5 dB", path, _mix(wave, beds[i % len(beds)], 5)
        elif variant == 2:
            yield "telephone band", path, scipy.signal.sosfilt(band, wave).astype(np.float32)
        else:
            pause = (0.002 * rng.standard_normal(int(0.7 * SR))).astype(np.float32)
            others = [load_audio(clips[(i + 97 * k) % len(clips)]) for k in (1, 2, 3)]
            yield "after pauses", path, np.concatenate([wave, pause, others[0], pause, others[1], pause, others[2]])
        if i % 2 == 0:
            yield "room RT60 0.3-1.5 s", path, reverberate(wave, rooms[(i // 2) % ROOMS])


def pieces_features(wave: np.ndarray) -> list[list[dict]] | None:
    """Per segment, the features of its pieces, as `detect_speech` would see them (from its one Silero pass); None
    if Silero refuses it."""
    from modeling.speech import detector, gate_pieces

    probs = detector().probabilities(wave)
    segments = detector().voice_activity(wave, probs)
    if not segments:
        return None
    return [[detector().piece_features(wave, probs, a, b) for a, b in gate_pieces(s, len(wave))] for s in segments]


def _work(item):
    """(kind, group, name, segments' piece features), and whether it was computed (None: the caller has it cached)."""
    kind, group, name, wave = item
    if wave is None:
        return (kind, group, name, None), None
    import torch

    torch.set_num_threads(1)
    return (kind, group, name, pieces_features(wave)), True


def examples(cache: Path):
    bed_tracks = [t for p in ("hyperrogue-music", "wesnoth-1.16-music") for t in music_tracks(p, cache)][::6]
    beds = [wave for t in bed_tracks for _, wave in list(music_excerpts(t))[1:2]]
    for package in FIT_MUSIC + HELD_OUT_MUSIC:
        for track in music_tracks(package, cache):
            try:
                for name, wave in music_excerpts(track):
                    yield "music", package, name, wave
            except Exception as err:  # a track the decoder cannot read (or a silent one) is no example
                print(f"skipped {track.name}: {err}")
    clips = sorted(DATA_DIR.parent.glob("*/**/*.flac"))
    for variant, path, wave in speech_examples(clips, beds):
        speaker = path.parent.name if path.parent.name.startswith("Actor_") else path.name[:2]
        yield f"speech: {variant}", speaker, str(path.relative_to(DATA_DIR.parent)), wave
    yield from tone_examples()


def tone_examples():
    """Steady tones and sweeps, 80-1200 Hz, 2-6 s, at three levels: no voice, but a steady pitch (a trial that judged
    Silero's presence at one level let 200 Hz tones through as speech). Every other frequency (32, 9% apart) and
    sweep fits the check, the rest are held out."""
    sweeps = ((100, 600), (200, 2000), (80, 300), (300, 1200), (150, 900), (120, 2400), (250, 500), (90, 1500))
    kinds = [
        (i, f"{freq:.0f} Hz", lambda t, seconds, freq=freq: 2 * np.pi * freq * t)
        for i, freq in enumerate(np.geomspace(80, 1200, 32))
    ] + [
        (i, f"sweep {a}-{b} Hz", lambda t, seconds, a=a, b=b: 2 * np.pi * (a * t + (b - a) * t**2 / (2 * seconds)))
        for i, (a, b) in enumerate(sweeps)
    ]
    for i, name, phase_of in kinds:
        for seconds in (2.0, 3.5, 6.0):
            t = np.arange(int(seconds * SR)) / SR
            phase = phase_of(t, seconds)
            for level in (0.005, 0.05, 0.5):
                yield "tone", "fit" if i % 2 == 0 else "held out", f"{name} {seconds:g} s x{level:g}", (level * np.sin(phase)).astype(np.float32)


NOT_VOICE = ("music", "tone")  # what the check refuses; everything else is speech


def is_fit(kind: str, group: str) -> bool:
    if kind == "tone":
        return group == "fit"
    return group in FIT_MUSIC if kind == "music" else group in FIT_RAVDESS | FIT_EMODB


def is_music(segment: list[dict], gate: dict) -> bool:
    """`SpeechDetector.is_music` on precomputed piece features: the Silero-only stage, then the full check."""
    from modeling.speech import music_probability

    stage = gate["silero_stage"]
    return all(
        music_probability(p, stage) >= stage["keep_below"] and music_probability(p, gate) > gate["threshold"]
        for p in segment
    )


def _logistic(x: np.ndarray, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(max_iter=5000, class_weight="balanced").fit(scaler.transform(x), y)
    params = {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "coef": clf.coef_[0].tolist()}
    return params | {"intercept": float(clf.intercept_[0])}, clf.predict_proba(scaler.transform(x))[:, 1]


def fit_gate(rows) -> None:
    """Fits the check on the fit packages and speakers and writes modeling/music_gate.py."""
    import pprint

    from modeling import speech

    fit = [(kind, seg) for kind, group, _, segs in rows if segs and is_fit(kind, group) for seg in segs]
    y = np.array([kind in NOT_VOICE for kind, seg in fit for _ in seg])
    full, p = _logistic(np.nan_to_num(np.array([[piece[f] for f in FEATURES] for _, seg in fit for piece in seg])), y)
    silero_features = FEATURES[:5]
    stage, p1 = _logistic(np.array([[piece[f] for f in silero_features] for _, seg in fit for piece in seg]), y)
    # A segment is dropped when all its pieces score above the threshold: no fit speech segment may be.
    p, p1 = iter(p), iter(p1)
    segments = [(kind, [(next(p), next(p1)) for _ in seg]) for kind, seg in fit]
    threshold = max(MIN_THRESHOLD, max(min(s for s, _ in seg) for kind, seg in segments if kind not in NOT_VOICE))
    # The first stage keeps a piece without openSMILE when Silero alone scores it below every piece of every fit
    # music or tone segment that the full check refuses: none of those is kept by it.
    refused = [seg for kind, seg in segments if kind in NOT_VOICE and all(s > threshold for s, _ in seg)]
    keep_below = min(s1 for seg in refused for _, s1 in seg)
    gate = {
        "about": "speech/music check: logistic regressions on standardized features of 2-4 s pieces",
        "music": "fitted on instrumental game music of Debian packages " + ", ".join(FIT_MUSIC)
        + ", and synthetic steady tones and sweeps",
        "speech": "fitted on RAVDESS actors 01-10 and EmoDB speakers 03 08 09 10 11: plain, noise, music bed, "
        "telephone, pauses, reverberant rooms",
        "pieces": {"music and tones": int(y.sum()), "speech": int((~y).sum())},
        "features": FEATURES,
        **full,
        "threshold": float(threshold),
        "silero_stage": {"features": silero_features, **stage, "keep_below": float(keep_below)},
    }
    path = Path(speech.__file__).with_name("music_gate.py")
    path.write_text(
        '"""The fitted speech/music check of `speech.py`: weights, thresholds and what they were fitted on."""\n\n'
        f"GATE = {pprint.pformat(gate, width=116, sort_dicts=False)}\n"
    )
    speech.GATE.clear()
    speech.GATE.update(gate)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fit", action="store_true", help="refit modeling/music_gate.py first")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument(
        "--reuse", action="store_true",
        help="the features of the last run (same code and data); only examples it lacks or Silero refused are computed",
    )
    args = parser.parse_args()

    features = args.cache / "features.pkl"  # the slow part, kept for --reuse
    cached = {}
    if args.reuse and features.exists():
        # Examples Silero refused are computed again: that costs one Silero pass, and the presence threshold decides them.
        cached = {(kind, group, name): segs for kind, group, name, segs in pickle.loads(features.read_bytes()) if segs is not None}

    def todo():
        for kind, group, name, wave in examples(args.cache):
            yield kind, group, name, None if (kind, group, name) in cached else wave

    with get_context("fork").Pool(args.workers) as pool:
        rows = [(k, g, n, cached[(k, g, n)] if w is None else segs) for (k, g, n, segs), w in pool.imap(_work, todo(), chunksize=8)]
    features.write_bytes(pickle.dumps(rows))

    from modeling import speech

    if args.fit:
        fit_gate(rows)

    gate = speech.GATE
    threshold = gate["threshold"]
    stage = gate["silero_stage"]
    outcome = {}  # (split, kind, group) -> refused flags per recording
    dropped = {}  # per split: speech segments judged music, speech segments
    silero = {}  # per split: music excerpts Silero refuses before the check
    silero_tones, tones_kept = {}, []  # the same for tones; the held-out tones neither refuses
    for kind, group, name, segs in rows:
        split = "fit" if is_fit(kind, group) else "held_out"
        music = [is_music(seg, gate) for seg in segs or []]
        refused = segs is None or all(music)
        outcome.setdefault((split, kind, group if kind == "music" else ""), []).append(refused)
        if kind == "tone":
            silero_tones.setdefault(split, []).append(segs is None)
            if split == "held_out" and not refused:
                tones_kept.append(name)
            continue
        if kind == "music":
            silero.setdefault(split, []).append(segs is None)
        else:
            d = dropped.setdefault(split, [0, 0, 0])
            d[0] += sum(music)
            d[1] += len(music)
            # Kept by the Silero-only stage on the first piece: openSMILE never runs for this segment.
            d[2] += sum(speech.music_probability(seg[0], stage) < stage["keep_below"] for seg in segs or [])

    def table(split):
        return {
            f"{kind} {group}".strip(): f"{sum(v)}/{len(v)}" for (s, kind, group), v in sorted(outcome.items()) if s == split
        }

    def music_share(split):
        flags = [r for (s, kind, _), v in outcome.items() if s == split and kind == "music" for r in v]
        return round(float(np.mean(flags)), 3)

    save(
        "music",
        {
            "threshold": float(threshold),
            "held_out_music_refused": music_share("held_out"),
            "held_out_music_refused_by_silero_alone": round(float(np.mean(silero["held_out"])), 3),
            "held_out_tones_refused": "{}/{}".format(*(lambda v: (sum(v), len(v)))(outcome[("held_out", "tone", "")])),
            "held_out_tones_refused_by_silero_alone": "{}/{}".format(sum(silero_tones["held_out"]), len(silero_tones["held_out"])),
            "held_out_tones_kept": tones_kept,
            "held_out_speech_segments_dropped_as_music": "{}/{}".format(*dropped["held_out"][:2]),
            "fit_speech_segments_dropped_as_music": "{}/{}".format(*dropped["fit"][:2]),
            "held_out_speech_segments_kept_by_silero_stage_alone": "{2}/{1}".format(*dropped["held_out"]),
            "held_out_refused": table("held_out"),
            "fit_refused": table("fit"),
        },
    )


if __name__ == "__main__":
    main()
