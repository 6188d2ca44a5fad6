"""The classical anchor: eGeMAPS functionals (openSMILE) + logistic regression, on the same speaker-disjoint folds
and data as the bundled model's recipe (RAVDESS + EmoDB, boredom dropped, 5 folds, seed 42).

    python benchmarks/bench_egemaps_baseline.py [--folds 5] [--seed 42]
    python benchmarks/bench_egemaps_baseline.py --leave_one_corpus_out   # train on one corpus, test on the other

Features are standardized on each fold's training speakers; the regularization strength is fixed (C=1), not
tuned on test speakers. Prints and saves the pooled and per-corpus test accuracy of each fold, mean ± std.
With --leave_one_corpus_out: the six labels both corpora share (calm, surprised and boredom dropped), trained on
all of one corpus but its validation speakers (as train.py --test_corpus draws them) and tested on the other.
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
from training.splits import corpus_split, kfold_splits

SHARED_LABELS = '{"boredom": null, "calm": null, "surprised": null}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--num_val_actors", type=int, default=2, help="as in configs/bundled.yaml (left out of training)")
    parser.add_argument("--leave_one_corpus_out", action="store_true", help="train on one corpus, test on the other")
    args = parser.parse_args()
    if args.leave_one_corpus_out:
        return leave_one_corpus_out(args)
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


def leave_one_corpus_out(args) -> None:
    _, data_args, _ = parse_train_args(
        ["configs/bundled.yaml", "--data_dir", str(DATA_DIR), "--emodb_dir", str(DATA_DIR.parent / "emodb16k"),
         "--output_dir", "unused", "--label_map", SHARED_LABELS]
    )  # fmt: skip
    records, labels, _ = load_records(data_args)
    features = np.nan_to_num(egemaps_functionals(records, cache_root(data_args.preprocessing_cache_dir)))
    y = np.array([labels.index(r["label"]) for r in records])
    speakers, sexes, corpora = [r["speaker"] for r in records], [r["sex"] for r in records], [r["corpus"] for r in records]
    out = {}
    for test_corpus in ("emodb", "ravdess"):
        split = corpus_split(speakers, sexes, corpora, test_corpus, args.num_val_actors, args.seed)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(features[split.train], y[split.train])
        report = full_report(y[split.test], model.predict(features[split.test]), labels)
        out[f"test_{test_corpus}"] = {"accuracy": report["accuracy"], "uar": report["uar"], "clips": len(split.test)}
        print(test_corpus, out[f"test_{test_corpus}"], flush=True)
    save("egemaps_loco", {"method": "eGeMAPSv02 functionals + logistic regression (C=1)", "labels": labels, **out})


if __name__ == "__main__":
    main()
