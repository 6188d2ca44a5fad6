"""The frozen-backbone mode: pooled embeddings computed once per backbone and data, cached on disk."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import TrainingArguments

from modeling import SERForSequenceClassification

from serving.files import atomic_path

EMBEDDINGS_VERSION = "2"


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
    model: SERForSequenceClassification, dataset: datasets.Dataset, collate: Callable, batch_size: int, device: torch.device
) -> np.ndarray:
    """Runs the frozen backbone once over the data; batches are formed by length to keep padding small, and
    hold one clip each where padding would change the features."""
    model.eval().to(device)
    if not pads_alike_inference(model):
        batch_size = 1
    order = np.argsort(dataset["length"])
    out = np.zeros((len(dataset), model.config.num_pooled_layers, model.config.pooled_size), np.float32)
    for start in tqdm(range(0, len(order), batch_size), desc="Extracting embeddings", unit="batch"):
        idx = order[start : start + batch_size]
        batch = collate([dataset[int(i)] for i in idx])
        out[idx] = model.embed(batch["input_values"].to(device), batch["attention_mask"].to(device)).float().cpu().numpy()
    return out


def cached_embeddings(
    model: SERForSequenceClassification,
    features: datasets.Dataset,
    collate: Callable,
    batch_size: int,
    training_args: TrainingArguments,
    cache_dir: Path,
) -> tuple[datasets.Dataset, float]:
    """The dataset with a `pooled_embeddings` column, computed once per backbone and data (cached on disk)."""
    embeddings, elapsed = _cached(
        cache_dir, "embeddings", _key(model, features), training_args,
        lambda: extract_embeddings(model, features, collate, batch_size, training_args.device),
    )  # fmt: skip
    column = datasets.Dataset.from_dict(
        {"pooled_embeddings": embeddings},
        features=datasets.Features({"pooled_embeddings": datasets.Array2D(embeddings.shape[1:], "float32")}),
    )
    table = datasets.concatenate_datasets([features.remove_columns("input_values"), column], axis=1)
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
) -> tuple[np.ndarray, float]:
    """`(copies, rows, num_pooled_layers, pooled_size)` embeddings of augmented copies of every row of `features`
    (copy `c` of row `i` is the augmenter's draw for epoch `c + 1` and index `i`), cached on disk (`features` are
    the split's training rows, whose babble comes from the same training speakers)."""
    key = _key(model, features, f"{augmenter.config!r}-{augmenter.seed}-{augmenter.babble_key}-{copies}")
    return _cached(
        cache_dir, "augmented", key, training_args,
        lambda: np.stack([
            extract_embeddings(model, _AugmentedView(features, augmenter, c + 1), collate, batch_size, training_args.device)
            for c in range(copies)
        ]),
    )  # fmt: skip


def _key(model: SERForSequenceClassification, features: datasets.Dataset, extra: str = "") -> str:
    text = f"{EMBEDDINGS_VERSION}-{backbone_fingerprint(model)}-{features._fingerprint}-{model.config.pooling}"
    return hashlib.sha1((text + (f"-{extra}" if extra else "")).encode()).hexdigest()[:16]


def _cached(cache_dir: Path, kind: str, key: str, training_args: TrainingArguments, compute: Callable) -> tuple[np.ndarray, float]:
    """The array cached as `{kind}-{key}.npy`, computed (by the main process first) when it is not there; seconds taken."""
    path = cache_dir / f"{kind}-{key}.npy"
    start = time.perf_counter()
    with training_args.main_process_first(desc=kind):
        if path.exists():
            embeddings = np.load(path)
        else:
            embeddings = compute()
            with atomic_path(path) as tmp:
                np.save(tmp, embeddings)
    return embeddings, time.perf_counter() - start
