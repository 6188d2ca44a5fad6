"""Evaluation with scikit-learn: summary scores, per-class report and the confusion matrix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from serving.files import atomic_path  # noqa: E402

SUMMARY_METRICS = ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "uar")


def summary_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy, F1 (macro/micro/weighted) and unweighted average recall (macro recall, the SER convention)."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "f1_micro": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "uar": float(balanced_accuracy_score(y_true, y_pred)),
    }


def compute_metrics(eval_pred) -> dict[str, float]:
    """`Trainer`'s `compute_metrics`."""
    logits, labels = eval_pred
    return summary_metrics(labels, np.argmax(logits, axis=-1))


def corpus_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1 and UAR over the labels this corpus has (a corpus without 'calm' is not scored on it)."""
    present = sorted(set(np.asarray(y_true).tolist()))
    return {
        "clips": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "uar": float(balanced_accuracy_score(y_true, y_pred)),
        "majority_rate": float(np.bincount(y_true).max() / len(y_true)),
    }


def full_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], corpora: list[str] | None = None) -> dict:
    """Summary scores, per-class report, confusion matrix, the majority-class rate and, with `corpora` (the corpus
    of each clip), the scores of each corpus."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ids = list(range(len(labels)))
    per_corpus = {}
    if corpora is not None:
        corpora = np.asarray(corpora)
        for corpus in sorted(set(corpora.tolist())):
            rows = corpora == corpus
            per_corpus[corpus] = corpus_metrics(y_true[rows], y_pred[rows])
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {
        **summary_metrics(y_true, y_pred),
        "clips": int(len(y_true)),
        "majority_rate": float(np.bincount(y_true, minlength=len(labels)).max() / max(len(y_true), 1)),
        "per_corpus": per_corpus,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": {
            "labels": labels,
            "rows_are": "true label",
            "matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        },
    }


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: str | Path, title: str) -> None:
    size = max(6.0, 0.6 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9), dpi=120)
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=labels).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set_title(textwrap.fill(title, 80), fontsize=8)  # a long split summary wraps instead of being cut off
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight", pad_inches=0.15)  # the image grows to hold every text, never cuts it
    plt.close(fig)
