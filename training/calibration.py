"""Calibrated confidence by temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks").

One scalar T divides the logits; it is fitted on the validation split by minimizing the negative log-likelihood,
so the predicted label (and accuracy) never changes while the probabilities come to match how often the model is
right. The expected calibration error (ECE, 15 equal-width confidence bins) is reported before and after, on the
validation split it was fitted on and on the held-out test speakers, which it never saw.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

logger = logging.getLogger(__name__)

ECE_BINS = 15
# A temperature outside this range means the validation part says little (all right, or all wrong): it would make
# the model wildly over- or under-confident, so the fit is clamped to it.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
# Fewer validation clips than this fit noise rather than the model's confidence.
MIN_CLIPS = 20


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float64) / temperature, dim=-1).numpy()


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimizes the cross-entropy of `softmax(logits / T)` on `labels`."""
    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # T = exp(log_t) stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.clip(log_t.detach().exp().item(), MIN_TEMPERATURE, MAX_TEMPERATURE))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width bins of the top probability, weighted by the bins' sizes."""
    confidence = probs.max(axis=-1)
    correct = probs.argmax(axis=-1) == np.asarray(labels)
    ece = 0.0
    for low, high in zip(np.linspace(0, 1, bins + 1)[:-1], np.linspace(0, 1, bins + 1)[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def calibrate(validation: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> dict | None:
    """Fits T on the validation (logits, labels) and reports ECE and NLL before and after on both parts; None
    (no calibration) when the validation part is too small or its logits are not finite."""
    logits, labels = validation
    if len(labels) < MIN_CLIPS or not np.isfinite(logits).all():
        logger.warning("no calibration: %d validation clips (at least %d needed) or non-finite logits", len(labels), MIN_CLIPS)
        return None
    factor = fit_temperature(*validation)
    report = {"method": "temperature scaling, fitted on the validation split", "ece_bins": ECE_BINS, "fitted_factor": factor}
    for name, (logits, labels) in (("validation", validation), ("test", test)):
        before, after = softmax(logits), softmax(logits, factor)
        report[name] = {
            "clips": int(len(labels)),
            "ece_before": expected_calibration_error(before, labels),
            "ece_after": expected_calibration_error(after, labels),
            "nll_before": nll(before, labels),
            "nll_after": nll(after, labels),
        }
    return report
