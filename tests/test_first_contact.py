"""What a new user meets first: refusals of the wrong model or flag, help texts, the confusion-matrix image."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import BUNDLED, REPO, tiny_backbone
from transformers import AutoConfig, AutoModel

import predict
from modeling import SERForSequenceClassification
from serving.loading import ModelError, check_ser_model
from training.args import ArgumentsError, check_train_args, parse_train_args


@pytest.fixture(scope="module")
def plain_backbone(tmp_path_factory):
    """A wav2vec2 encoder without a classification head: what `facebook/wav2vec2-base` is."""
    folder = tmp_path_factory.mktemp("backbone")
    AutoModel.from_config(AutoConfig.for_model(**tiny_backbone())).save_pretrained(folder)
    return folder


def test_model_references_get_one_clear_line(plain_backbone, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ModelError, match=r"^checkpoints/ge2e-ravdess-emodbb: no such folder \(.*\); did you mean checkpoints/ge2e-ravdess-emodb\?$"):
        check_ser_model("checkpoints/ge2e-ravdess-emodbb")  # a valid Hub id in form, but its first part is a folder here
    with pytest.raises(ModelError, match="no such folder"):
        check_ser_model(str(tmp_path / "nope" / "deeper" / "model"))
    with pytest.raises(ModelError, match="has no config.json"):
        check_ser_model(str(tmp_path))
    with pytest.raises(ModelError, match=r"is a Wav2Vec2Model \(wav2vec2\), not a speech emotion model .* train.py --model_name_or_path"):
        check_ser_model(str(plain_backbone))
    assert check_ser_model(str(BUNDLED)).model_type == "ser"


@pytest.mark.slow
def test_app_refuses_a_plain_backbone_and_predict_a_missing_folder(plain_backbone, clip_path, capsys):
    # app.py builds its demo at import: a process of its own, which must end with one line.
    done = subprocess.run(
        [sys.executable, "app.py", "--model", str(plain_backbone)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[-1].startswith("app.py: ") and "not a speech emotion model of this project" in lines[-1]
    for model, message in ((plain_backbone, "not a speech emotion model of this project"), ("checkpoints/typo", "no such folder")):
        with pytest.raises(SystemExit) as exit_:
            predict.main([str(clip_path), "--out", "/dev/null", "--model", str(model)])
        assert str(exit_.value).startswith("predict.py: ") and message in str(exit_.value)
        assert "Repo id must be" not in str(exit_.value)


def test_from_backbone_on_a_saved_model_says_what_to_call(tiny_model_dir):
    with pytest.raises(ValueError, match=r"already a speech emotion model.* SERForSequenceClassification.from_pretrained"):
        SERForSequenceClassification.from_backbone(str(tiny_model_dir))


def test_unknown_backbone_keys_and_abbreviated_flags_are_refused(capsys, data_dir, tmp_path):
    args = ["--data_dir", str(data_dir), "--output_dir", str(tmp_path)]
    parsed = parse_train_args([*args, "--backbone_config", '{"model_type": "wav2vec2", "hiden_size": 64}'])
    with pytest.raises(ArgumentsError, match=r"'hiden_size' is not a setting of Wav2Vec2Config; did you mean 'hidden_size'\?"):
        check_train_args(*parsed)
    with pytest.raises(SystemExit) as exit_:
        parse_train_args([*args, "--num_train_epoch", "3"])  # argparse would take it for --num_train_epochs
    assert exit_.value.code == 2
    assert "--num_train_epoch: did you mean --num_train_epochs?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.parse_args(["x.wav", "--batch", "4"])


def test_help_texts(tmp_path):
    # app.py answers --help before importing torch or gradio.
    probe = "import runpy, sys\nsys.argv = ['app.py', '--help']\ntry:\n    runpy.run_path('app.py', run_name='__main__')\nexcept SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'gradio', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "--max-file-size" in done.stdout and done.stdout.strip().endswith("[]"), done.stdout + done.stderr
    # train.py --help opens with the examples, not with Trainer's flags.
    done = subprocess.run([sys.executable, "train.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    head = "\n".join(done.stdout.splitlines()[:12])
    assert done.returncode == 0 and "python train.py configs/tiny.yaml --output_dir runs/tiny" in head


def test_confusion_matrix_image_holds_its_whole_title(tmp_path):
    import matplotlib.image as mpimg

    from training.metrics import plot_confusion_matrix

    title = "actor-disjoint split (speaker-independent): test speakers " + str([f"corpus:{i:02d}" for i in range(12)])
    for n in (2, 8):
        path = tmp_path / f"cm{n}.png"
        plot_confusion_matrix(np.eye(n, dtype=int).tolist(), [f"a-long-label-name-{i}" for i in range(n)], path, title)
        image = mpimg.imread(path)[..., :3].min(-1)
        border = np.concatenate([image[:3].ravel(), image[-3:].ravel(), image[:, :3].ravel(), image[:, -3:].ravel()])
        assert border.min() > 0.95  # nothing drawn touches an edge: no text was cut off
        assert (image[: image.shape[0] // 8] < 0.5).any()  # and the title is there, at the top


@pytest.mark.slow
def test_pip_install_editable_makes_the_packages_importable_anywhere(tmp_path):
    """`pip install -e .` through pyproject.toml, as install.sh runs it (`--no-build-isolation`: the build backend
    is the one of the environment the suite runs in, which may itself be a virtual environment). The new venv sees
    that environment's packages through a .pth file: `--system-site-packages` would show it the base interpreter's
    instead, whose setuptools can be too old to build an editable wheel."""
    import os

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    # Every package folder the suite sees (its venv's, the user's, a --system-site-packages base), not the .pth
    # files inside them: this project's own editable install must come from the install below.
    folders = [p for p in sys.path if os.path.isdir(p) and os.path.basename(p) in ("site-packages", "dist-packages")]
    (site_packages / "suite-environment.pth").write_text("\n".join(folders) + "\n")
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--disable-pip-version-check", "-e", str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    probe = "import modeling, serving.batch, training.sources; print(modeling.__file__); print(modeling.SERConfig.model_type)"
    done = subprocess.run([str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [str(REPO / "modeling" / "__init__.py"), "ser"]
    # The declared dependencies are requirements.txt's pins.
    from importlib.metadata import PathDistribution

    (info,) = (tmp_path / "venv").glob("lib/python*/site-packages/ser-*.dist-info")
    requires = {r for r in PathDistribution(info).requires if "extra ==" not in r}
    pins = {line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()}
    assert requires == {p for p in pins if p}


def test_a_model_folder_under_home_is_found(monkeypatch, tmp_path, tiny_model_dir):
    import shutil

    from serving.loading import resolve_model_path

    shutil.copytree(tiny_model_dir, tmp_path / "models" / "mine")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_model_path("~/models/mine") == str(tmp_path / "models" / "mine")
    assert check_ser_model(resolve_model_path("~/models/mine")).model_type == "ser"
