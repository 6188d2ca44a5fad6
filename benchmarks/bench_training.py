"""Training with a frozen backbone: cached pooled embeddings vs running the backbone every epoch.

    python benchmarks/bench_training.py [--clips 64] [--epochs 20]

Both train the same head with AdamW on the same real clips and a wav2vec2-base-sized backbone. "live" runs
the frozen backbone in every epoch (no gradients through it); "cached" runs it once, then trains the head on
the stored embeddings, as `train.py --freeze_backbone` does. Time per epoch is measured over two epochs; the
20-epoch totals are measured for cached and computed for live from its per-epoch time (identical epochs).
"""

from __future__ import annotations

import argparse
import time

import torch
from common import BASE_BACKBONE, DATA_DIR, save

from modeling import SERConfig, SERFeatureExtractor, SERForSequenceClassification, load_audio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SERForSequenceClassification(SERConfig(backbone_config=BASE_BACKBONE, freeze_backbone=True))
    fe = SERFeatureExtractor()
    paths = sorted(DATA_DIR.glob("Actor_*/*.flac"))[:: max(1, 1200 // args.clips)][: args.clips]
    waves = [fe.process_waveform(load_audio(p)) for p in paths]
    labels = torch.randint(0, 8, (len(waves),))
    batches = [
        (fe.collate(waves[i : i + args.batch_size], return_tensors="pt"), labels[i : i + args.batch_size])
        for i in range(0, len(waves), args.batch_size)
    ]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)

    def step(loss):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def live_epoch():
        model.train()
        for inputs, y in batches:
            step(model(**inputs, labels=y).loss)

    def embed():
        model.eval()
        with torch.no_grad():  # not inference_mode: its tensors cannot enter autograd later
            return [model.embed(**inputs) for inputs, _ in batches]

    def cached_epoch(cache):
        model.train()
        for pooled, (_, y) in zip(cache, batches):
            step(model(pooled_embeddings=pooled, labels=y).loss)

    start = time.perf_counter()
    for _ in range(2):
        live_epoch()
    live_per_epoch = (time.perf_counter() - start) / 2

    start = time.perf_counter()
    cache = embed()
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.epochs):
        cached_epoch(cache)
    cached_epochs_s = time.perf_counter() - start
    cached_per_epoch = cached_epochs_s / args.epochs
    live_total = live_per_epoch * args.epochs
    cached_total = embed_s + cached_epochs_s
    save(
        "training",
        {
            "clips": len(waves),
            "epochs": args.epochs,
            "live_backbone_s_per_epoch": round(live_per_epoch, 3),
            "cached_s_per_epoch": round(cached_per_epoch, 5),
            "embedding_extraction_s": round(embed_s, 3),
            "per_epoch_speedup": round(live_per_epoch / cached_per_epoch, 1),
            f"live_{args.epochs}_epochs_s": round(live_total, 2),
            f"cached_{args.epochs}_epochs_s_including_extraction": round(cached_total, 2),
            f"speedup_{args.epochs}_epochs": round(live_total / cached_total, 2),
        },
    )


if __name__ == "__main__":
    main()
