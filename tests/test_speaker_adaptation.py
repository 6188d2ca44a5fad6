"""Speaker adaptation: the GE2E backbone, speaker profiles in the model, its pipeline and predict.py, and training
with per-speaker profiles, on real clips of held-out speakers."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from conftest import BUNDLED

import predict
from modeling import SERClassifier, load_audio
from modeling.profile import ProfileError, SpeakerProfile
from modeling.voice_encoder import GE2EConfig, GE2EModel

# RAVDESS actor 14 is one of the bundled model's test speakers (see its card): never trained on.
HELD_OUT = "Actor_14"


@pytest.fixture(scope="module")
def classifier():
    return SERClassifier.from_pretrained(BUNDLED, device="cpu")


@pytest.fixture(scope="module")
def actor_clips(data_dir):
    return sorted(str(p) for p in (data_dir / HELD_OUT).glob("*.flac"))


def test_ge2e_backbone_equals_resemblyzer(actor_clips):
    """The re-implemented encoder gives Resemblyzer's own utterance embeddings, from weights converted into ours."""
    resemblyzer = pytest.importorskip("resemblyzer")
    from resemblyzer.audio import normalize_volume

    from training.voice import pretrained_ge2e

    ours = pretrained_ge2e()
    theirs = resemblyzer.VoiceEncoder("cpu", verbose=False)
    for path in actor_clips[:3]:
        wave = load_audio(path)
        expected = theirs.embed_utterance(normalize_volume(wave, -30, increase_only=True))
        got = ours.speaker_embedding(torch.from_numpy(wave)[None])[0].numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_ge2e_padding_does_not_change_a_clip(actor_clips):
    model = GE2EModel(GE2EConfig()).eval()
    a, b = (torch.from_numpy(load_audio(p)) for p in actor_clips[:2])
    batch = torch.nn.utils.rnn.pad_sequence([a, b[: len(a) // 2]], batch_first=True)
    mask = torch.zeros_like(batch, dtype=torch.long)
    mask[0, : len(a)] = 1
    mask[1, : len(a) // 2] = 1
    with torch.no_grad():
        together = model(batch, mask).last_hidden_state
        alone = model(b[: len(a) // 2][None]).last_hidden_state
    frames = model._get_feat_extract_output_lengths(mask.sum(-1))
    torch.testing.assert_close(together[1, : frames[1]], alone[0], rtol=0, atol=1e-5)


def probabilities(classifier, waves, profile=None):
    return np.array([[p.scores[label] for label in classifier.labels] for p in classifier.classify_batch(waves, profile=profile)])


@pytest.mark.slow
def test_a_shifted_voice_is_pulled_back_by_its_profile(classifier, actor_clips):
    """The same speaker's clips, pitch-shifted up two semitones (a higher voice): without a profile the answers
    drift from those of the original clips; with a profile of the shifted voice they move back toward those of the
    original voice with its own profile. (Centring removes the voice's average shift only: the encoder's response
    to pitch is not a shift, so the pull back is partial.)"""
    originals = [load_audio(p) for p in actor_clips[::2]]
    shifted = [librosa.effects.pitch_shift(w, sr=16_000, n_steps=2.0).astype(np.float32) for w in originals]
    own = classifier.build_profile(originals)
    shifted_profile = classifier.build_profile(shifted)
    reference = probabilities(classifier, originals, own)
    unadapted = probabilities(classifier, shifted)
    adapted = probabilities(classifier, shifted, shifted_profile)
    drift_without = np.abs(unadapted - reference).sum(1).mean()
    drift_with = np.abs(adapted - reference).sum(1).mean()
    assert drift_with < drift_without - 0.02, (drift_with, drift_without)
    assert shifted_profile.weight(classifier.model.config) > 0.4
    # Louder is no different: the waveform's level is normalized away before the model hears it.
    louder = probabilities(classifier, [w * np.float32(0.9 / np.abs(w).max()) for w in originals[:5]])
    np.testing.assert_allclose(louder, probabilities(classifier, originals[:5]), atol=0.05)


def test_profile_of_one_clip_is_refused_and_few_clips_do_not_act(classifier, actor_clips):
    with pytest.raises(ProfileError, match="at least 2 clips"):
        classifier.build_profile(actor_clips[:1])
    config = classifier.model.config
    few = classifier.build_profile(actor_clips[::20])  # three clips (three emotions): too little evidence to act
    some = classifier.build_profile(actor_clips[::4])
    many = classifier.build_profile(actor_clips)
    assert few.weight(config) == 0 < some.weight(config) < many.weight(config) < 1
    assert few.num_clips == 3 and many.num_clips == len(actor_clips)
    wave = load_audio(actor_clips[5])
    with_few = classifier.classify(wave, profile=few)
    assert with_few.scores == pytest.approx(classifier.classify(wave).scores, abs=1e-6)
    assert with_few.adaptation_weight == 0 and "too few to act" in with_few.adaptation


def test_profile_round_trips_and_refuses_other_models(classifier, actor_clips, tmp_path):
    profile = classifier.build_profile(actor_clips[::5])  # twelve clips of every emotion
    profile.save(tmp_path / "voice.json")
    loaded = SpeakerProfile.load(tmp_path / "voice.json")
    wave = load_audio(actor_clips[20])
    assert classifier.classify(wave, profile=loaded).scores == pytest.approx(classifier.classify(wave, profile=profile).scores, abs=1e-6)
    assert classifier.classify(wave, profile=profile).adaptation.startswith("adapted to a speaker profile of 12 clips")
    assert classifier.classify(wave).adaptation is None
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ProfileError):
        SpeakerProfile.load(tmp_path / "bad.json")
    other = SpeakerProfile(**{**profile.to_dict(), "mean": profile.mean, "model": "0" * 16})
    with pytest.raises(ProfileError, match="another model"):
        classifier.classify(wave, profile=other)


def test_long_recording_adapts_to_itself_unless_told_not_to(classifier, actor_clips):
    gap = np.zeros(8000, np.float32)
    recording = np.concatenate([x for p in actor_clips[::6] for x in (load_audio(p), gap)])  # ten clips, every emotion
    adapted = classifier.classify(recording)
    assert adapted.adaptation and adapted.adaptation.startswith("self:")
    plain = classifier.classify(recording, self_adapt=False)
    assert plain.adaptation is None
    assert adapted.scores != pytest.approx(plain.scores, abs=1e-4)


def test_a_speaker_who_keeps_one_mood_keeps_it(classifier, actor_clips):
    """All of an unseen actor's angry clips as references (someone angry for a whole call): the profile reads them
    as one mood and does not act, so the answers are those without it, as a long recording of them that adapts to
    itself; the same actor's clips of every emotion still make a profile that acts."""
    angry = [p for p in actor_clips if Path(p).name.split("-")[2] == "05"]  # RAVDESS emotion 05
    assert len(angry) == 8
    profile = classifier.build_profile(angry)
    config = classifier.model.config
    assert config.mood_aware_profiles and profile.one_mood(config) and profile.weight(config) == 0
    assert profile.mood_label == "angry" and "sound like one mood" in profile.describe(config)
    waves = [load_audio(p) for p in angry]
    adapted, plain = classifier.classify_batch(waves, profile=profile), classifier.classify_batch(waves)
    assert [a.scores for a in adapted] == [pytest.approx(p.scores, abs=1e-6) for p in plain]
    assert all("sound like one mood" in a.adaptation and a.adaptation_weight == 0 for a in adapted)
    gap = np.zeros(8000, np.float32)
    recording = np.concatenate([x for w in waves for x in (w, gap)])
    itself = classifier.classify(recording)
    assert itself.adaptation.startswith("self: 8 pieces") and "sound like one mood" in itself.adaptation
    assert itself.scores == pytest.approx(classifier.classify(recording, self_adapt=False).scores, abs=1e-6)
    # Varied references of the same voice act, relative to the voice rather than to its moods.
    features, seconds = classifier.reference_features(actor_clips)
    varied = SpeakerProfile.from_features(classifier.model, features, seconds)
    assert not varied.one_mood(config) and varied.weight(config) > 0.3
    assert np.linalg.norm(varied.mean - features.mean(axis=0)) > 0


@pytest.mark.slow
def test_profile_through_the_hub_path(actor_clips, tmp_path):
    """In a fresh interpreter that cannot import this project: the pipeline of the saved folder (trust_remote_code)
    takes reference clips or a saved profile, and gives SERClassifier's answer."""
    from training.hub import hub_files

    hub = tmp_path / "hub-copy"
    hub.mkdir()
    for name in hub_files(BUNDLED):
        shutil.copy(BUNDLED / name, hub / name)
    classifier = SERClassifier.from_pretrained(BUNDLED, device="cpu")
    profile = classifier.build_profile(actor_clips[::6])
    profile.save(tmp_path / "voice.json")
    expected = classifier.classify_file(actor_clips[30], profile=profile).scores
    script = f"""
import json, sys
sys.modules["modeling"] = None; sys.modules["serving"] = None; sys.modules["training"] = None
from transformers import pipeline
pipe = pipeline("audio-classification", model={str(hub)!r}, trust_remote_code=True)
by_file = pipe({actor_clips[30]!r}, speaker_profile={str(tmp_path / "voice.json")!r}, details=True)
by_refs = pipe({actor_clips[30]!r}, reference_audio={actor_clips[::6]!r}, details=True)
profile = pipe.build_profile({actor_clips[::6]!r})
print(json.dumps([by_file, by_refs, profile.num_clips]))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    by_file, by_refs, clips = json.loads(out.stdout.strip().splitlines()[-1])
    for result in (by_file, by_refs):
        assert {s["label"]: s["score"] for s in result["scores"]} == pytest.approx(expected, abs=1e-5)
        assert result["adaptation"].startswith("adapted to a speaker profile of 10 clips")
    assert clips == 10


@pytest.mark.slow
def test_predict_adapts_each_speaker_folder(tmp_path, data_dir):
    folders = {}
    for actor in ("Actor_14", "Actor_20"):
        folder = tmp_path / "speakers" / actor
        folder.mkdir(parents=True)
        for path in sorted((data_dir / actor).glob("*.flac"))[::5]:
            shutil.copy(path, folder / path.name)
        folders[actor] = folder
    lonely = tmp_path / "speakers" / "one-clip"
    lonely.mkdir()
    shutil.copy(sorted((data_dir / "Actor_01").glob("*.flac"))[0], lonely / "only.flac")
    out = tmp_path / "results.csv"
    assert predict.main([str(tmp_path / "speakers"), "--speaker_from", "folder", "--out", str(out), "--workers", "1"]) == 0
    rows = list(csv.DictReader(open(out, newline="")))
    assert len(rows) == 25 and not any(r["error"] for r in rows)
    for actor, folder in folders.items():
        mine = [r for r in rows if r["path"].startswith(str(folder))]
        assert len(mine) == 12
        assert all(r["adapted"] == "true" and r["profile_clips"] == "12" and r["speaker"] == str(folder.resolve()) for r in mine)
    alone = [r for r in rows if r["path"].endswith("only.flac")]
    assert alone[0]["adapted"] == "false" and alone[0]["profile_clips"] == "0"
    # Adapted answers differ from the same files classified alone.
    plain = tmp_path / "plain.csv"
    assert predict.main([str(folders["Actor_14"]), "--out", str(plain), "--workers", "1"]) == 0
    plain_rows = {r["path"]: r for r in csv.DictReader(open(plain, newline=""))}
    assert all(r["adapted"] == "false" for r in plain_rows.values())
    assert any(abs(float(plain_rows[r["path"]]["score"]) - float(r["score"])) > 1e-3 for r in rows if r["path"] in plain_rows)
    # A CSV of path,speaker groups the same way.
    table = tmp_path / "speakers.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "speaker"])
        for path in sorted(folders["Actor_20"].glob("*.flac")):
            writer.writerow([str(path.relative_to(tmp_path)), "twenty"])
    by_csv = tmp_path / "by_csv.csv"
    assert predict.main([str(folders["Actor_20"]), "--speaker_from", str(table), "--out", str(by_csv), "--workers", "1"]) == 0
    csv_rows = list(csv.DictReader(open(by_csv, newline="")))
    assert {r["speaker"] for r in csv_rows} == {"twenty"} and all(r["adapted"] == "true" for r in csv_rows)


@pytest.mark.slow
def test_evaluate_reports_adaptation(tmp_path, data_dir, preprocessing_cache):
    import evaluate

    # Two unseen actors, three clips of each of their emotions: enough for every reference condition, one mood included.
    for actor in ("Actor_14", "Actor_15"):
        shutil.copytree(data_dir / actor, tmp_path / "two-actors" / actor)
    results = evaluate.main([
        "--model_name_or_path", str(BUNDLED), "--data_dir", str(tmp_path / "two-actors"), "--max_clips", "48",
        "--speaker_adaptation", "--output_dir", str(tmp_path / "eval"), "--preprocessing_cache_dir", preprocessing_cache,
    ])  # fmt: skip
    adaptation = results["adaptation"]
    for condition in ("none", "all", "random_16", "few_skewed", "few_skewed_none", "one_mood", "one_mood_none"):
        assert 0 <= adaptation[condition]["accuracy"] <= 1 and 0 <= adaptation[condition]["uar"] <= 1
    assert adaptation["none"]["accuracy"] == pytest.approx(results["accuracy"], abs=1e-6)
    assert adaptation["one_mood"]["clips"] == adaptation["one_mood_none"]["clips"] > 0
    assert "Speaker adaptation" in (tmp_path / "eval" / "eval_results.md").read_text()


def classifier_offsets_set(model_dir) -> bool:
    """A trained model's label offsets (mood-aware profiles) were set from its training clips."""
    model = SERClassifier.from_pretrained(model_dir, device="cpu").model
    return bool(model.label_offsets.abs().sum() > 0)


@pytest.mark.slow
def test_training_with_speaker_profiles_and_class_weights(tmp_path, data_dir, preprocessing_cache):
    """A real Trainer run of the recipe's mode on a small subset: the saved model holds its population statistics
    and reports every reference condition; balanced class weights are recorded."""
    import train

    out = tmp_path / "run"
    train.main([
        "--model_name_or_path", "ge2e", "--pooling", "mean_std", "--freeze_backbone", "true",
        "--speaker_adaptation", "true", "--class_weights", "balanced", "--data_dir", str(data_dir), "--max_clips", "160",
        "--num_test_actors", "4", "--num_val_actors", "2", "--num_train_epochs", "3", "--per_device_train_batch_size", "16",
        "--eval_strategy", "epoch", "--save_strategy", "no", "--report_to", "none", "--output_dir", str(out),
        "--learning_rate", "0.001", "--preprocessing_cache_dir", preprocessing_cache,
    ])  # fmt: skip
    results = json.loads((out / "all_results.json").read_text())
    assert results["model"]["speaker_adaptation"] is True
    assert set(results["adaptation"]) >= {"none", "all", "random_16", "few_skewed", "few_skewed_none"}
    assert results["model"]["mood_aware_profiles"] is True and classifier_offsets_set(out)
    assert results["training"]["class_weights"] is not None
    classifier = SERClassifier.from_pretrained(out, device="cpu")
    assert classifier.adapts_to_speakers
    assert float(classifier.model.population_std.mean()) != pytest.approx(1.0)
