"""Load on the demo: N concurrent gradio_client clients for T seconds against a server started on loopback.

    python benchmarks/bench_load.py [--clients 16] [--seconds 60]

Starts `app.py` on a free 127.0.0.1 port, has every client send real example clips back to back until the
time is up (a bounded run: it stops by itself), and reports requests, errors, p50/p95 latency and the
server's RSS: peak, the median of each tenth of the run, and the growth after warm-up (the first quarter):
median RSS of the last quarter minus that of the second. Medians, because two predictions in flight at any
moment make RSS swing by tens of MB. First, the same predictions run in this process without a server, to
tell the model path's memory from the server's.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import psutil
from common import BUNDLED, REPO, save
from gradio_client import Client, handle_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_path_rss(predictions: int) -> dict:
    """RSS of this process over consecutive predictions without the server: does the model path grow?"""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from modeling import load_audio, predict_long

    model = AutoModelForAudioClassification.from_pretrained(BUNDLED).eval()
    fe = AutoFeatureExtractor.from_pretrained(BUNDLED)
    examples = sorted((REPO / "examples").glob("*.flac"))
    me, samples = psutil.Process(), {}
    for i in range(predictions):
        predict_long(model, fe, load_audio(examples[i % len(examples)]), window_s=5.0, hop_s=2.5)
        if (i + 1) % (predictions // 4) == 0:
            samples[i + 1] = round(me.memory_info().rss / 2**20, 1)
    return {"predictions": predictions, "rss_mb_after": samples}


def rss_summary(rss: list[tuple[float, int]], start: float, seconds: float, requests_at) -> dict:
    """Peak, median per tenth of the run, and growth after warm-up, from (time, bytes) samples."""

    def median_mb(lo: float, hi: float) -> float | None:
        window = [r for t, r in rss if start + lo * seconds <= t < start + hi * seconds]
        return round(statistics.median(window) / 2**20, 1) if window else None

    second, last = median_mb(0.25, 0.5), median_mb(0.75, 1.0)
    requests_between = requests_at(start + 0.875 * seconds) - requests_at(start + 0.375 * seconds)
    return {
        "server_peak_rss_mb": round(max(r for _, r in rss) / 2**20, 1),
        "server_rss_median_mb_per_tenth": [median_mb(i / 10, (i + 1) / 10) for i in range(10)],
        "server_rss_second_quarter_median_mb": second,
        "server_rss_last_quarter_median_mb": last,
        "growth_after_warmup_mb": round(last - second, 1),
        # the quarters' midpoints are half a run apart
        "growth_after_warmup_kb_per_request": round((last - second) * 1024 / max(requests_between, 1), 2),
    }


def run_load(args) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        proc = psutil.Process(server.pid)
        examples = sorted(str(p) for p in (REPO / "examples").glob("*.flac"))
        latencies, errors, lock = [], [], threading.Lock()
        done_at = []  # completion time of every request, successful or not
        rss = []
        stop_at = time.time() + args.seconds

        def client_loop(i: int) -> None:
            client = Client(url, verbose=False)
            k = i
            while time.time() < stop_at:
                start = time.perf_counter()
                try:
                    client.predict(handle_file(examples[k % len(examples)]), api_name="/predict")
                    with lock:
                        latencies.append(time.perf_counter() - start)
                except Exception as err:  # every failure counts; the run goes on
                    with lock:
                        errors.append(repr(err)[:200])
                with lock:
                    done_at.append(time.time())
                k += 1

        def sample_rss() -> None:
            while time.time() < stop_at:
                rss.append((time.time(), sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])))
                time.sleep(0.5)

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
        threads.append(threading.Thread(target=sample_rss))
        start = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.seconds + 120)
        elapsed = time.time() - start
        latencies.sort()
        return {
            "seconds": round(elapsed, 1),
            "requests": len(latencies) + len(errors),
            "errors": len(errors),
            "error_samples": errors[:5],
            "requests_per_s": round(len(latencies) / elapsed, 2),
            "p50_latency_s": round(statistics.median(latencies), 3) if latencies else None,
            "p95_latency_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
            **rss_summary(rss, start, args.seconds, lambda t: sum(d <= t for d in done_at)),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--in_process", type=int, default=600, help="predictions for the model-path memory check")
    args = parser.parse_args()
    if args.seconds < 10:
        parser.error("--seconds must be at least 10 (memory is compared between quarters of the run)")
    in_process = model_path_rss(args.in_process) if args.in_process else None
    save(
        f"load_{args.clients}clients_{args.seconds:g}s",
        {"clients": args.clients, **run_load(args), "model_path_without_server": in_process},
    )


if __name__ == "__main__":
    main()
