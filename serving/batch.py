"""Batch prediction over many files: decoding in worker processes, and a CSV that grows row by row.

Decoders are native code (libsndfile, FFmpeg, soxr): a damaged file can crash, hang or exhaust memory in
them. Each file is therefore decoded, checked for speech and denoised in a worker process with its own
address-space limit and a time limit (so speech detection also runs beside the model, not before it); a worker
that dies, hangs or runs out of memory costs only the file it was on, which gets an error row, and a new worker
takes over. Results are appended to the CSV (under a lock, so that several
processes of one `torchrun` or `accelerate launch` run share one file) and flushed as they are done: a
killed run loses only the files in flight, and a later run skips the files already in the CSV.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing as mp
import os
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from modeling.audio import AudioError, load_audio
from modeling.feature_extraction_ser import SERFeatureExtractor
from modeling.quality import InputQuality, assess
from modeling.speech import SpeechSegment, analyse_speech

from .files import write_text_atomic

try:
    import fcntl
except ImportError:  # Windows: one process per CSV
    fcntl = None

logger = logging.getLogger(__name__)


@dataclass
class Decoded:
    """One file after its worker: the waveform, its speech segments, its model input when it is classified in one
    pass, or the error."""

    path: str
    wave: np.ndarray | None = None
    features: np.ndarray | None = None  # None for audio longer than one window: classified in pieces
    segments: list[SpeechSegment] | None = None  # None for a model saved without speech detection
    quality: InputQuality | None = None
    error: str | None = None


class UnexpectedError(RuntimeError):
    """An error that is not the input's fault (a bug, a broken install): the run stops instead of a row."""


def _limit_memory(max_bytes: int | None) -> None:
    if not max_bytes:
        return
    try:
        import resource

        import psutil
    except ImportError:  # no address-space limits on this platform; crashes are still contained
        return
    # Above what the worker already maps (the libraries it imported), so the budget is for the audio.
    limit = psutil.Process().memory_info().vms + max_bytes
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)  # a limit the operator set already stays the ceiling
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def decode(
    path: str, feature_extractor: SERFeatureExtractor, memory_gb: float | None = None, robustness: dict | None = None
) -> Decoded:
    """Decodes and prepares one file: speech segments, input-quality report (worded with the model's `robustness`
    figures) and, for a clip of one pass, the model input. The input's own faults (no speech included) become
    `Decoded.error`; anything else raises."""
    try:
        wave = load_audio(path, feature_extractor.sampling_rate)
        segments = quality = None
        if feature_extractor.speech_detection:
            segments, probs = analyse_speech(wave, feature_extractor.sampling_rate, os.path.basename(path))
            quality = assess(wave, probs, robustness, feature_extractor.sampling_rate)
        features = feature_extractor.process_waveform(wave) if feature_extractor.is_one_pass(len(wave)) else None
        return Decoded(path, wave, features, segments, quality)
    except AudioError as err:
        return Decoded(path, error=str(err))
    except MemoryError:
        limit = f" (the limit is {memory_gb:g} GB per decoder process)" if memory_gb else ""
        return Decoded(path, error=f"{os.path.basename(path)}: ran out of memory while decoding{limit}")


def _worker(conn, feature_extractor: SERFeatureExtractor, memory_gb: float | None, robustness, parent: int) -> None:
    import torch

    # As torch's DataLoader workers do: a forked process runs torch on one thread (the parent's thread pool does not
    # survive a fork, and the workers share the cores with it).
    torch.set_num_threads(1)
    _limit_memory(int(memory_gb * 2**30) if memory_gb else None)
    while True:
        # A forked worker holds copies of its siblings' pipes, so a killed parent does not always show as EOF.
        while not conn.poll(1.0):
            if os.getppid() != parent:
                return
        try:
            path = conn.recv()
        except EOFError:  # the parent is gone
            return
        if path is None:
            return
        try:
            result = decode(path, feature_extractor, memory_gb, robustness)
        except Exception:
            conn.send(("unexpected", path, traceback.format_exc()))
            continue
        conn.send(("done", result))


class _Worker:
    def __init__(self, context, feature_extractor, memory_gb, robustness):
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_worker, args=(child, feature_extractor, memory_gb, robustness, os.getpid()), daemon=True,
            name="ser-decoder",
        )  # fmt: skip
        self.process.start()
        child.close()
        self.sent: deque[str] = deque()  # paths sent and not answered, in the order the worker takes them
        self.since = time.monotonic()  # when the worker started on sent[0]

    def send(self, path: str) -> None:
        if not self.sent:
            self.since = time.monotonic()
        self.sent.append(path)
        try:
            self.conn.send(path)
        except OSError:  # the worker is gone: its sentinel reports it, and the path gets its row from there
            pass

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.process.join(timeout=None if kill else 5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _death(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        import signal

        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit code {code}"


class DecoderPool:
    """Decodes files in `workers` processes and yields `Decoded` results in the order they finish.

    Args:
        feature_extractor: prepares each file (decode, mono, resample, checks, denoise, normalize).
        workers: decoder processes.
        timeout_s: a file that takes longer is given up (its worker is killed) and gets an error row.
        memory_gb: address space each worker may add to what it maps at start; `None` for no limit.
        prefetch: files queued per worker, so that workers keep decoding while the model runs.
        robustness: the model's measured accuracy per condition, which words the input-quality notes.
    """

    def __init__(
        self,
        feature_extractor: SERFeatureExtractor,
        workers: int = 2,
        timeout_s: float = 600.0,
        memory_gb: float | None = 8.0,
        prefetch: int = 2,
        robustness: dict | None = None,
    ):
        if workers < 1 or prefetch < 1 or not timeout_s > 0:
            raise ValueError(f"need workers >= 1, prefetch >= 1 and timeout_s > 0, got {workers}, {prefetch}, {timeout_s}")
        self.feature_extractor = feature_extractor
        self.timeout_s = timeout_s
        self.memory_gb = memory_gb
        self.prefetch = prefetch
        self.robustness = robustness
        # Forked, as torch's DataLoader workers are: instant to (re)start. The workers run only small CPU models on
        # one thread (Silero VAD), never CUDA, whose context does not survive a fork. Where fork does not exist, a
        # fresh interpreter.
        self._context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self._size = workers
        self._workers: list[_Worker] = []

    def _start(self) -> _Worker:
        return _Worker(self._context, self.feature_extractor, self.memory_gb, self.robustness)

    def _replace(self, worker: _Worker, error: str, pending: deque[str]) -> Decoded:
        """Gives up the file the worker was on, requeues the ones behind it and starts a new worker."""
        worker.stop(kill=True)
        failed = worker.sent.popleft()
        pending.extendleft(reversed(worker.sent))
        self._workers[self._workers.index(worker)] = self._start()
        return Decoded(failed, error=f"{os.path.basename(failed)}: {error}")

    def map(self, paths: Iterable[str]) -> Iterator[Decoded]:
        pending = deque(paths)
        while pending and len(self._workers) < self._size:
            self._workers.append(self._start())
        while True:
            for worker in self._workers:
                while pending and len(worker.sent) < self.prefetch:
                    worker.send(pending.popleft())
            busy = [w for w in self._workers if w.sent]
            if not busy:
                return
            deadline = min(w.since for w in busy) + self.timeout_s
            wait(
                [w.conn for w in busy] + [w.process.sentinel for w in busy],
                timeout=max(0.0, deadline - time.monotonic()),
            )
            # Every worker is judged now, before anything is yielded: the caller runs the model between two
            # results, and a worker must not be timed out for the time its finished result waited in the pipe.
            done: list[Decoded] = []
            for worker in busy:
                if worker.conn.poll():
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):
                        worker.process.join(timeout=5)
                        done.append(self._replace(worker, f"the decoder process died ({_death(worker.process)})", pending))
                        continue
                    if message[0] == "unexpected":
                        raise UnexpectedError(f"unexpected error while decoding {message[1]}:\n{message[2]}")
                    worker.sent.popleft()
                    worker.since = time.monotonic()
                    done.append(message[1])
                elif not worker.process.is_alive():
                    worker.process.join(timeout=5)
                    done.append(self._replace(worker, f"the decoder process died ({_death(worker.process)})", pending))
                elif time.monotonic() - worker.since > self.timeout_s:
                    done.append(
                        self._replace(
                            worker, f"decoding took longer than {self.timeout_s:g} s; the decoder process was stopped", pending
                        )
                    )
            yield from done

    def close(self) -> None:
        for worker in self._workers:
            worker.stop(kill=not worker.process.is_alive())

    def __enter__(self) -> DecoderPool:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:  # stopping a run: in-flight files are lost anyway, so do not wait for them
            for worker in self._workers:
                worker.stop(kill=True)


def _append_locked(path: Path, text: str) -> None:
    with open(path, "a", newline="", encoding="utf-8") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)  # one writer at a time: lines of several processes never interleave
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class TimelineJSONL:
    """One JSON line per classified piece of each file (`path`, `start_s`, `end_s`, `label`, `scores`), written
    before the file's CSV row, so that a file classified with the timeline on has its whole timeline (files already
    in the CSV when a run first asks for a timeline have none)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def repair(self, done: set[str]) -> None:
        """Before a run (main process only): drops the lines of files that have no CSV row (a killed run's, or
        failed rows being retried), which will be written again."""
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            return
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        keep = []
        for line in lines:
            try:
                if line.endswith("\n") and json.loads(line)["path"] in done:
                    keep.append(line)
            except (ValueError, KeyError):
                pass  # a line cut short by a kill
        if len(keep) != len(lines):
            write_text_atomic(self.path, "".join(keep))

    def append(self, path: str, pieces: list[dict]) -> None:
        """The pieces of one file, as `Prediction.timeline()` gives them."""
        lines = [json.dumps({"path": path, **piece}) for piece in pieces]
        if lines:
            _append_locked(self.path, "\n".join(lines) + "\n")


class ResultsCSV:
    """A CSV of results that grows by whole rows: appended under an exclusive lock, flushed and synced. The lock
    (`flock`) holds between the processes of one machine; on a filesystem shared by several machines, give each
    machine its own CSV."""

    def __init__(self, path: str | os.PathLike, header: list[str]):
        self.path = Path(path)
        self.header = header

    def repair(self, retry_errors: bool = False) -> None:
        """Before a run (main process only): creates the file with its header, or checks the header of an
        existing one, drops a last row cut short by a killed run, and with `retry_errors` drops error rows."""
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write(self.header, [])
            return
        text = self.path.read_text(encoding="utf-8")
        keep = text if text.endswith("\n") or not text else text[: text.rfind("\n") + 1]
        if keep != text:
            logger.warning("%s: its last row was cut short by an interrupted run; that file is redone", self.path)
        rows = list(csv.DictReader(io.StringIO(keep)))
        fields = next(csv.reader(io.StringIO(keep)), None)
        missing = [f for f in self.header if f not in (fields or [])]
        if fields and fields != self.header and [f for f in self.header if f not in missing] == fields:
            raise SystemExit(
                f"{self.path} was written by an earlier predict.py, without the columns {missing}: give another --out "
                "for a new CSV (or add the columns to the file)"
            )
        if fields and fields != self.header:
            raise SystemExit(
                f"{self.path} has the columns {fields}, but this run's are {self.header}: it was written by "
                "another model (or with other --labels); give another --out to start a new CSV"
            )
        if retry_errors and any(r["error"] for r in rows):
            self._write(self.header, [r for r in rows if not r["error"]])
        elif keep != text or not fields:
            self._write(self.header, rows)

    def _write(self, header: list[str], rows: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.path, buffer.getvalue())

    def rows(self) -> list[dict]:
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        buffer = io.StringIO()
        csv.DictWriter(buffer, fieldnames=self.header).writerows(rows)
        _append_locked(self.path, buffer.getvalue())
