import csv
import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import BUNDLED, REPO, bundled_labels, labelled, tiny_backbone
from transformers import AutoFeatureExtractor, pipeline

import predict
from modeling import SERConfig, SERForSequenceClassification, load_audio
from serving.fast import OnnxSERModel, export_onnx, quantize_int8


@pytest.fixture(scope="module")
def clips(data_dir):
    # Twenty real clips of varied length, from several actors.
    return [str(p) for p in sorted(data_dir.glob("Actor_*/*.flac"))[::60]]


@pytest.fixture(scope="module")
def bundled():
    return SERForSequenceClassification.from_pretrained(BUNDLED).eval(), AutoFeatureExtractor.from_pretrained(BUNDLED)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_fast_paths_agree_with_fp32(bundled, clips, tmp_path):
    model, fe = bundled
    int8 = quantize_int8(model)
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in int8.modules())
    inputs = fe([load_audio(p) for p in clips], return_tensors="pt")
    with torch.inference_mode():
        ref = model(**inputs).logits.softmax(-1)
        p_int8 = int8(**inputs).logits.softmax(-1)
    # int8 weights and activations perturb the head by a few points of probability, rarely the winner.
    assert (p_int8 - ref).abs().max() < 0.1
    assert (p_int8.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.9
    with pytest.raises(ValueError, match="Wav2Vec2-family"):  # the GE2E backbone's partials are Python control flow
        export_onnx(model, tmp_path / "model.onnx")
    # ONNX: a Wav2Vec2-family model gives the same fp32 graph in another runtime.
    w2v = SERForSequenceClassification(SERConfig(backbone_config=tiny_backbone(), **labelled())).eval()
    onnx = OnnxSERModel(export_onnx(w2v, tmp_path / "w2v.onnx"), w2v.config)
    with torch.inference_mode():
        ref = w2v(**inputs).logits.softmax(-1)
    torch.testing.assert_close(onnx(**inputs).logits.softmax(-1), ref, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_predict_csv_equals_pipeline_and_resumes(clips, tmp_path, capsys):
    out = tmp_path / "results.csv"
    bad_text = tmp_path / "notes.wav"
    bad_text.write_text("not audio")
    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)

    assert predict.main([*clips[:8], str(bad_text), "--out", str(out), "--batch_size", "4"]) == 0
    first = read_csv(out)
    assert len(first) == 9
    assert list(first[0].keys()) == predict.columns(bundled_labels())

    capsys.readouterr()
    assert predict.main([*clips, str(bad_text), str(silent), "--out", str(out), "--batch_size", "4"]) == 0
    assert "resuming: 9 files already" in capsys.readouterr().err
    rows = read_csv(out)
    assert len(rows) == len(clips) + 2
    assert rows[:9] == first  # done rows are kept, not redone
    by_path = {r["path"]: r for r in rows}
    assert "could not be decoded" in by_path[str(bad_text)]["error"]
    assert "is silent" in by_path[str(silent)]["error"]

    classifier = pipeline("audio-classification", model=str(BUNDLED), top_k=None, trust_remote_code=True)
    for path in clips:
        row = by_path[path]
        assert row["error"] == ""
        expected = {r["label"]: r["score"] for r in classifier(path)}
        assert {e: float(row[e]) for e in bundled_labels()} == pytest.approx(expected, abs=1e-5)
        assert row["label"] == max(expected, key=expected.get)
        assert row["uncertain"] == ("true" if float(row["score"]) < 0.5 else "false")  # the bundled model's threshold
        assert float(row["duration_s"]) == pytest.approx(sf.info(path).duration, abs=1e-3)


def test_predict_folder_and_int8(clips, tmp_path, data_dir):
    out = tmp_path / "int8.csv"
    assert predict.main([str(data_dir / "Actor_05"), "--out", str(out), "--dtype", "int8", "--batch_size", "16"]) == 0
    rows = read_csv(out)
    assert len(rows) == 60 and not any(r["error"] for r in rows)
    assert all(sum(float(r[e]) for e in bundled_labels()) == pytest.approx(1.0, abs=1e-4) for r in rows)


def test_a_stock_classifier_is_refused_at_start(tmp_path, clips):
    """A plain transformers audio classifier used to get an AttributeError row per file and exit code 0."""
    from conftest import tiny_backbone
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    folder = tmp_path / "stock"
    backbone = {k: v for k, v in tiny_backbone().items() if k != "model_type"}
    Wav2Vec2ForSequenceClassification(Wav2Vec2Config(**backbone, num_labels=3)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor().save_pretrained(folder)
    with pytest.raises(SystemExit) as refused:  # one line (predict.py's SystemExit message), no traceback
        predict.main([clips[0], "--model", str(folder), "--out", str(tmp_path / "o.csv")])
    assert "not a speech emotion model of this project" in str(refused.value) and not (tmp_path / "o.csv").exists()


def test_exit_code_is_non_zero_when_every_file_failed(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    out = tmp_path / "failed.csv"
    assert predict.main([str(bad), str(silent), "--out", str(out)]) == 1
    rows = read_csv(out)
    assert len(rows) == 2 and all(r["error"] for r in rows)


def _run(args, **kwargs):
    return subprocess.run([sys.executable, "predict.py", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600, **kwargs)


def _decoders(proc: subprocess.Popen) -> list:
    import psutil

    return psutil.Process(proc.pid).children()  # predict.py starts no other processes


def _open_writer(fifo, proc, timeout=180):
    """Opens the FIFO for writing once a decoder has it open for reading: the decoder is then inside the file,
    waiting for data that does not come."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            time.sleep(0.05)
    raise AssertionError("no decoder opened the FIFO")


@pytest.mark.slow
def test_a_crashed_hung_or_exhausted_decoder_costs_only_its_file(tmp_path, clips):
    """Decoders are native code: a worker killed mid-file, one that hangs, and one out of memory each give that
    file an error row, and the run classifies every other file."""
    killed, stuck = tmp_path / "a_killed.wav", tmp_path / "b_stuck.wav"
    os.mkfifo(killed)
    os.mkfifo(stuck)
    big = tmp_path / "big.wav"  # 8 min of 48 kHz stereo: 176 MiB as float32, over the 0.1 GB limit below
    tone = (0.1 * np.sin(np.arange(48000) * 0.05)).astype(np.float32)
    sf.write(big, np.tile(np.stack([tone, tone], 1), (8 * 60, 1)), 48000, subtype="PCM_16")
    out = tmp_path / "out.csv"
    args = [killed, stuck, big, *clips[:3], "--out", out, "--workers", 1, "--file_timeout_s", 8, "--worker_memory_gb", 0.1]
    proc = subprocess.Popen(
        [sys.executable, "predict.py", *map(str, args)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    fd = _open_writer(killed, proc)
    try:
        (worker,) = _decoders(proc)
        worker.kill()
    finally:
        os.close(fd)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    rows = read_csv(out)
    assert sorted(r["path"] for r in rows) == sorted(map(str, [killed, stuck, big, *clips[:3]]))
    by_path = {r["path"]: r for r in rows}
    assert by_path[str(killed)]["error"] == "a_killed.wav: the decoder process died (killed by signal SIGKILL)"
    assert "b_stuck.wav: decoding took longer than 8 s" in by_path[str(stuck)]["error"]
    assert "big.wav: ran out of memory while decoding (the limit is 0.1 GB" in by_path[str(big)]["error"]
    assert all(by_path[c]["error"] == "" and by_path[c]["label"] in bundled_labels() for c in clips[:3])


@pytest.mark.slow
def test_a_killed_run_resumes_with_no_duplicate_or_missing_row(tmp_path, data_dir):
    folder = data_dir / "Actor_03"
    out = tmp_path / "out.csv"
    proc = subprocess.Popen(
        [sys.executable, "predict.py", str(folder), "--out", str(out), "--batch_size", "4"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (out.exists() and out.read_text().count("\n") > 9):  # header and two batches
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its decoders, as an out-of-memory killer or a preemption would
    proc.wait()
    before = out.read_text()
    assert 9 <= before.count("\n") < 61
    complete = before[: before.rfind("\n") + 1]  # a row cut mid-write is redone

    assert predict.main([str(folder), "--out", str(out), "--batch_size", "4"]) == 0
    after = out.read_text()
    assert after.startswith(complete)  # rows written before the kill are kept as they were
    paths = [r["path"] for r in read_csv(out)]
    assert sorted(paths) == sorted(str(p) for p in folder.glob("*.flac")) and len(paths) == 60


def test_failed_rows_are_kept_on_resume_and_retried_on_request(tmp_path, clips, capsys):
    later = tmp_path / "later.flac"
    out = tmp_path / "out.csv"
    assert predict.main([clips[0], str(later), "--out", str(out)]) == 0
    assert "later.flac: no such file" in {r["path"]: r for r in read_csv(out)}[str(later)]["error"]
    later.write_bytes(open(clips[1], "rb").read())  # the missing file arrives

    assert predict.main([clips[0], str(later), "--out", str(out)]) == 0
    assert "(1 with errors; --retry_errors tries them again)" in capsys.readouterr().err
    assert {r["path"]: r for r in read_csv(out)}[str(later)]["error"]  # not retried unasked

    assert predict.main([clips[0], str(later), "--out", str(out), "--retry_errors"]) == 0
    rows = read_csv(out)
    assert sorted(r["path"] for r in rows) == sorted([clips[0], str(later)])
    assert all(r["error"] == "" for r in rows)


def test_an_unexpected_error_stops_the_run(tmp_path, clips):
    """Only the input's faults become rows: a broken model folder (a bad preprocessor setting) is not a file's."""
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(BUNDLED, model)
    config = json.loads((model / "preprocessor_config.json").read_text())
    config["noise_reduction_prop_decrease"] = "strong"
    (model / "preprocessor_config.json").write_text(json.dumps(config))
    out = tmp_path / "out.csv"
    done = _run([*clips[:2], "--model", model, "--out", out])
    assert done.returncode != 0
    assert "unexpected error while decoding" in done.stderr and "in denoise" in done.stderr
    assert read_csv(out) == []


@pytest.mark.slow
def test_torchrun_two_processes_write_the_csv_of_one(tmp_path, clips):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    files = [*clips[:10], str(bad)]
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert predict.main([*files, "--out", str(one)]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "predict.py", *files, "--out", str(two)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    single = {r["path"]: r for r in read_csv(one)}
    split = {r["path"]: r for r in read_csv(two)}
    assert len(read_csv(two)) == len(files) and split.keys() == single.keys()
    for path, row in single.items():
        assert split[path]["label"] == row["label"] and split[path]["error"] == row["error"]
        for label in bundled_labels():
            assert float(split[path][label] or 0) == pytest.approx(float(row[label] or 0), abs=2e-6)


def test_folder_scans_take_what_ffmpeg_reads_and_an_empty_folder_writes_nothing(tmp_path, clips, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no audio files in"):
        predict.main([str(empty), "--out", str(tmp_path / "none.csv")])
    assert not (tmp_path / "none.csv").exists()

    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "notes.txt").write_text("not audio")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", clips[0], "-c:a", "aac", str(folder / "clip.mp4")], check=True)
    assert predict.main([str(folder), "--out", str(tmp_path / "media.csv")]) == 0
    assert "skipped 1 files without an audio extension" in capsys.readouterr().err
    (row,) = read_csv(tmp_path / "media.csv")
    assert row["path"].endswith("clip.mp4") and row["error"] == ""


def test_a_result_waiting_while_the_model_runs_is_not_timed_out(clips):
    """Results wait in their pipes while the caller runs the model; that wait is not the decoder's time."""
    from transformers import AutoFeatureExtractor

    from serving.batch import DecoderPool

    fe = AutoFeatureExtractor.from_pretrained(BUNDLED)
    with DecoderPool(fe, workers=2, timeout_s=2.0) as pool:
        results = []
        for decoded in pool.map(clips[:6]):
            results.append(decoded)
            if len(results) == 1:
                time.sleep(3)  # a long model step, longer than the decoders' time limit
    assert sorted(d.path for d in results) == sorted(clips[:6])
    assert all(d.error is None for d in results), [d.error for d in results]
