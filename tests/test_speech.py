"""Speech detection: where the segments fall, the timeline of a long recording, and `predict.py --timeline`.
(Inputs without speech are refused by every entry point: the bad-input matrix, `bad_inputs.py`.)"""

import json

import librosa
import numpy as np
import torch
import pytest
import soundfile as sf
from conftest import BUNDLED, REPO
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

import predict
from modeling import load_audio, predict_long, predict_proba
from modeling.speech import (
    PRESENCE_THRESHOLD,
    SEGMENT_THRESHOLD,
    MusicWithoutVoiceError,
    NoSpeechError,
    detect_speech,
    detector,
    speech_probabilities,
    voice_activity,
)

# Instrumental game music (Debian's asc-music, GPL-2+), fetched by `bash install.sh --test`, not committed. It is
# one of the packages held out when the speech/music check was fitted (benchmarks/bench_music.py).
MUSIC = REPO / ".cache" / "music" / "asc-music" / "files"

SR = 16000


@pytest.fixture(scope="module")
def bundled():
    return AutoModelForAudioClassification.from_pretrained(BUNDLED).eval(), AutoFeatureExtractor.from_pretrained(BUNDLED)


@pytest.fixture(scope="module")
def recording(data_dir):
    """Sixteen clips of actors 14 and 15 (unseen by the bundled model) joined by pauses of 0.5 to 1.5 s of low noise
    (-50 dBFS): about a minute of audio. Each clip's speech runs from its first to its last sound within 35 dB of
    its peak: the boundaries the detector should find."""
    rng = np.random.default_rng(0)
    paths = sorted((data_dir / "Actor_14").glob("*.flac"))[::7][:8] + sorted((data_dir / "Actor_15").glob("*.flac"))[::7][:8]
    parts, truth, position = [], [], 0
    for path in paths:
        clip = load_audio(path)
        pause = (0.003 * rng.standard_normal(int(rng.uniform(0.5, 1.5) * SR))).astype(np.float32)
        parts += [pause, clip]
        position += len(pause)
        intervals = librosa.effects.split(clip, top_db=35)
        truth.append(
            {
                "start_s": (position + intervals[0][0]) / SR,
                "end_s": (position + intervals[-1][1]) / SR,
                "clip": (position / SR, (position + len(clip)) / SR),
                "wave": clip,
            }
        )
        position += len(clip)
    parts.append(pause)
    return np.concatenate(parts), truth


def test_segments_fall_on_the_speech_boundaries(recording):
    wave, truth = recording
    segments = detect_speech(wave)
    close = 0
    for clip in truth:
        inside = [s for s in segments if s.end_s > clip["start_s"] and s.start_s < clip["end_s"]]
        assert inside, f"no segment for the clip at {clip['start_s']:.1f} s"
        close += abs(inside[0].start_s - clip["start_s"]) <= 0.3 and abs(inside[-1].end_s - clip["end_s"]) <= 0.3
    # Silero ends a segment on the voice's decay, which the energy cut-off above leaves out: ends run late by
    # 0.1-0.3 s, and a breath or click before a clip can move a start.
    assert close >= 0.6 * len(truth), f"{close} of {len(truth)} clips with both boundaries within 0.3 s"
    # Nothing is found in the pauses.
    assert all(any(s.end_s > c["start_s"] - 0.3 and s.start_s < c["end_s"] + 0.3 for c in truth) for s in segments)


def test_timeline_by_speech_matches_each_clip_alone(recording, bundled):
    model, fe = bundled
    wave, truth = recording
    result = predict_long(model, fe, wave)
    pieces = [w for w in result.windows if w.scores]
    assert len(pieces) >= len(truth)
    # Every piece is a speech segment with a little context, classified exactly as a clip of that span would be.
    for w in pieces[:3]:
        alone = predict_proba(model, fe, [wave[int(w.start_s * SR) : int(w.end_s * SR)]])[0]
        assert list(w.scores.values()) == pytest.approx(alone.tolist(), abs=1e-5)
    # The aggregate weighs the pieces by their duration.
    weights = [w.end_s - w.start_s for w in pieces]
    expected = np.average([list(w.scores.values()) for w in pieces], axis=0, weights=weights)
    assert list(result.scores.values()) == pytest.approx(expected.tolist())
    # Each clip's piece mostly agrees with the clip (the whole file) classified alone. Not always: a piece is the
    # clip's speech with 0.5 s of context, not the clip's own silent margins, and the bundled model's statistics
    # pooling counts those frames (9 of these 16 clips keep their top label; 14 keep it among the piece's top two).
    same = top_two = 0
    for clip in truth:
        start, end = clip["clip"]
        overlapping = [w for w in pieces if w.end_s > start and w.start_s < end]
        longest = max(overlapping, key=lambda w: min(w.end_s, end) - max(w.start_s, start))
        alone = predict_long(model, fe, clip["wave"]).label
        same += longest.label == alone
        top_two += alone in sorted(longest.scores, key=longest.scores.get)[-2:]
    assert same >= 0.5 * len(truth) and top_two >= 0.75 * len(truth), f"{same} and {top_two} of {len(truth)} clips"


def test_no_speech_anywhere_is_refused(bundled):
    model, fe = bundled
    noise = (0.05 * np.random.default_rng(3).standard_normal(SR * 12)).astype(np.float32)  # longer than a window
    with pytest.raises(NoSpeechError, match="audio: no speech found"):
        predict_long(model, fe, noise)


def _weak_non_speech():
    t = np.arange(4 * SR) / SR
    return {
        "quiet white noise": 0.001 * np.random.default_rng(0).standard_normal(len(t)),
        "sweep": 0.5 * np.sin(2 * np.pi * (100 * t + 500 * t**2)),
        "150 Hz tone": 0.5 * np.sin(2 * np.pi * 150 * t),
    }


@pytest.mark.parametrize("name", list(_weak_non_speech()))
def test_weak_non_speech_present_to_silero_is_refused_by_the_music_check(name):
    """Speech counts as present from a Silero frame of 0.06 on (reverberant shouting peaks that low); these signals
    reach that level too, and the music check refuses them."""
    wave = _weak_non_speech()[name].astype(np.float32)
    peak = speech_probabilities(wave).max()
    assert PRESENCE_THRESHOLD <= peak < SEGMENT_THRESHOLD, f"{peak}: present to Silero, not delimited as a segment"
    with pytest.raises(MusicWithoutVoiceError):
        detect_speech(wave, name=name)


@pytest.fixture(scope="module")
def instrumental():
    """Ten-second windows every 10 s of each track (105 in all)."""
    tracks = sorted(MUSIC.rglob("*.mp3"))
    assert len(tracks) == 3, f"instrumental music for this test comes with `bash install.sh --test` (in {MUSIC})"
    windows = []
    for track in tracks:
        wave = load_audio(track, max_duration_s=None)
        windows += [(f"{track.name}@{s // SR}s", wave[s : s + 10 * SR]) for s in range(0, len(wave) - 10 * SR, 10 * SR)]
    return windows


@pytest.mark.slow
def test_music_without_voice_is_refused(instrumental, bundled):
    model, fe = bundled
    passed_silero, refused = [], []
    for name, wave in instrumental[::3]:  # every third window (35), each 30 s from the next: a sample of each track
        if voice_activity(wave):
            passed_silero.append(name)
        try:
            predict_long(model, fe, wave, name=name)
        except MusicWithoutVoiceError as err:
            assert str(err).startswith(f"{name}: no speech found (it sounds like music, a tone or noise without a voice)")
            refused.append(name)
        except NoSpeechError:
            pass
    # Of these 35 windows Silero alone lets 31 through (a segment, or a frame above its presence threshold); the
    # music check refuses 16 of those (all held-out music; the whole set: benchmarks/bench_music.py).
    assert set(refused) <= set(passed_silero) and len(refused) >= len(passed_silero) / 3, (passed_silero, refused)


def test_speech_around_and_over_music_is_kept(instrumental, data_dir):
    clips = [load_audio(p) for p in sorted((data_dir / "Actor_15").glob("*.flac"))[:2]]
    # Music the check refuses, between two clips: the clips' segments stay, none is found inside the music.
    name, music = next((n, w) for n, w in instrumental if voice_activity(w) and _refused_as_music(w))
    pause = np.zeros(SR, np.float32)
    wave = np.concatenate([clips[0], pause, music, pause, clips[1]])
    start, end = (len(clips[0]) + SR) / SR, (len(clips[0]) + SR + len(music)) / SR
    kept = detect_speech(wave)
    assert not any(s.start_s < end - 0.5 and s.end_s > start + 0.5 for s in kept), (name, kept)
    assert kept[0].start_s < len(clips[0]) / SR and kept[-1].end_s > end  # both clips stay
    # Speech over background music is speech: clips of an unseen actor with a music bed 5 dB below them.
    bed = instrumental[5][1]
    for path in sorted((data_dir / "Actor_14").glob("*.flac"))[::6]:
        clip = load_audio(path)
        gain = np.sqrt(np.mean(clip**2) / np.mean(bed[: len(clip)] ** 2) / 10**0.5)
        assert detect_speech(clip + gain * bed[: len(clip)], name=path.name)


def _refused_as_music(wave) -> bool:
    try:
        detect_speech(wave)
    except MusicWithoutVoiceError:
        return True
    except NoSpeechError:
        pass
    return False


def test_predict_timeline_jsonl_and_its_resume(recording, bundled, tmp_path, clip_path):
    model, fe = bundled
    wave, _ = recording
    long_path = tmp_path / "meeting.wav"
    sf.write(long_path, wave, SR, subtype="FLOAT")
    out, timeline = tmp_path / "out.csv", tmp_path / "timeline.jsonl"
    args = [str(long_path), str(clip_path), "--out", str(out), "--timeline", str(timeline)]
    assert predict.main(args) == 0
    lines = [json.loads(line) for line in timeline.read_text().splitlines()]
    # predict.py adapts a long recording to its own speech segments by default (the bundled model has adaptation).
    expected = [w for w in predict_long(model, fe, load_audio(long_path), self_adapt=True).windows if w.scores]
    long_lines = [x for x in lines if x["path"] == str(long_path)]
    assert [(x["start_s"], x["end_s"], x["label"]) for x in long_lines] == [
        (round(w.start_s, 3), round(w.end_s, 3), w.label) for w in expected
    ]
    (short,) = [x for x in lines if x["path"] == str(clip_path)]
    assert short["start_s"] == 0 and short["end_s"] == pytest.approx(sf.info(clip_path).duration, abs=1e-3)

    # A killed run can leave the lines of a file without its row, and a line cut short: both are dropped and the
    # file is done again, once.
    rows = out.read_text().splitlines()
    out.write_text("\n".join(rows[:-1]) + "\n")  # the last file's row is lost...
    with open(timeline, "a") as f:
        f.write('{"path": "cut sho')  # ...and a line is cut short
    assert predict.main(args) == 0
    again = [json.loads(line) for line in timeline.read_text().splitlines()]
    assert sorted(map(json.dumps, again)) == sorted(map(json.dumps, lines))


def test_live_session_keeps_bounded_memory_and_says_when_no_speech(bundled, data_dir):
    from modeling import SERClassifier
    from serving.sessions import LiveSessions

    model, fe = bundled
    classifier = SERClassifier(model, fe)
    clip = load_audio(sorted((data_dir / "Actor_14").glob("*.flac"))[0])
    stream = np.concatenate([clip, clip, np.zeros(SR * 5, np.float32), clip])
    # As a browser delivers it: 1 s chunks of 48 kHz stereo int16.
    stereo = librosa.resample(stream, orig_sr=SR, target_sr=48000)
    chunks = [(np.stack([c, c], axis=1) * 32767).astype(np.int16) for c in np.array_split(stereo, len(stereo) // 48000)]
    session = classifier.new_stream(window_s=4.0, history=5)
    updates = [classifier.stream(session, 48000, chunk) for chunk in chunks]
    assert len(session.buffer) <= 4 * SR and len(session.timeline) == 5  # bounded, however long the stream
    assert session.heard_s == pytest.approx(len(stream) / SR, abs=0.01)
    heard = [u for u in updates if u.status.startswith("Speech heard")]
    assert len(heard) >= 6 and all(sum(u.scores.values()) == pytest.approx(1.0, abs=1e-5) for u in heard)
    assert any(u.status.startswith("No speech heard in the last 4 s") for u in updates)  # the 5 s pause
    # Each update classifies the last 4 s exactly as a clip of them would be.
    last = predict_proba(model, fe, [session.buffer])[0]
    assert list(updates[-1].scores.values()) == pytest.approx(last.tolist(), abs=1e-5)
    # A browser's 0.1 s chunks: appended each time, classified once a second of new audio.
    session = classifier.new_stream(window_s=4.0)
    small = np.array_split((clip * 32767).astype(np.int16), len(clip) // 1600)
    statuses = [classifier.stream(session, SR, c).status for c in small]
    assert 2 <= len(session.timeline) <= len(clip) / SR + 1  # at most one update per second of audio
    assert len(set(statuses)) <= len(session.timeline) + 2
    # Listeners: a bounded number of sessions, the least recently used dropped first.
    sessions = LiveSessions(max_sessions=3)
    first = sessions.get("a")
    for key in "bcd":
        sessions.get(key)
    assert len(sessions) == 3 and sessions.get("a") is not first


def test_speech_detection_leaves_torch_threads_alone():
    """silero_vad sets torch to one thread when imported: the emotion model in the same process must keep its own."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    probe = (
        "import numpy as np, torch; before = torch.get_num_threads()\n"
        "from modeling import speech\n"
        "speech.voice_activity(np.zeros(16000, np.float32)); print(before, torch.get_num_threads())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "2"}
    )
    assert done.stdout.split() == ["2", "2"], done.stderr[-2000:]


def test_one_pass_gives_silero_s_own_segments(recording):
    """The segments read from the one pass are those of Silero's `get_speech_timestamps` over the same audio; past
    32 s the audio runs as parallel streams, which find the same speech."""
    from silero_vad import get_speech_timestamps

    from modeling import speech

    wave, truth = recording
    assert len(wave) > (speech.STREAM_S + speech.WARMUP_S) * SR  # split into streams

    def silero(audio):
        stamps = get_speech_timestamps(
            torch.from_numpy(audio), detector().vad, threshold=speech.SEGMENT_THRESHOLD, sampling_rate=SR,
            min_speech_duration_ms=250, min_silence_duration_ms=500, speech_pad_ms=30,
        )  # fmt: skip
        return [(s["start"] / SR, s["end"] / SR) for s in stamps]

    short = wave[: 30 * SR]
    assert [(s.start_s, s.end_s) for s in voice_activity(short)] == silero(short)
    # Whole recording: every clip's speech is found, the boundaries within a few frames of the single stream's.
    streamed, ours = silero(wave), voice_activity(wave)
    assert len(ours) == len(streamed) >= len(truth) - 1
    for (a, b), segment in zip(streamed, ours):
        assert abs(segment.start_s - a) < 0.25 and abs(segment.end_s - b) < 0.25


def test_concurrent_detection_does_not_wait_and_agrees(recording):
    """Each thread has its own detector: two at once give what one alone gives, with no lock between them."""
    from concurrent.futures import ThreadPoolExecutor

    wave, _ = recording
    alone = detect_speech(wave)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: (detect_speech(wave), id(detector())), range(2)))
    assert [r[0] for r in results] == [alone, alone]
    assert results[0][1] != results[1][1]  # two detectors


def test_long_audio_streams_line_up_frame_by_frame(recording):
    """Past 34 s the audio runs as parallel streams: each frame's probability is that of its own stream run alone
    (warmed up on the samples before it), at its own place, up to the last frame of a 3.5-minute recording."""
    from modeling import speech

    wave = np.tile(recording[0], 4)[: int(210.3 * SR)]
    probs = detector().probabilities(wave)
    assert len(probs) == -(-len(wave) // speech.FRAME)
    stream, warmup = speech.stream_samples()
    vad = detector().vad
    for start in range(0, len(wave), stream):
        alone = np.concatenate([np.zeros(max(0, warmup - start), np.float32), wave[max(0, start - warmup) : start + stream]])
        vad.reset_states()
        expected = vad.audio_forward(torch.from_numpy(alone)[None], SR)[0, warmup // speech.FRAME :].numpy()
        vad.reset_states()
        got = probs[start // speech.FRAME : start // speech.FRAME + len(expected)]
        assert got == pytest.approx(expected[: len(got)], abs=1e-4), start / SR
