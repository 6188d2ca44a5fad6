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
EMODB_DIR = DATA_DIR.parent / "emodb16k"
CORPUS_FOUND = (DATA_DIR / "manifest.csv").is_file() and (EMODB_DIR / "manifest.csv").is_file()
# CI sets this: a run without its data must fail, not pass green with the corpus tests skipped.
REQUIRE_CORPUS = os.environ.get("SER_REQUIRE_CORPUS", "") not in ("", "0")
CORPUS_HELP = (
    f"needs the RAVDESS and EmoDB corpora, not found at {DATA_DIR} and {EMODB_DIR}. Get RAVDESS's speech actors "
    "(Audio_Speech_Actors_01-24.zip, https://zenodo.org/records/1188976, CC BY-NC-SA 4.0) and EmoDB "
    "(http://emodb.bilderbar.info/download/, research use), convert them with `python -m training.corpora "
    "--ravdess Audio_Speech_Actors_01-24.zip --emodb download.zip --out DIR` (16 kHz FLAC in "
    "ravdess16k/Actor_NN/ and emodb16k/NN/, each with its manifest.csv), and point SER_DATA_DIR at "
    "DIR/ravdess16k (emodb16k beside it); the default place is ../shared/data beside this repository"
)


def pytest_configure(config):
    config.addinivalue_line("markers", "corpus: needs the RAVDESS and EmoDB copies (skipped with how to get them when absent)")
    config.addinivalue_line(
        "markers", "slow: an end-to-end run (a Trainer, a server, a browser, subprocesses): scheduled first so that the "
        "xdist workers finish together"
    )  # fmt: skip
    if REQUIRE_CORPUS and not CORPUS_FOUND and not hasattr(config, "workerinput"):
        raise pytest.UsageError(f"SER_REQUIRE_CORPUS is set and the suite {CORPUS_HELP}")


def pytest_report_header(config):
    return f"corpus: {DATA_DIR} and {EMODB_DIR}" if CORPUS_FOUND else f"corpus: not found; the tests that {CORPUS_HELP}, are skipped"


def pytest_collection_modifyitems(config, items):
    """Marks the tests that read the corpus (through the `data_dir` fixture, or marked `corpus`); then puts the slow
    tests first (xdist hands out work in this order)."""
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker("corpus")
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: otherwise in file order


def pytest_runtest_setup(item):
    # Skipped from here, so that the summary gives the reason once for all of them.
    if not CORPUS_FOUND and item.get_closest_marker("corpus"):
        pytest.skip(f"this test {CORPUS_HELP}")


# An eight-label set for models made in tests (the RAVDESS reader's labels); a model's own labels live in its config.
TEST_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def train_in_repo(argv: list[str]) -> dict:
    """train.py's `main` in this process, run from the repository (a config's paths are relative to it)."""
    import train

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return train.main(argv)
    finally:
        os.chdir(cwd)


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
    """The RAVDESS copy; a test that asks for it is marked `corpus` (skipped, or refused in CI, without it)."""
    if not CORPUS_FOUND:  # marked tests never get here; a fixture that asks for it in another way does
        pytest.skip(f"this test {CORPUS_HELP}")
    return DATA_DIR


@pytest.fixture(scope="session")
def emodb_dir(data_dir) -> Path:
    return EMODB_DIR


@pytest.fixture(scope="session")
def preprocessing_cache(tmp_path_factory) -> str:
    """One cache of decoded clips and embeddings for the whole run, shared by the xdist workers: its entries are
    keyed by the clips' bytes and the preprocessing settings, and written atomically, so a subset that several
    tests train on is decoded once. Tests that check what gets decoded keep a cache of their own."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' base folders share this parent
    path = root / "preprocessing-cache"
    path.mkdir(exist_ok=True)
    return str(path)


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
