"""Inference speed: our model vs transformers' Wav2Vec2ForSequenceClassification, and the fast paths.

    python benchmarks/bench_inference.py [--repeats 7] [--clips 200]

1. Latency and real-time factor (seconds of compute per second of audio) for 1, 4 and 10 s inputs, ours vs
   Wav2Vec2ForSequenceClassification with the same wav2vec2-base-sized backbone (random weights: speed does not
   depend on them), on the same input. Ratio = reference time / our time (>= 1: ours is not slower).
2. int8 dynamic quantization and ONNX Runtime vs fp32 at the same sizes (speed-up), and their agreement with
   fp32 on real clips using the trained bundled model (top-1 agreement, max absolute probability difference; int8
   only for a GE2E-backbone model, which ONNX export does not cover).
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch
from common import BASE_BACKBONE, BUNDLED, DATA_DIR, interleaved_median, save
from transformers import AutoFeatureExtractor, Wav2Vec2Config, Wav2Vec2ForSequenceClassification

from modeling import SERConfig, SERForSequenceClassification, load_audio
from serving.fast import OnnxSERModel, export_onnx, quantize_int8


@torch.inference_mode()
def speed(repeats: int) -> dict:
    torch.manual_seed(0)
    ours = SERForSequenceClassification(SERConfig(backbone_config=BASE_BACKBONE)).eval()
    reference = Wav2Vec2ForSequenceClassification(Wav2Vec2Config(num_labels=8, classifier_proj_size=256)).eval()
    int8 = quantize_int8(ours)
    onnx_path = tempfile.NamedTemporaryFile(suffix=".onnx", delete=False).name
    onnx = OnnxSERModel(export_onnx(ours, onnx_path), ours.config)
    rows = {}
    for seconds in (1, 4, 10):
        x = torch.randn(1, 16000 * seconds)
        mask = torch.ones_like(x, dtype=torch.long)
        # wav2vec2-base (group norm) takes no attention mask in either model; ours still gets it for pooling.
        t = interleaved_median(
            {
                "reference": lambda: reference(input_values=x),
                "ours_fp32": lambda: ours(input_values=x, attention_mask=mask),
                "ours_int8": lambda: int8(input_values=x, attention_mask=mask),
                "ours_onnx": lambda: onnx(input_values=x, attention_mask=mask),
            },
            repeats,
        )
        rows[f"{seconds}s"] = {
            **{f"{k}_latency_s": round(v, 4) for k, v in t.items()},
            **{f"{k}_rtf": round(v / seconds, 4) for k, v in t.items()},
            "ours_vs_reference_speed_ratio": round(t["reference"] / t["ours_fp32"], 3),
            "int8_speedup": round(t["ours_fp32"] / t["ours_int8"], 3),
            "onnx_speedup": round(t["ours_fp32"] / t["ours_onnx"], 3),
        }
        print(seconds, rows[f"{seconds}s"], flush=True)
    return rows


@torch.inference_mode()
def agreement(n_clips: int) -> dict:
    model = SERForSequenceClassification.from_pretrained(BUNDLED).eval()
    fe = AutoFeatureExtractor.from_pretrained(BUNDLED)
    paths = sorted(DATA_DIR.glob("Actor_*/*.flac"))[:: max(1, 1200 // n_clips)][:n_clips]
    variants = {"int8": quantize_int8(model)}
    if model.config.backbone_config.model_type != "ge2e":  # ONNX export covers Wav2Vec2-family backbones
        onnx_path = tempfile.NamedTemporaryFile(suffix=".onnx", delete=False).name
        variants["onnx"] = OnnxSERModel(export_onnx(model, onnx_path), model.config)
    probs = {"fp32": [], **{name: [] for name in variants}}
    for path in paths:
        inputs = fe(load_audio(path), return_tensors="pt")
        probs["fp32"].append(model(**inputs).logits.softmax(-1)[0].numpy())
        for name, variant in variants.items():
            probs[name].append(variant(**inputs).logits.softmax(-1)[0].numpy())
    ref = np.stack(probs["fp32"])
    out = {"clips": len(paths), "model": "checkpoints/ge2e-ravdess-emodb"}
    for name in variants:
        p = np.stack(probs[name])
        out[name] = {
            "top1_agreement": float((p.argmax(1) == ref.argmax(1)).mean()),
            "max_abs_prob_diff": float(np.abs(p - ref).max()),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument(
        "--agreement_only", action="store_true", help="only the bundled model's fast-path agreement (after retraining it)"
    )
    args = parser.parse_args()
    if args.agreement_only:
        save("inference_agreement", {"agreement_bundled_model": agreement(args.clips)})
        return
    save("inference", {"speed_base_size": speed(args.repeats), "agreement_bundled_model": agreement(args.clips)})


if __name__ == "__main__":
    main()
