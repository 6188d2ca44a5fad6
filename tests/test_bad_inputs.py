"""Every entry point gives a sound prediction or a clear, specific error for each case of the matrix."""

import csv
import re
import subprocess
import sys
import time

import pytest
from conftest import BUNDLED, REPO, bundled_labels
from transformers import pipeline


@pytest.fixture(scope="module")
def classifier():
    return pipeline("audio-classification", model=str(BUNDLED), top_k=None, trust_remote_code=True)


def test_pipeline_matrix(classifier, bad_cases):
    for case in bad_cases:
        expected = case.expected("pipeline")
        start = time.perf_counter()
        if expected == "ok":
            scores = classifier(str(case.path))
            assert sorted(s["label"] for s in scores) == sorted(bundled_labels()), case.name
        else:
            # The model folder's own copy of the code raises its own AudioError (a ValueError), as for a Hub user.
            with pytest.raises(ValueError, match=expected) as raised:
                classifier(str(case.path))
            assert type(raised.value).__name__ in ("AudioError", "NoSpeechError", "MusicWithoutVoiceError"), case.name
        assert time.perf_counter() - start < 30, f"{case.name} took too long"


def test_predict_cli_matrix(bad_cases, tmp_path):
    out = tmp_path / "matrix.csv"
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "predict.py", *[str(c.path) for c in bad_cases], "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    rows = {r["path"]: r for r in csv.DictReader(open(out, newline="", encoding="utf-8"))}
    assert len(rows) == len(bad_cases)
    for case in bad_cases:
        row = rows[str(case.path)]
        expected = case.expected("predict")
        if expected == "ok":
            assert row["error"] == "" and row["label"] in bundled_labels(), (case.name, row["error"])
        else:
            assert re.search(expected, row["error"]), (case.name, row["error"])
    print(f"predict.py over the matrix: {time.perf_counter() - start:.1f} s")
