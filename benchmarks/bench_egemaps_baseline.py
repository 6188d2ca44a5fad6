"""The classical anchor: eGeMAPS functionals (openSMILE) + logistic regression, on the same speaker-disjoint folds
and data as the bundled model's recipe (RAVDESS + EmoDB, boredom dropped, 5 folds, seed 42).

    python benchmarks/bench_egemaps_baseline.py [--folds 5] [--seed 42]

Features are standardized on each fold's training speakers; the regularization strength is fixed (C=1), not
tuned on test speakers. Prints and saves the pooled and per-corpus test accuracy of each fold, mean ± std.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import DATA_DIR, save
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training.args import parse_train_args
from training.auxiliary import egemaps_functionals
from training.data import cache_root
from training.experiment import load_records
from training.metrics import full_report
from training.splits import kfold_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--num_val_actors", type=int, default=2, help="as in configs/bundled.yaml (left out of training)")
    args = parser.parse_args()
    _, data_args, _ = parse_train_args(
        ["configs/bundled.yaml", "--data_dir", str(DATA_DIR), "--emodb_dir", str(DATA_DIR.parent / "emodb16k"), "--output_dir", "unused"]
    )
    records, labels, _ = load_records(data_args)
    features = egemaps_functionals(records, cache_root(data_args.preprocessing_cache_dir))
    y = np.array([labels.index(r["label"]) for r in records])
    corpora = [r["corpus"] for r in records]
    splits = kfold_splits([r["speaker"] for r in records], [r["sex"] for r in records], corpora, args.folds, args.num_val_actors, args.seed)
    folds = []
    for split in splits:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        model.fit(np.nan_to_num(features[split.train]), y[split.train])
        report = full_report(y[split.test], model.predict(np.nan_to_num(features[split.test])), labels, [corpora[i] for i in split.test])
        folds.append({"fold": split.fold, "test_speakers": split.actors["test"], "accuracy": report["accuracy"],
                      "f1_macro": report["f1_macro"], "per_corpus": {c: m["accuracy"] for c, m in report["per_corpus"].items()}})  # fmt: skip
    summary = {
        "accuracy": [float(np.mean([f["accuracy"] for f in folds])), float(np.std([f["accuracy"] for f in folds]))],
        "f1_macro": [float(np.mean([f["f1_macro"] for f in folds])), float(np.std([f["f1_macro"] for f in folds]))],
        **{
            f"accuracy_{c}": [float(np.mean([f["per_corpus"][c] for f in folds])), float(np.std([f["per_corpus"][c] for f in folds]))]
            for c in sorted(set(corpora))
        },
    }
    save("egemaps_baseline", {"method": "eGeMAPSv02 functionals + logistic regression (C=1)", "labels": labels,
                              "mean_std": summary, "folds": folds})  # fmt: skip


if __name__ == "__main__":
    main()
