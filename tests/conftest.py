import os

# Tests never reach a hub: everything they load is made here or read from the shared RAVDESS copy.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist the workers share the cores: each (and each process it starts) takes its share of threads,
# instead of every torch process starting one thread per core.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import csv  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "checkpoints" / "ge2e-ravdess-emodb"  # the committed model the demo and CLI serve
DATA_DIR = Path(os.environ.get("SER_DATA_DIR", REPO.parent / "shared" / "data" / "ravdess16k"))


# An eight-label set for models made in tests (the RAVDESS reader's labels); a model's own labels live in its config.
TEST_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def labelled(labels=TEST_LABELS) -> dict:
    """`SERConfig` keyword arguments for a label set."""
    return {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


def bundled_labels() -> list[str]:
    import json

    id2label = json.loads((BUNDLED / "config.json").read_text())["id2label"]
    return [id2label[str(i)] for i in range(len(id2label))]


def tiny_backbone(norm: str = "layer", model_type: str = "wav2vec2") -> dict:
    """A Wav2Vec2-family encoder small enough to run in milliseconds (hidden 32, 2 layers)."""
    config = dict(
        model_type=model_type,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(32, 32, 32),
        conv_stride=(4, 4, 4),
        conv_kernel=(8, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.0,
    )
    if model_type != "data2vec-audio":
        config.update(feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")
    return config


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "manifest.csv").exists():
        pytest.fail(f"RAVDESS copy not found at {DATA_DIR} (set SER_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def manifest(data_dir) -> list[dict]:
    with open(data_dir / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def clip_path(data_dir) -> Path:
    return data_dir / "Actor_01" / "03-01-05-02-01-01-01.flac"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved random tiny model with its feature extractor: what `save_pretrained` users publish."""
    from modeling import SERConfig, SERFeatureExtractor, SERForSequenceClassification

    path = tmp_path_factory.mktemp("tiny-model")
    SERForSequenceClassification(SERConfig(backbone_config=tiny_backbone(), **labelled())).save_pretrained(path)
    SERFeatureExtractor().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def bad_cases(tmp_path_factory):
    """The bad-input matrix of `bad_inputs.py`, written once for every entry point's tests."""
    import soundfile as sf
    from bad_inputs import make_cases

    speech, _ = sf.read(REPO / "examples" / "angry_actor14.flac", dtype="float32")
    return make_cases(tmp_path_factory.mktemp("bad-inputs"), speech)
