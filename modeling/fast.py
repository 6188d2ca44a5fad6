"""Faster CPU inference: int8 dynamic quantization of the Linear layers, or an ONNX Runtime export.

Both keep the model's interface for inference (`model(input_values=..., attention_mask=...).logits`), so they
slot into `predict_proba`, `predict_long` and `predict.py`. Check agreement with `benchmarks/bench_inference.py`.
"""

from __future__ import annotations

import copy
import os
import warnings
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from .modeling_ser import SERModel


def quantize_int8(model: SERModel) -> SERModel:
    """A copy with every `nn.Linear` replaced by a dynamically quantized int8 one (weights int8, activations
    quantized per batch). Linear layers hold most of a transformer's weights and time; convolutions stay fp32."""
    with warnings.catch_warnings():
        # Eager dynamic quantization is deprecated in favour of torchao, which is not available for this torch.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def export_onnx(model: SERModel, path: str | os.PathLike, max_seconds: float = 120.0) -> str:
    """Exports `input_values, attention_mask -> logits` with dynamic batch and length.

    Uses the torch.export-based exporter: the TorchScript tracer freezes length-dependent code (frame counts,
    the pooling mask) at the example's shape and gives wrong results on other lengths.
    """
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
