"""Every entry point gives a sound prediction or a clear, specific error for each case of the matrix."""

import csv
import re

import pytest
from conftest import BUNDLED, bundled_labels
from transformers import pipeline


@pytest.fixture(scope="module")
def classifier():
    return pipeline("audio-classification", model=str(BUNDLED), top_k=None, trust_remote_code=True)


def test_pipeline_matrix(classifier, bad_cases):
    for case in bad_cases:
        expected = case.expected("pipeline")
        if expected == "ok":
            scores = classifier(str(case.path))
            assert sorted(s["label"] for s in scores) == sorted(bundled_labels()), case.name
        else:
            # The model folder's own copy of the code raises its own AudioError (a ValueError), as for a Hub user.
            with pytest.raises(ValueError, match=expected) as raised:
                classifier(str(case.path))
            assert type(raised.value).__name__ in ("AudioError", "NoSpeechError", "MusicWithoutVoiceError"), case.name


@pytest.mark.slow
def test_predict_cli_matrix(bad_cases, tmp_path, capfd):
    import predict

    out = tmp_path / "matrix.csv"
    assert predict.main([*[str(c.path) for c in bad_cases], "--out", str(out)]) == 0
    assert "Traceback" not in capfd.readouterr().err  # nor in its decoder processes' output
    rows = {r["path"]: r for r in csv.DictReader(open(out, newline="", encoding="utf-8"))}
    assert len(rows) == len(bad_cases)
    for case in bad_cases:
        row = rows[str(case.path)]
        expected = case.expected("predict")
        if expected == "ok":
            assert row["error"] == "" and row["label"] in bundled_labels(), (case.name, row["error"])
        else:
            assert re.search(expected, row["error"]), (case.name, row["error"])
