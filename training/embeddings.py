"""The frozen-backbone mode: pooled embeddings computed once per backbone and data, cached on disk in memory-mapped
Arrow shards (each process of a distributed run computes its share)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from accelerate import PartialState
from datasets.arrow_writer import ArrowWriter
from transformers import TrainingArguments

from modeling import SERForSequenceClassification

from serving.files import atomic_path

EMBEDDINGS_VERSION = "3"
# Rows per cache shard (`--embedding_shard_rows`): small enough that one shard of wav2vec2-base's 13 layers (40 MB)
# is cheap to hold while it is written, large enough that a corpus of a few hundred hours is a few hundred files.
SHARD_ROWS = 1024

logger = logging.getLogger(__name__)


def backbone_fingerprint(model: SERForSequenceClassification) -> str:
    digest = hashlib.sha1()
    for name, tensor in sorted(model.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def pads_alike_inference(model: SERForSequenceClassification) -> bool:
    """Whether padded batches give the same embeddings as clips run alone.

    Group-norm feature encoders (wav2vec2-base) normalize each channel over the whole input and are given no
    attention mask, so zero padding changes every frame's features. Inference runs each clip unpadded; the
    cache must too, or the head trains on features it never sees at inference.
    """
    return getattr(model.config.backbone_config, "feat_extract_norm", "layer") != "group"


@torch.inference_mode()
def extract_embeddings(
    model: SERForSequenceClassification,
    dataset,
    collate: Callable,
    batch_size: int,
    device: torch.device,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Runs the frozen backbone once over `rows` of the data (all of them by default), in that order; batches are
    formed by length to keep padding small, and hold one clip each where padding would change the features."""
    model.eval().to(device)
    if not pads_alike_inference(model):
        batch_size = 1
    rows = np.arange(len(dataset)) if rows is None else np.asarray(rows)
    order = np.argsort(np.asarray(dataset["length"])[rows], kind="stable")
    out = np.zeros((len(rows), model.config.num_pooled_layers, model.config.pooled_size), np.float32)
    for start in tqdm(range(0, len(order), batch_size), desc="Extracting embeddings", unit="batch"):
        idx = order[start : start + batch_size]
        batch = collate([dataset[int(rows[i])] for i in idx])
        out[idx] = model.embed(batch["input_values"].to(device), batch["attention_mask"].to(device)).float().cpu().numpy()
    return out


def cached_embeddings(
    model: SERForSequenceClassification,
    features: datasets.Dataset,
    collate: Callable,
    batch_size: int,
    training_args: TrainingArguments,
    cache_dir: Path,
    shard_rows: int = SHARD_ROWS,
) -> tuple[datasets.Dataset, float]:
    """The dataset with a `pooled_embeddings` column, computed once per backbone and data (cached on disk, in
    memory-mapped shards)."""
    embeddings, elapsed = sharded_cache(
        cache_dir, "embeddings", _key(model, features), len(features), model,
        lambda rows: extract_embeddings(model, features, collate, batch_size, training_args.device, rows), shard_rows,
    )  # fmt: skip
    table = datasets.concatenate_datasets([features.remove_columns("input_values"), embeddings], axis=1)
    return table.with_format("numpy", columns=["pooled_embeddings", "label"]), elapsed


class _AugmentedView:
    """Rows of `dataset` whose `input_values` are augmented as copy `copy` (the augmenter's epoch)."""

    def __init__(self, dataset: datasets.Dataset, augmenter: Callable, copy: int):
        self.dataset, self.augmenter, self.copy = dataset, augmenter, copy
        self._length = dataset["length"]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if isinstance(index, str):  # `dataset["length"]`: augmentation keeps the length
            return self._length
        row = dict(self.dataset[int(index)])
        row["input_values"] = self.augmenter(np.asarray(row["input_values"], dtype=np.float32), int(index), self.copy)
        return row


def augmented_embeddings(
    model: SERForSequenceClassification,
    features: datasets.Dataset,
    augmenter: Callable,
    copies: int,
    collate: Callable,
    batch_size: int,
    training_args: TrainingArguments,
    cache_dir: Path,
    shard_rows: int = SHARD_ROWS,
) -> tuple[list[datasets.Dataset], float]:
    """Embeddings of `copies` augmented copies of every row of `features`, one memory-mapped dataset per copy
    (copy `c` of row `i` is the augmenter's draw for epoch `c + 1` and index `i`), each cached on disk (`features`
    are the split's training rows, whose babble comes from the same training speakers)."""
    parts, elapsed = [], 0.0
    for c in range(copies):
        view = _AugmentedView(features, augmenter, c + 1)
        sources = "-".join(str(k) for k in (augmenter.babble_key, augmenter.backgrounds_key, augmenter.rooms_key) if k)
        key = _key(model, features, f"{augmenter.config!r}-{augmenter.seed}-{sources}-copy{c + 1}")
        part, seconds = sharded_cache(
            cache_dir, "augmented", key, len(features), model,
            lambda rows, view=view: extract_embeddings(model, view, collate, batch_size, training_args.device, rows),
            shard_rows,
        )  # fmt: skip
        parts.append(part)
        elapsed += seconds
    return parts, elapsed


def _key(model: SERForSequenceClassification, features: datasets.Dataset, extra: str = "") -> str:
    text = f"{EMBEDDINGS_VERSION}-{backbone_fingerprint(model)}-{features._fingerprint}-{model.config.pooling}"
    return hashlib.sha1((text + (f"-{extra}" if extra else "")).encode()).hexdigest()[:16]


def sharded_cache(
    cache_dir: Path,
    kind: str,
    key: str,
    num_rows: int,
    model: SERForSequenceClassification,
    compute: Callable[[np.ndarray], np.ndarray],
    shard_rows: int = SHARD_ROWS,
) -> tuple[datasets.Dataset, float]:
    """Embeddings of rows `0..num_rows-1` as a memory-mapped dataset, cached in `{kind}-{key}/` as Arrow shards of
    `shard_rows` rows; seconds taken.

    Under `accelerate launch` / torchrun each process computes the missing shards whose number is its rank modulo
    the number of processes (each on its own device), then all wait and read every shard. A shard still missing
    then (machines that do not share the cache folder) is computed by the process that needs it."""
    state = PartialState()
    folder = cache_dir / f"{kind}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    count = max(1, -(-num_rows // shard_rows))
    paths = [folder / f"shard-{i:05d}-of-{count:05d}-{shard_rows}rows.arrow" for i in range(count)]
    shape = (model.config.num_pooled_layers, model.config.pooled_size)
    schema = datasets.Features({"pooled_embeddings": datasets.Array2D(shape, "float32")})

    def write(i: int) -> None:
        rows = np.arange(i * shard_rows, min((i + 1) * shard_rows, num_rows))
        embeddings = compute(rows)
        with atomic_path(paths[i]) as tmp:
            with ArrowWriter(features=schema, path=str(tmp)) as writer:
                writer.write_batch({"pooled_embeddings": list(embeddings)})
                writer.finalize()

    start = time.perf_counter()
    mine = [i for i in range(state.process_index, count, state.num_processes) if not paths[i].exists()]
    for i in mine:
        write(i)
    state.wait_for_everyone()
    missing = [i for i in range(count) if not paths[i].exists()]
    for i in missing:
        write(i)
    if mine or missing:
        logger.info("process %d computed %d of the %d %s shards (%s)", state.process_index, len(mine) + len(missing), count, kind, folder)
    table = datasets.concatenate_datasets([datasets.Dataset.from_file(str(p)) for p in paths])
    return table, time.perf_counter() - start
