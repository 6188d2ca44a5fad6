"""Data sources, label maps, splits over several corpora, and augmentation: fast checks on the real corpora."""

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import DATA_DIR, EMODB_DIR, REPO

from training.args import ArgumentsError, check_train_args, parse_train_args
from training.augment import AugmentationConfig, AugmentedDataset, Augmenter
from training.experiment import load_records
from training.sources import (
    DataError,
    apply_label_map,
    label_names,
    parse_emodb_name,
    parse_ravdess_name,
    read_label_map,
    read_manifest,
    scan_emodb_folder,
    scan_ravdess_folder,
)
from training.splits import SplitError, actor_split, corpus_split, kfold_splits, random_split

EXAMPLE = REPO / "examples" / "angry_actor14.flac"  # a committed clip: these tests run without the corpus

@pytest.fixture(scope="module")
def emodb_manifest(emodb_dir):
    with open(emodb_dir / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def both(manifest, emodb_manifest):
    """Speaker, sex and corpus of every clip of RAVDESS and EmoDB, as the readers name them."""
    rows = [(f"ravdess:{int(r['actor']):02d}", r["sex"], "ravdess") for r in manifest]
    rows += [(f"emodb:{r['speaker']}", r["sex"], "emodb") for r in emodb_manifest]
    return [list(x) for x in zip(*rows)]


def test_file_name_readers():
    assert parse_ravdess_name("03-01-06-02-01-02-13.wav") == {
        "label": "fearful",
        "speaker": "ravdess:13",
        "sex": "male",
        "corpus": "ravdess",
        "intensity": "strong",
    }
    assert parse_ravdess_name("Actor_02/03-01-01-01-02-01-02.mp3")["sex"] == "female"
    for bad in ("03-01-09-01-01-01-01.wav", "recording.wav", "03-01-01-01-01-01.wav"):
        assert parse_ravdess_name(bad) is None
    assert parse_emodb_name("03a01Fa.wav") == {
        "label": "happy",
        "speaker": "emodb:03",
        "sex": "male",
        "corpus": "emodb",
        "intensity": "unknown",
    }
    assert parse_emodb_name("16b10Lb.flac")["label"] == "boredom"
    assert parse_emodb_name("16b10Lb.flac")["sex"] == "female"
    for bad in ("99a01Fa.wav", "03a01Xa.wav", "03-01-01-01-01-01-01.wav"):
        assert parse_emodb_name(bad) is None


def test_emodb_reader_agrees_with_its_manifest(emodb_manifest):
    records, skipped = scan_emodb_folder(EMODB_DIR)
    assert skipped == 0 and len(records) == len(emodb_manifest) == 535
    by_name = {r["path"].split("/")[-1]: r for r in emodb_manifest}
    for record in records:
        row = by_name[record["audio"].split("/")[-1]]
        assert record["speaker"] == f"emodb:{row['speaker']}" and record["sex"] == row["sex"]
        assert record["label"] == row["emotion"]


def test_label_map_renames_and_drops(tmp_path):
    records = [{"label": x} for x in ("angry", "boredom", "happy", "boredom")]
    kept, dropped = apply_label_map(records, {"boredom": None, "happy": "joy"})
    assert [r["label"] for r in kept] == ["angry", "joy"] and dropped == {"boredom": 2}
    assert read_label_map('{"a": null}') == {"a": None}
    (tmp_path / "map.yaml").write_text("fear: fearful\nboredom: null\n")
    assert read_label_map(str(tmp_path / "map.yaml")) == {"fear": "fearful", "boredom": None}
    assert label_names([{"label": "b"}, {"label": "a"}]) == ["a", "b"]
    # A ClassLabel's own order wins when every label is in it.
    assert label_names([{"label": "b"}, {"label": "a"}], ["b", "c", "a"]) == ["b", "a"]


@pytest.mark.corpus
def test_ravdess_and_emodb_records_in_one_run():
    _, data_args, _ = parse_train_args(
        ["--data_dir", str(DATA_DIR), "--emodb_dir", str(EMODB_DIR), "--label_map", '{"boredom": null}', "--output_dir", "x"]
    )
    records, labels, info = load_records(data_args)
    assert labels == sorted(["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"])
    assert info["corpora"] == ["ravdess", "emodb"] and info["labels_dropped"] == {"boredom": 81}
    assert info["duplicates_dropped"] == 1
    assert len(records) == 1200 + 535 - 81 - 1
    speakers = {r["speaker"] for r in records}
    assert len(speakers) == 30 and {"ravdess:03", "emodb:03"} <= speakers  # same number, two people


def test_actor_split_holds_out_speakers_of_every_corpus(both):
    speakers, sexes, corpora = both
    split = actor_split(speakers, sexes, corpora, num_val=2, num_test=4, seed=7)
    parts = split.actors
    assert not set(parts["train"]) & set(parts["test"])
    assert not set(parts["train"]) & set(parts["validation"])
    assert not set(parts["validation"]) & set(parts["test"])
    assert len(parts["train"]) + len(parts["validation"]) + len(parts["test"]) == 30
    sex = dict(zip(speakers, sexes))
    for part in ("validation", "test"):
        for corpus in ("ravdess", "emodb"):
            held = [s for s in parts[part] if s.startswith(corpus)]
            assert {sex[s] for s in held} == {"male", "female"}, (part, corpus)
        assert {speakers[i] for i in getattr(split, part)} == set(parts[part])
    # 4 test speakers of the larger corpus, proportionally fewer (at least 2) of the smaller one.
    assert sum(s.startswith("ravdess") for s in parts["test"]) == 4
    assert sum(s.startswith("emodb") for s in parts["test"]) == 2
    assert split == actor_split(speakers, sexes, corpora, num_val=2, num_test=4, seed=7)  # reproducible
    assert split.actors != actor_split(speakers, sexes, corpora, num_val=2, num_test=4, seed=8).actors
    assert not split.speakers_overlap and "speaker-independent" in split.summary()


def test_actor_split_without_known_sex():
    speakers = [f"mine:{i}" for i in range(6) for _ in range(3)]
    split = actor_split(speakers, ["unknown"] * len(speakers), ["mine"] * len(speakers), num_val=1, num_test=2, seed=0)
    assert len(split.actors["test"]) == 2 and len(split.actors["validation"]) == 1
    with pytest.raises(SplitError, match="too few"):
        actor_split(speakers, ["unknown"] * len(speakers), ["mine"] * len(speakers), num_val=3, num_test=3, seed=0)
    with pytest.raises(SplitError, match="speaker of every clip"):
        actor_split(["a", ""], ["male", "male"], ["c", "c"], 1, 1, 0)


def test_kfold_tests_each_speaker_once_with_every_corpus(both):
    speakers, sexes, corpora = both
    folds = kfold_splits(speakers, sexes, corpora, folds=5, num_val=2, seed=0)
    tested = [s for f in folds for s in f.actors["test"]]
    assert sorted(tested) == sorted(set(speakers))
    for fold in folds:
        assert {s.split(":")[0] for s in fold.actors["test"]} == {"ravdess", "emodb"}
        assert not set(fold.actors["train"]) & set(fold.actors["test"] + fold.actors["validation"])
        assert len(fold.train) + len(fold.validation) + len(fold.test) == len(speakers)


def test_leave_one_corpus_out(both):
    speakers, sexes, corpora = both
    split = corpus_split(speakers, sexes, corpora, "emodb", num_val=2, seed=0)
    assert {corpora[i] for i in split.test} == {"emodb"} and len(split.test) == 535
    assert {corpora[i] for i in split.train + split.validation} == {"ravdess"}
    assert "leave-one-corpus-out" in split.summary() and not split.speakers_overlap
    with pytest.raises(SplitError, match="not among the corpora"):
        corpus_split(speakers, sexes, corpora, "iemocap", 2, 0)


def test_random_split_is_stratified_and_says_speakers_overlap(manifest):
    labels = [["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"].index(r["emotion"]) for r in manifest]
    split = random_split(labels, 0.1, 0.2, seed=0)
    assert len(split.test) == 240 and not set(split.test) & set(split.train)
    assert np.bincount(np.asarray(labels)[split.test], minlength=8).min() >= 15
    assert split.speakers_overlap and "speakers overlap" in split.summary()


def test_random_split_with_a_rare_label_is_a_split_error():
    with pytest.raises(SplitError, match="could not stratify"):
        random_split([0] * 30 + [1], 0.1, 0.2, seed=0)


@pytest.mark.slow
def test_augmentation_changes_the_waveform_reproducibly(clip_path):
    wave, _ = sf.read(clip_path, dtype="float32")
    wave = (wave - wave.mean()) / wave.std()
    augment = Augmenter(AugmentationConfig(), seed=3)
    views = [augment(wave, index=i, epoch=e) for i in range(10) for e in range(4)]
    first = augment(wave, index=0, epoch=0)
    np.testing.assert_array_equal(first, views[0])  # same seed, clip and epoch: the same waveform
    np.testing.assert_array_equal(first, Augmenter(AugmentationConfig(), seed=3)(wave, index=0, epoch=0))
    changed = [v for v in views if len(v) != len(wave) or not np.allclose(v, wave, atol=1e-3)]
    # Nothing is applied with probability 0.5 * 0.7 * 0.7 * 0.5 = 12%: most of 40 draws change the waveform.
    assert len(changed) >= 0.7 * len(views)
    others = [Augmenter(AugmentationConfig(), seed=4)(wave, index=i, epoch=0) for i in range(4)]
    assert any(len(a) != len(b) or not np.array_equal(a, b) for a, b in zip(others, views[::4]))  # another seed
    assert any(len(v) != len(wave) for v in views)  # speed perturbation changes the length
    for v in views:
        assert v.dtype == np.float32 and np.isfinite(v).all()
        assert abs(v.mean()) < 1e-3 and v.std() == pytest.approx(1.0, abs=1e-3)  # normalized as at inference
    # Global random state is left as it was.
    np.random.seed(0)
    expected = np.random.rand()
    np.random.seed(0)
    augment(wave, 5, 5)
    assert np.random.rand() == expected


def test_augmented_dataset_keeps_labels_and_follows_the_epoch(clip_path):
    wave, _ = sf.read(clip_path, dtype="float32")
    original = wave.copy()
    rows = [{"input_values": wave, "label": 3}, {"input_values": wave[:20000], "label": 5}]
    data = AugmentedDataset(rows, Augmenter(AugmentationConfig(), seed=1))
    epoch0 = [data[i] for i in range(2)]
    data.set_epoch(1)
    epoch1 = [data[i] for i in range(2)]
    assert [r["label"] for r in epoch0 + epoch1] == [3, 5, 3, 5]
    assert any(not np.array_equal(a["input_values"], b["input_values"]) for a, b in zip(epoch0, epoch1))
    data.set_epoch(0)
    np.testing.assert_array_equal(data[0]["input_values"], epoch0[0]["input_values"])
    np.testing.assert_array_equal(rows[0]["input_values"], original)  # the cached waveform is not modified


def test_contradicting_flags_are_refused():
    def check(*argv):
        check_train_args(*parse_train_args(["--output_dir", "x", *argv]))

    with pytest.raises(ArgumentsError, match="add --augment_copies N"):
        check("--freeze_backbone", "true", "--augment", "true")
    with pytest.raises(ArgumentsError, match="for --augment with --freeze_backbone true"):
        check("--augment_copies", "4")
    with pytest.raises(ArgumentsError, match="cached embeddings: add --freeze_backbone true"):
        check("--speaker_adaptation", "true", "--freeze_backbone", "false")
    with pytest.raises(ArgumentsError, match="'balanced'"):
        check("--class_weights", "inverse")
    with pytest.raises(ArgumentsError, match="persistent data-loader workers"):
        check("--augment", "true", "--dataloader_num_workers", "2", "--dataloader_persistent_workers", "true")
    with pytest.raises(ArgumentsError, match="each fold resumes"):
        check("--split", "kfold", "--resume_from_checkpoint", "runs/x/checkpoint-10")
    with pytest.raises(ArgumentsError, match="card without a model"):
        check("--split", "kfold", "--push_to_hub", "true", "--hub_model_id", "a/b")
    with pytest.raises(ArgumentsError, match="--fold 5"):
        check("--split", "kfold", "--folds", "5", "--fold", "5")


def write_manifest(folder, rows, header=("path", "label", "speaker", "sex")):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "clips.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return folder / "clips.csv"


def test_manifest_reader(tmp_path):
    source = EXAMPLE
    (tmp_path / "mine" / "audio").mkdir(parents=True)
    shutil.copy(source, tmp_path / "mine" / "audio" / "a.flac")
    csv_path = write_manifest(tmp_path / "mine", [("audio/a.flac", "grumpy", "7", "F")])
    (record,) = read_manifest(csv_path)
    assert record["speaker"] == "mine:7" and record["sex"] == "female" and record["corpus"] == "mine"
    assert record["label"] == "grumpy" and record["audio"].endswith("a.flac")


BAD_SOURCES = {
    "ravdess folder missing": (["--data_dir", "{tmp}/nowhere"], "--data_dir .*nowhere: no such folder"),
    "emodb folder without emodb names": (["--emodb_dir", "{tmp}/empty"], "no audio files named in the layout"),
    "manifest missing": (["--manifest", "{tmp}/none.csv"], "none.csv: no such file"),
    "manifest without a label column": (["--manifest", "{tmp}/nolabel/clips.csv"], r"missing \['label'\]"),
    "manifest naming a missing clip": (["--manifest", "{tmp}/gone/clips.csv"], "line 2: audio/gone.flac: no such file"),
    "manifest with a bad sex": (["--manifest", "{tmp}/sex/clips.csv"], "line 2: sex must be male, female or empty"),
    "label map file missing": (["--manifest", "{tmp}/ok/clips.csv", "--label_map", "{tmp}/map.json"], "map.json: no such file"),
    "label map not a mapping": (["--manifest", "{tmp}/ok/clips.csv", "--label_map", "{tmp}/list.yaml"], "must map label names"),
    "label map dropping everything": (["--manifest", "{tmp}/ok/clips.csv", "--label_map", '{"grumpy": null}'], "dropped every clip"),
    "single label": (["--manifest", "{tmp}/ok/clips.csv"], "single label"),
    "dataset missing": (["--dataset_name", "{tmp}/no-dataset"], "--dataset_name .*could not be loaded"),
    "nothing given": ([], "no data"),
}


@pytest.fixture(scope="module")
def bad_source_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-sources")
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.wav").write_bytes(b"RIFF")
    write_manifest(tmp / "nolabel", [("a.flac", "7")], header=("path", "speaker"))
    write_manifest(tmp / "gone", [("audio/gone.flac", "x", "1", "")])
    shutil.copy(EXAMPLE, tmp / "a.flac")
    (tmp / "sex").mkdir()
    shutil.copy(tmp / "a.flac", tmp / "sex" / "a.flac")
    write_manifest(tmp / "sex", [("a.flac", "x", "1", "robot")])
    (tmp / "ok").mkdir()
    shutil.copy(tmp / "a.flac", tmp / "ok" / "a.flac")
    write_manifest(tmp / "ok", [("a.flac", "grumpy", "1", "")])
    (tmp / "list.yaml").write_text("- a\n- b\n")
    return tmp


@pytest.mark.parametrize("case", list(BAD_SOURCES))
def test_bad_sources_get_a_data_error(case, bad_source_dir):
    argv, message = BAD_SOURCES[case]
    argv = [a.replace("{tmp}", str(bad_source_dir)) for a in argv]
    _, data_args, _ = parse_train_args(["--output_dir", "x", *argv])
    with pytest.raises(DataError, match=message):
        load_records(data_args)


def test_train_cli_reports_a_bad_source_without_traceback(bad_source_dir):
    result = subprocess.run(
        [sys.executable, "train.py", "configs/tiny.yaml", "--manifest", str(bad_source_dir / "gone" / "clips.csv"),
         "--output_dir", str(bad_source_dir / "o")],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "gone.flac: no such file" in result.stderr and "Traceback" not in result.stderr


def test_corpus_archives_convert_to_the_layout_the_suite_reads(tmp_path, data_dir, emodb_dir, manifest, emodb_manifest):
    """`python -m training.corpora` on archives shaped like the public downloads (48 kHz RAVDESS WAVs in Actor_NN/,
    16 kHz EmoDB WAVs in wav/), made from real clips: the folders, manifests and audio the suite reads."""
    import io
    import zipfile

    import soxr

    from training import corpora

    ravdess_rows = [r for r in manifest if r["actor"] in ("1", "2")][::20]
    with zipfile.ZipFile(tmp_path / "Audio_Speech_Actors_01-24.zip", "w") as archive:
        for row in ravdess_rows:
            wave, _ = sf.read(data_dir / row["path"], dtype="float32")
            buffer = io.BytesIO()
            sf.write(buffer, soxr.resample(wave, 16000, 48000), 48000, format="WAV", subtype="PCM_16")
            name = Path(row["path"]).stem
            archive.writestr(f"{Path(row['path']).parent.name}/{name}.wav", buffer.getvalue())
        archive.writestr("Actor_22/03-01-01-01-01-01-22.wav", buffer.getvalue())  # an unseen actor: left out
        archive.writestr("Actor_01/02-01-01-01-01-01-01.wav", buffer.getvalue())  # the video-only modality
    emodb_rows = emodb_manifest[::60]
    with zipfile.ZipFile(tmp_path / "download.zip", "w") as archive:
        for row in emodb_rows:
            archive.write(emodb_dir / row["path"], f"wav/{Path(row['path']).stem}.wav")
        archive.writestr("lablaut/03a01Fa.lab", "not audio")

    assert corpora.main(["--ravdess", str(tmp_path / "Audio_Speech_Actors_01-24.zip"), "--emodb", str(tmp_path / "download.zip"),
                         "--out", str(tmp_path / "data")]) == 0  # fmt: skip
    for folder, source_dir, rows, keys in (
        ("ravdess16k", data_dir, ravdess_rows, ["path", "emotion", "intensity", "statement", "repetition", "actor", "sex"]),
        ("emodb16k", emodb_dir, emodb_rows, ["path", "corpus", "speaker", "sex", "emotion", "emotion_code"]),
    ):
        with open(tmp_path / "data" / folder / "manifest.csv", newline="") as f:
            written = list(csv.DictReader(f))
        assert [{k: r[k] for k in keys} for r in written] == [{k: r[k] for k in keys} for r in rows]
        for row in written:
            converted, rate = sf.read(tmp_path / "data" / folder / row["path"], dtype="float32")
            original, _ = sf.read(source_dir / row["path"], dtype="float32")
            assert rate == 16000 and len(converted) == len(original)
            assert np.abs(converted - original).max() < 0.02  # a 16 -> 48 -> 16 kHz round trip (EmoDB: a copy)
    # The readers take the converted folders.
    assert len(scan_ravdess_folder(tmp_path / "data" / "ravdess16k")[0]) == len(ravdess_rows)
    assert len(scan_emodb_folder(tmp_path / "data" / "emodb16k")[0]) == len(emodb_rows)
    assert corpora.main(["--emodb", str(tmp_path / "Audio_Speech_Actors_01-24.zip"), "--out", str(tmp_path / "x")]) == 2
