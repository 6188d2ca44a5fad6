"""The data path's memory does not grow with the corpus: a Hub/parquet dataset stays in its memory-mapped Arrow
files, and records point at its rows instead of holding their audio."""

import json
import subprocess
import sys

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
