"""Faster CPU inference: an ONNX Runtime export (int8 dynamic quantization ships with the model:
`SERClassifier.from_pretrained(..., dtype="int8")`).

Both keep the model's interface for inference (`model(input_values=..., attention_mask=...).logits`), so they slot
into `SERClassifier`. Check agreement with `benchmarks/bench_inference.py`.
"""

from __future__ import annotations

import os
import warnings
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from modeling.inference import quantize_int8  # noqa: F401  (re-exported: one place for it)
from modeling.modeling_ser import SERForSequenceClassification


def export_onnx(model: SERForSequenceClassification, path: str | os.PathLike, max_seconds: float = 120.0) -> str:
    """Exports `input_values, attention_mask -> logits` with dynamic batch and length.

    Uses the torch.export-based exporter: the TorchScript tracer freezes length-dependent code (frame counts,
    the pooling mask) at the example's shape and gives wrong results on other lengths.
    """
    if model.config.backbone_config.model_type == "ge2e":
        # Its partial utterances depend on each clip's length in Python: no single exported graph covers them.
        raise ValueError("ONNX export covers Wav2Vec2-family backbones; for the GE2E backbone use dtype='int8' on CPU")
    model = model.eval()
    # A padded example, so that the traced program covers the masking of padding frames.
    example = (torch.randn(2, 32000), torch.ones(2, 32000, dtype=torch.long))
    example[1][1, 24000:] = 0
    batch = torch.export.Dim("batch", min=1, max=1024)
    samples = torch.export.Dim("samples", min=1600, max=int(16000 * max_seconds))

    class Logits(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_values, attention_mask):
            return self.inner(input_values=input_values, attention_mask=attention_mask).logits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits(model),
            example,
            str(path),
            input_names=["input_values", "attention_mask"],
            output_names=["logits"],
            dynamic_shapes={"input_values": {0: batch, 1: samples}, "attention_mask": {0: batch, 1: samples}},
            dynamo=True,
            verbose=False,
        )
    return str(path)


class OnnxSERModel:
    """Runs an exported model with ONNX Runtime behind the `model(**inputs).logits` interface."""

    def __init__(self, path: str | os.PathLike, config, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.config = config
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def __call__(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_values, dtype=torch.long)
        (logits,) = self.session.run(
            None,
            {
                "input_values": input_values.numpy().astype(np.float32, copy=False),
                "attention_mask": attention_mask.numpy().astype(np.int64, copy=False),
            },
        )
        return SimpleNamespace(logits=torch.from_numpy(logits))

    def eval(self) -> "OnnxSERModel":
        return self
