"""The policy ships with the model: a user who has only the Hub (this project neither installed nor importable) gets
from `pipeline(..., trust_remote_code=True)` exactly what predict.py and the demo give."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import BUNDLED, REPO

import predict
from modeling import load_audio
from serving.resave import saved_files
from training.hub import hub_files

SR = 16000

# Runs in a fresh interpreter where `modeling`, `serving` and `training` cannot be imported (they are installed
# editable here, so they are blocked rather than left off sys.path), from a folder outside the repository.
HUB_USER = r"""
import importlib.abc, json, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("modeling", "serving", "training", "predict", "app"):
            raise ImportError(f"{name}: a Hub user does not have this project")

sys.meta_path.insert(0, Blocked())
from transformers import pipeline

folder, long_path, tone_path, clip_path = sys.argv[1:5]
classifier = pipeline("audio-classification", model=folder, trust_remote_code=True)
out = {
    "class": f"{type(classifier).__module__}.{type(classifier).__name__}",
    "long": classifier(long_path, top_k=None, details=True),
    "clip": classifier(clip_path, top_k=None),
    "clip_candidates": classifier(clip_path, top_k=None, candidate_labels=["angry", "happy", "neutral", "sad"]),
}
try:
    classifier(tone_path)
except Exception as err:
    out["tone"] = [type(err).__name__, str(err)]
out["project_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("modeling", "serving", "training"))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hub_repo(tmp_path_factory):
    """The bundled model as `train.py --push_to_hub` would upload it, in a local folder standing in for the Hub."""
    repo = tmp_path_factory.mktemp("hub") / "user--ser-model"
    for name in hub_files(BUNDLED):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(BUNDLED / name, repo / name)
    return repo


@pytest.fixture(scope="module")
def recordings(tmp_path_factory, data_dir):
    """A 75 s recording of two unseen actors with pauses (longer than any one pass), a 3 s 440 Hz tone, a clip."""
    folder = tmp_path_factory.mktemp("recordings")
    rng = np.random.default_rng(1)
    parts, paths = [], sorted((data_dir / "Actor_14").glob("*.flac"))[::3] + sorted((data_dir / "Actor_15").glob("*.flac"))[::3]
    for path in paths:
        parts += [load_audio(path), (0.003 * rng.standard_normal(int(rng.uniform(0.6, 1.4) * SR))).astype(np.float32)]
        if sum(map(len, parts)) > 75 * SR:
            break
    sf.write(folder / "meeting.wav", np.concatenate(parts), SR, subtype="FLOAT")
    t = np.arange(3 * SR) / SR
    sf.write(folder / "tone.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    shutil.copyfile(paths[0], folder / "clip.flac")
    return folder


@pytest.mark.slow
def test_a_hub_user_gets_what_predict_py_gives(hub_repo, recordings, tmp_path):
    long_path, tone_path, clip_path = (recordings / n for n in ("meeting.wav", "tone.wav", "clip.flac"))
    assert sf.info(long_path).duration > 60  # the pipeline used to refuse anything over 60 s
    done = subprocess.run(
        [sys.executable, "-c", HUB_USER, str(hub_repo), str(long_path), str(tone_path), str(clip_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    hub = json.loads(done.stdout.strip().splitlines()[-1])
    assert hub["class"].startswith("transformers_modules.") and hub["class"].endswith(".SERAudioClassificationPipeline")
    assert hub["project_modules"] == []

    out, timeline = tmp_path / "rows.csv", tmp_path / "timeline.jsonl"
    paths = [str(long_path), str(tone_path), str(clip_path)]
    assert predict.main([*paths, "--model", str(BUNDLED), "--out", str(out), "--timeline", str(timeline)]) == 0
    rows = {r["path"]: r for r in csv.DictReader(open(out, newline=""))}

    long, row = hub["long"], rows[str(long_path)]
    assert {s["label"]: s["score"] for s in long["scores"]} == pytest.approx(
        {s["label"]: float(row[s["label"]]) for s in long["scores"]}, abs=1e-4
    )
    assert (long["label"], str(long["uncertain"]).lower()) == (row["label"], row["uncertain"])
    assert long["duration_s"] == pytest.approx(float(row["duration_s"]), abs=1e-3)
    pieces = [json.loads(line) for line in timeline.read_text().splitlines() if json.loads(line)["path"] == str(long_path)]
    assert len(long["timeline"]) == len(pieces) >= 10  # speech segments, not one pass
    for mine, theirs in zip(long["timeline"], pieces):
        assert (mine["start_s"], mine["end_s"], mine["label"]) == (theirs["start_s"], theirs["end_s"], theirs["label"])

    assert hub["tone"] == ["NoSpeechError", rows[str(tone_path)]["error"]]
    assert rows[str(tone_path)]["error"].startswith("tone.wav: no speech found")

    clip = {s["label"]: s["score"] for s in hub["clip"]}
    assert clip == pytest.approx({label: float(rows[str(clip_path)][label]) for label in clip}, abs=1e-4)
    subset = {s["label"]: s["score"] for s in hub["clip_candidates"]}
    total = sum(clip[label] for label in subset)
    assert sorted(subset) == ["angry", "happy", "neutral", "sad"]
    assert subset == pytest.approx({label: clip[label] / total for label in subset}, abs=1e-6)


def test_predict_labels_restricts_and_renormalizes(recordings, tmp_path):
    clip = str(recordings / "clip.flac")
    full, part = tmp_path / "full.csv", tmp_path / "part.csv"
    assert predict.main([clip, "--out", str(full)]) == 0
    assert predict.main([clip, "--out", str(part), "--labels", "angry,sad"]) == 0
    (f,), (p,) = list(csv.DictReader(open(full))), list(csv.DictReader(open(part)))
    assert "happy" not in p and float(p["angry"]) + float(p["sad"]) == pytest.approx(1.0, abs=1e-5)
    assert float(p["angry"]) == pytest.approx(float(f["angry"]) / (float(f["angry"]) + float(f["sad"])), abs=1e-5)
    with pytest.raises(SystemExit, match="not labels of this model"):
        predict.main([clip, "--out", str(tmp_path / "x.csv"), "--labels", "angry,bored"])


def test_bundled_checkpoint_code_is_what_saving_writes(tmp_path):
    """The code beside the bundled weights is written by save_pretrained (`python -m serving.resave FOLDER`)."""
    fresh = {p.name: p for p in saved_files(BUNDLED, tmp_path)}
    shipped = {p.name for p in BUNDLED.glob("*.py")}
    assert shipped == {n for n in fresh if n.endswith(".py")}
    for name, path in fresh.items():
        assert (BUNDLED / name).read_text() == path.read_text(), f"{name}: run python -m serving.resave {BUNDLED.relative_to(REPO)}"
    config = json.loads((BUNDLED / "config.json").read_text())
    assert config["custom_pipelines"]["audio-classification"]["impl"] == "pipeline_ser.SERAudioClassificationPipeline"
    # What ships names only what ships: no script or folder of this repository that a Hub user does not have.
    for name in shipped:
        text = (BUNDLED / name).read_text()
        for project_only in ("train.py", "predict.py", "evaluate.py", "app.py", "benchmarks/", "serving", "training.", "README", "demo"):
            assert project_only not in text, (name, project_only)


def test_a_model_saved_before_keeps_loading(tmp_path):
    """A folder written before the class took transformers' name (`SERModel` in its config and auto_map)."""
    from modeling import SERClassifier

    old = tmp_path / "old"
    shutil.copytree(BUNDLED, old)
    config = json.loads((old / "config.json").read_text())
    config["architectures"] = ["SERModel"]
    config["auto_map"]["AutoModelForAudioClassification"] = "modeling_ser.SERModel"
    del config["custom_pipelines"]
    (old / "config.json").write_text(json.dumps(config))
    clip = load_audio(REPO / "examples" / "angry_actor14.flac")
    before = SERClassifier.from_pretrained(old).classify(clip)
    assert before.scores == pytest.approx(SERClassifier.from_pretrained(BUNDLED).classify(clip).scores, abs=1e-6)


def test_the_shipped_code_names_its_runtime_packages():
    """transformers checks a remote module's imports before running it and names the missing ones with the pip
    line; an import hidden in a `try` would escape that check."""
    from transformers.dynamic_module_utils import get_imports

    needed = set()
    for path in BUNDLED.glob("*.py"):
        needed |= set(get_imports(path))
    assert {"torch", "transformers", "numpy", "soundfile", "soxr", "noisereduce", "silero_vad", "opensmile", "scipy", "librosa"} <= needed
    assert not needed & {"modeling", "serving", "training", "predict", "app"}
