import copy

import numpy as np
import pytest
import soundfile as sf
from conftest import TEST_LABELS
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, pipeline

from modeling import AudioError, load_audio, predict_long, predict_proba
from modeling.audio import resample


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    clf = pipeline("audio-classification", model=str(tiny_model_dir), top_k=None, trust_remote_code=True)
    # The pipeline the saved folder names in its config, run from the folder's own copy of the code.
    assert type(clf).__name__ == "SERAudioClassificationPipeline"
    assert type(clf).__module__.startswith("transformers_modules.")
    return clf


@pytest.fixture(scope="module")
def model_and_fe(tiny_model_dir):
    return AutoModelForAudioClassification.from_pretrained(tiny_model_dir).eval(), AutoFeatureExtractor.from_pretrained(
        tiny_model_dir
    )


def as_dict(result):
    assert sorted(r["label"] for r in result) == sorted(TEST_LABELS)
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-5)
    return {r["label"]: r["score"] for r in result}


def test_pipeline_input_kinds_agree(classifier, clip_path, tmp_path):
    wave = load_audio(clip_path)
    from_path = as_dict(classifier(str(clip_path)))
    from_array = as_dict(classifier(wave))
    from_bytes = as_dict(classifier(clip_path.read_bytes()))
    wave44 = resample(wave, 16000, 44100)
    from_dict = as_dict(classifier({"raw": wave44, "sampling_rate": 44100}))
    from_datasets_dict = as_dict(classifier({"array": wave44, "sampling_rate": 44100, "path": None}))
    sf.write(tmp_path / "stereo.wav", np.stack([wave44, wave44], axis=1), 44100, subtype="PCM_16")
    from_stereo = as_dict(classifier(str(tmp_path / "stereo.wav")))
    for other in (from_array, from_bytes):
        assert other == pytest.approx(from_path, abs=1e-6)
    # Resampled twice (16k -> 44.1k -> 16k) and requantized: same prediction, close scores.
    for other in (from_dict, from_datasets_dict, from_stereo):
        assert other == pytest.approx(from_path, abs=2e-3)


def test_pipeline_top_k_and_order(classifier, clip_path):
    assert len(classifier(str(clip_path), top_k=3)) == 3
    scores = [r["score"] for r in classifier(str(clip_path))]
    assert scores == sorted(scores, reverse=True)


def test_pipeline_matches_model_softmax(classifier, model_and_fe, clip_path):
    model, fe = model_and_fe
    wave = load_audio(clip_path)
    probs = predict_proba(model, fe, [wave])[0]
    scores = as_dict(classifier(wave))
    assert [scores[e] for e in TEST_LABELS] == pytest.approx(probs.tolist(), abs=1e-6)


def test_pipeline_bad_input(classifier, tmp_path):
    # The folder's own copy of the code raises its own AudioError (a ValueError), as it does for a Hub user.
    with pytest.raises(ValueError, match="silent") as raised:
        classifier(np.zeros(16000, np.float32))
    assert type(raised.value).__name__ == "AudioError"
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(ValueError, match="notes.wav: could not be decoded"):
        classifier(str(tmp_path / "notes.wav"))


def test_predict_long_fixed_windows_without_speech_detection(model_and_fe, manifest, data_dir):
    """The policy of models saved without speech detection: fixed windows (the speech timeline: test_speech.py)."""
    model, fe = model_and_fe
    fe = copy.copy(fe)
    fe.speech_detection = False
    clips = [load_audio(data_dir / row["path"]) for row in manifest[:40]]
    silence = np.zeros(16000 * 10, np.float32)
    wave = np.concatenate(clips[:20] + [silence] + clips[20:])
    duration = len(wave) / 16000
    assert duration > 120
    result = predict_long(model, fe, wave, window_s=4.0, hop_s=2.0, batch_size=8)
    assert result.duration_s == pytest.approx(duration)
    starts = [w.start_s for w in result.windows]
    assert starts[0] == 0 and result.windows[-1].end_s == pytest.approx(duration)
    assert all(b - a == pytest.approx(2.0) for a, b in zip(starts[:-2], starts[1:-1]))
    assert all(w.end_s - w.start_s == pytest.approx(4.0) for w in result.windows)
    silent = [w for w in result.windows if w.scores is None]
    assert 2 <= len(silent) <= 4  # the windows that fall wholly inside the 10 s gap
    scored = [w.scores for w in result.windows if w.scores is not None]
    assert all(sum(s.values()) == pytest.approx(1.0, abs=1e-5) for s in scored)
    mean = {e: np.mean([s[e] for s in scored]) for e in TEST_LABELS}
    assert result.scores == pytest.approx(mean)
    assert result.label == max(mean, key=mean.get)
    # Each window is exactly what a single clip of that span would give.
    w = result.windows[5]
    alone = predict_proba(model, fe, [wave[int(w.start_s * 16000) : int(w.end_s * 16000)]])[0]
    assert [w.scores[e] for e in TEST_LABELS] == pytest.approx(alone.tolist(), abs=1e-5)


def test_predict_long_short_clip_is_one_window(model_and_fe, classifier, clip_path):
    model, fe = model_and_fe
    result = predict_long(model, fe, clip_path, window_s=8.0, hop_s=4.0)
    assert len(result.windows) == 1
    assert result.scores == pytest.approx(as_dict(classifier(str(clip_path))), abs=1e-6)
    with pytest.raises(ValueError, match="hop_s"):
        predict_long(model, fe, clip_path, window_s=2.0, hop_s=3.0)
    with pytest.raises(AudioError, match="silent"):
        predict_long(model, fe, np.zeros(16000 * 30, np.float32))


def test_pipeline_candidate_labels_renormalize(classifier, clip_path):
    full = as_dict(classifier(str(clip_path)))
    subset = ["angry", "sad", "neutral"]
    restricted = {r["label"]: r["score"] for r in classifier(str(clip_path), candidate_labels=subset, top_k=None)}
    assert sorted(restricted) == sorted(subset)
    total = sum(full[label] for label in subset)
    assert restricted == pytest.approx({label: full[label] / total for label in subset}, abs=1e-6)
    with pytest.raises(ValueError, match="not labels of this model"):
        classifier(str(clip_path), candidate_labels=["angry", "bored"])
    # Or set once, when the pipeline is made.
    two = pipeline("audio-classification", model=classifier.model.name_or_path, trust_remote_code=True, candidate_labels=["sad", "angry"])
    assert sorted(r["label"] for r in two(str(clip_path))) == ["angry", "sad"]


def test_import_modeling_leaves_the_stock_pipeline_alone():
    """The policy travels in the model's config (`custom_pipelines`), not in a replacement of transformers' task."""
    import subprocess
    import sys

    from conftest import REPO

    probe = (
        "from transformers.pipelines import PIPELINE_REGISTRY\n"
        "import modeling\n"
        "print(PIPELINE_REGISTRY.supported_tasks['audio-classification']['impl'].rsplit('.', 1)[-1])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["AudioClassificationPipeline"]
