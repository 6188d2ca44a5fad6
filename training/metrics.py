"""Evaluation with scikit-learn: summary scores, per-class report and the confusion matrix."""

from __future__ import annotations

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

from .files import atomic_path  # noqa: E402

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


def full_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {
        **summary_metrics(y_true, y_pred),
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
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=labels).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
