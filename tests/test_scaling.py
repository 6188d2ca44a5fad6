"""The data path's memory does not grow with the corpus: a Hub/parquet dataset stays in its memory-mapped Arrow
files, and records point at its rows instead of holding their audio."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

# Loads the records of a parquet dataset in a fresh process and prints the peak of its anonymous resident memory
# (what has to fit in RAM; pages of the memory-mapped Arrow files are the page cache's, reclaimable) above the
# baseline after imports.
MEASURE = """
import json, sys, threading, time
sys.path.insert(0, {repo!r})
from training.sources import load_hub_records
from training.data import drop_duplicates

def anon_kb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

peak, done = [anon_kb()], threading.Event()
def sample():
    while not done.is_set():
        peak.append(anon_kb())
        time.sleep(0.005)
base = anon_kb()
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
records, _ = load_hub_records({path!r}, None, "train", "audio", "label", "actor", cache_dir={cache!r})
records, _ = drop_duplicates(records)
done.set(); sampler.join()
print(json.dumps({{"clips": len(records), "peak_mb": (max(peak) - base) / 1024}}))
"""


def write_parquet(root, clips, copies: int) -> None:
    """A parquet dataset of `copies` x `clips`, each copy's bytes made unique (so the duplicate check keeps it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    for c in range(copies):
        rows = [
            {"audio": {"bytes": path.read_bytes() + bytes([c % 256, c // 256]), "path": f"{c}-{path.name}"},
             "label": path.name.split("-")[2], "actor": path.parent.name}
            for path in clips
        ]  # fmt: skip
        pq.write_table(pa.Table.from_pylist(rows), root / f"train-{c:05d}.parquet")


def peak_mb(path, cache) -> tuple[int, float]:
    script = MEASURE.format(repo=str(REPO), path=str(path), cache=str(cache))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["clips"], result["peak_mb"]


@pytest.mark.slow
def test_loading_a_parquet_dataset_does_not_grow_with_its_size(data_dir, tmp_path):
    # Both sizes above the 1,000 rows `datasets` writes to its Arrow cache at a time, whose buffer bounds the peak.
    clips = sorted(data_dir.glob("Actor_0[1-4]/*.flac"))  # 240 clips, 8.6 MB of FLAC
    write_parquet(tmp_path / "small", clips, copies=5)  # 1,200 clips, 43 MB
    write_parquet(tmp_path / "large", clips, copies=20)  # 4,800 clips, 172 MB
    small_clips, small = peak_mb(tmp_path / "small", tmp_path / "cache")
    large_clips, large = peak_mb(tmp_path / "large", tmp_path / "cache")
    assert (small_clips, large_clips) == (1200, 4800)
    # Holding every clip's bytes in the records, as before, added about 1.6x the encoded size: 200 MB more here.
    assert large < small * 1.25, (small, large)


def launch(*args: str, cwd=REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    """`accelerate launch` of a script; torch.distributed processes over gloo on the CPU (accelerate 1.x runs
    `--cpu --num_processes N` as one process unless MPI is set up, so the --multi_gpu launcher with --use_cpu)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def decoded_by(log: str) -> tuple[int, int, int]:
    """How many processes decoded the clips as the run's first process, read them from its cache, or decoded them
    again themselves."""
    return log.count("decoded, denoised and normalized"), log.count("read from the cache"), log.count("clips itself")


@pytest.mark.slow
def test_two_machines_preprocess_once_and_share_the_embedding_cache(tmp_path, data_dir):
    """Two local "machines" of one process each, started as multi-node `accelerate launch` commands: the first
    machine's process decodes the clips, the other reads its cache, and each computes its share of the frozen
    backbone's embedding shards. (One machine with two processes runs the same code: this run stands for both.)"""
    out, cache = tmp_path / "run", tmp_path / "cache"
    port = str(29500 + os.getpid() % 1000)
    train_args = [
        "train.py", "--model_name_or_path", "ge2e", "--pooling", "mean_std", "--freeze_backbone", "true",
        "--augment", "true", "--augment_copies", "1", "--data_dir", str(data_dir), "--max_clips", "96",
        "--embedding_shard_rows", "16", "--num_train_epochs", "2", "--per_device_train_batch_size", "8",
        "--eval_strategy", "epoch", "--save_strategy", "no", "--report_to", "none", "--output_dir", str(out),
        "--preprocessing_cache_dir", str(cache), "--use_cpu", "true",
    ]  # fmt: skip
    machines = [
        subprocess.Popen(
            [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--mixed_precision", "no",
             "--dynamo_backend", "no", "--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank),
             "--main_process_ip", "127.0.0.1", "--main_process_port", port, *train_args],
            cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    logs = [m.communicate(timeout=600)[0] for m in machines]
    assert [m.returncode for m in machines] == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert decoded_by(logs[0]) == (1, 0, 0) and decoded_by(logs[1]) == (0, 1, 0), logs
    results = json.loads((out / "all_results.json").read_text())
    # The suite's one multi-process training run: two torch.distributed processes train one model.
    assert results["training"]["world_size"] == 2
    assert results["training"]["batch_size"] == 2 * 8  # per-device batch times processes
    assert (out / "model.safetensors").exists() and (out / "README.md").exists()
    # Every clip's embedding and one augmented copy of every training clip, in shards of 16 rows.
    for rank, log in enumerate(logs):  # each machine's process computed its share of every cache
        assert f"process {rank} computed 3 of the 6 embeddings shards" in log, log[-3000:]
        assert f"process {rank} computed" in log.split("embeddings shards")[-1] and "augmented shards" in log, log[-3000:]
    shards = sorted(p.parent.name.split("-")[0] for p in cache.glob("*/shard-*.arrow"))
    assert shards.count("embeddings") == -(-results["data"]["clips"] // 16), shards
    assert shards.count("augmented") == -(-results["split"]["sizes"]["train"] // 16), shards


@pytest.mark.slow
def test_evaluate_under_two_processes_preprocesses_once_and_gives_the_same_results(tmp_path, data_dir, preprocessing_cache):
    import evaluate
    from conftest import BUNDLED

    common = ["--model_name_or_path", str(BUNDLED), "--data_dir", str(data_dir), "--max_clips", "64"]
    evaluate.main([*common, "--use_cpu", "true", "--preprocessing_cache_dir", preprocessing_cache, "--output_dir", str(tmp_path / "one")])
    two = launch("--num_processes", "2", "--num_machines", "1", "evaluate.py", *common, "--use_cpu", "true",
                 "--preprocessing_cache_dir", str(tmp_path / "c2"), "--output_dir", str(tmp_path / "two"))  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert decoded_by(two.stderr) == (1, 1, 0), two.stderr[-3000:]
    one, both = (json.loads((tmp_path / name / "eval_results.json").read_text()) for name in ("one", "two"))
    assert both["data"]["clips"] == one["data"]["clips"] == 64
    assert both["confusion_matrix"] == one["confusion_matrix"] and both["accuracy"] == one["accuracy"]
    assert two.stdout.count("# Evaluation of") == 1  # one table, from the first process


def write_corpus(root, data_dir, sex_column: bool) -> None:
    """RAVDESS actors 05-10 (07 has RAVDESS's one byte-identical pair), four labels, as a local parquet dataset in
    two files (as a Hub dataset is stored)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    clips = [p for p in sorted(data_dir.glob("Actor_*/*.flac")) if 5 <= int(p.parent.name[-2:]) <= 10 and p.name.split("-")[2] in ("01", "03", "04", "05")]
    rows = [
        {"audio": {"bytes": p.read_bytes(), "path": p.name}, "label": p.name.split("-")[2], "actor": p.parent.name,
         **({"sex": "male" if int(p.parent.name[-2:]) % 2 else "female"} if sex_column else {})}
        for p in clips
    ]  # fmt: skip
    root.mkdir(parents=True)
    for k in range(2):
        pq.write_table(pa.Table.from_pylist(rows[k::2]), root / f"train-{k:05d}.parquet")


@pytest.mark.slow
def test_streaming_draws_the_map_style_split_and_streams_only_training_speakers(tmp_path, data_dir):
    from collections import Counter

    from modeling import SERFeatureExtractor
    from training.args import parse_train_args
    from training.data import preprocess
    from training.experiment import load_records, make_splits
    from training.streaming import prepare_streaming

    write_corpus(tmp_path / "corpus", data_dir, sex_column=True)
    flags = ["--dataset_name", str(tmp_path / "corpus"), "--actor_column_name", "actor", "--sex_column_name", "sex",
             "--num_test_actors", "2", "--num_val_actors", "2", "--label_map", '{"01": "neutral", "05": null}',
             "--output_dir", str(tmp_path / "unused"), "--preprocessing_cache_dir", str(tmp_path / "cache")]  # fmt: skip
    _, data_args, _ = parse_train_args(flags)
    fe = SERFeatureExtractor()
    records, labels, _ = load_records(data_args)
    features, _ = preprocess(records, fe, {label: i for i, label in enumerate(labels)}, data_args.preprocessing_cache_dir)
    mapped = make_splits(features, data_args, seed=42)[0]

    _, data_args, _ = parse_train_args([*flags, "--streaming", "true", "--max_steps", "5"])
    streamed = prepare_streaming(data_args, fe, 42, make_splits)
    assert streamed.labels == labels == ["03", "04", "neutral"]
    assert streamed.split.actors == mapped.actors
    for part in ("validation", "test"):
        assert sorted(streamed.features.select(getattr(streamed.split, part))["path"]) == sorted(features.select(getattr(mapped, part))["path"])
    # The training stream holds the training speakers' clips, each once per pass: the same labels as the
    # map-style training part (which dropped RAVDESS's one byte-identical pair, of actor 07).
    streamed_labels = Counter(int(row["label"]) for row in streamed.train)
    mapped_labels = Counter(features.select(mapped.train)["label"])
    duplicates = int("ravdess:07" in mapped.actors["train"] or "corpus:Actor_07" in mapped.actors["train"])
    assert sum(streamed_labels.values()) == len(mapped.train) + duplicates
    assert streamed_labels - mapped_labels <= Counter({labels.index("03"): duplicates})
    # A second pass (the next epoch) is reshuffled.
    first = [float(row["input_values"][100]) for _, row in zip(range(8), streamed.train)]
    streamed.train.set_epoch(1)
    assert first != [float(row["input_values"][100]) for _, row in zip(range(8), streamed.train)]
    # Another label map on the same cache: the stored held-out rows follow it (label "05" is kept this time).
    relabelled = [{'{"01": "neutral", "05": null}': '{"01": "neutral"}'}.get(flag, flag) for flag in flags]
    _, data_args, _ = parse_train_args([*relabelled, "--streaming", "true", "--max_steps", "5"])
    again = prepare_streaming(data_args, fe, 42, make_splits)
    assert again.labels == ["03", "04", "05", "neutral"]
    assert len(again.features) > len(streamed.features) and "05" in {again.labels[y] for y in again.features["label"]}


@pytest.mark.slow
def test_train_py_streaming_run(tmp_path, data_dir):
    """A real `Trainer` run of `--max_steps` steps on a streamed local dataset (speakers and sexes from RAVDESS
    file names: the rows are read whole once for them), and the flags streaming cannot take."""
    from conftest import tiny_backbone

    write_corpus(tmp_path / "corpus", data_dir, sex_column=False)
    import train
    from training.args import ArgumentsError

    out = tmp_path / "run"
    args = [
        "--backbone_config", json.dumps(tiny_backbone()), "--dataset_name", str(tmp_path / "corpus"),
        "--actor_column_name", "actor", "--streaming", "true", "--max_steps", "6", "--per_device_train_batch_size", "8",
        "--num_test_actors", "2", "--num_val_actors", "2", "--eval_strategy", "no", "--save_strategy", "no",
        "--report_to", "none", "--output_dir", str(out), "--preprocessing_cache_dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    train.main(args)
    results = json.loads((out / "all_results.json").read_text())
    assert results["data"]["streaming"] and results["split"]["speakers_overlap"] is False
    assert results["data"]["clips"] == 6 * 28 and results["test"]["clips"] == 2 * 28  # 28 clips of 4 labels per actor
    assert (out / "model.safetensors").exists() and "streamed" in (out / "README.md").read_text()
    # Refused before any data is read (train.py turns an ArgumentsError into one line and exit code 2, as
    # test_sources checks through the command line).
    for flags, message in ((["--max_steps", "-1"], "give --max_steps"), (["--augment", "true"], "not available with --streaming")):
        with pytest.raises(ArgumentsError, match=message):
            train.main([*args, *flags])


@pytest.mark.slow
def test_sharded_embedding_cache_keeps_the_results_on_ravdess_and_emodb(tmp_path, data_dir):
    """The frozen mode on RAVDESS + EmoDB, its embeddings cached whole or in shards of 16 clips: the same split and
    the same validation, test and speaker-adaptation figures. Both runs share one cache folder: the decoded clips
    are reused, while the embeddings of each shard size are files of their own."""
    import train

    emodb = data_dir.parent / "emodb16k"
    common = [
        "--model_name_or_path", "ge2e", "--pooling", "mean_std", "--speaker_adaptation", "true",
        "--augment", "true", "--augment_conditions", "true", "--augment_copies", "1", "--data_dir", str(data_dir),
        "--augment_backgrounds", str(REPO / ".cache" / "sounds" / "lincity-ng" / "training"), "--emodb_dir", str(emodb), "--label_map", '{"boredom": null}', "--max_clips", "120", "--num_train_epochs", "2",
        "--per_device_train_batch_size", "32", "--learning_rate", "0.001", "--eval_strategy", "epoch",
        "--save_strategy", "no", "--report_to", "none", "--preprocessing_cache_dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    runs = {rows: train.main([*common, "--embedding_shard_rows", rows, "--output_dir", str(tmp_path / f"shards-{rows}")]) for rows in ("4096", "16")}
    whole, sharded = runs["4096"], runs["16"]
    assert len(list((tmp_path / "cache").glob("embeddings-*/shard-*-16rows.arrow"))) == -(-whole["data"]["clips"] // 16)
    assert whole["data"]["corpora"] == ["ravdess", "emodb"]
    for key in ("split", "validation", "test", "adaptation"):
        assert sharded[key] == whole[key], key
