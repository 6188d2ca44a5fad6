"""GPU check and benchmark (needs CUDA): correctness on the device, then speed of ours vs
transformers' Wav2Vec2ForSequenceClassification at wav2vec2-base size, fp32 and bf16.

    python benchmarks/bench_gpu.py [--repeats 20]

Checks: GPU logits match CPU logits for the same weights; masked pooling gives the same output for a clip
alone and padded in a batch (layer-norm backbone); a fine-tuning step runs forward and backward in bf16.
Speed: latency of single 1/4/10 s clips and throughput of a 32 x 4 s batch, CUDA-synchronised medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import BASE_BACKBONE, save
from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

from modeling import SERConfig, SERForSequenceClassification


def cuda_median(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def checks() -> dict:
    torch.manual_seed(0)
    tiny = dict(
        model_type="wav2vec2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        feat_extract_norm="layer", do_stable_layer_norm=True,
    )  # fmt: skip
    model = SERForSequenceClassification(SERConfig(backbone_config=tiny)).eval()
    x = torch.randn(2, 48000)
    mask = torch.ones(2, 48000, dtype=torch.long)
    mask[1, 20000:] = 0
    with torch.inference_mode():
        cpu = model(input_values=x, attention_mask=mask).logits
        model.cuda()
        gpu = model(input_values=x.cuda(), attention_mask=mask.cuda()).logits.cpu()
        alone = model(input_values=x[1:, :20000].cuda(), attention_mask=mask[1:, :20000].cuda()).logits.cpu()
    base = SERForSequenceClassification(SERConfig(backbone_config=BASE_BACKBONE)).cuda().train()
    opt = torch.optim.AdamW([p for p in base.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.01)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = base(input_values=torch.randn(8, 64000, device="cuda"), labels=torch.arange(8, device="cuda")).loss
    loss.backward()
    opt.step()
    return {
        "gpu_vs_cpu_max_abs_logit_diff": float((gpu - cpu).abs().max()),
        "padded_vs_alone_max_abs_logit_diff_gpu": float((gpu[1] - alone[0]).abs().max()),
        "bf16_training_step_loss_finite": bool(torch.isfinite(loss).item()),
    }


@torch.inference_mode()
def speed(repeats: int) -> dict:
    torch.manual_seed(0)
    ours = SERForSequenceClassification(SERConfig(backbone_config=BASE_BACKBONE)).cuda().eval()
    reference = Wav2Vec2ForSequenceClassification(Wav2Vec2Config(num_labels=8)).cuda().eval()
    rows = {}
    shapes = {"1s": (1, 16000), "4s": (1, 64000), "10s": (1, 160000), "batch32x4s": (32, 64000)}
    for dtype_name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        for name, shape in shapes.items():
            x = torch.randn(*shape, device="cuda")
            mask = torch.ones(*shape, dtype=torch.long, device="cuda")

            def run(model, **kw):
                if dtype is None:
                    return model(input_values=x, **kw)
                with torch.autocast("cuda", dtype=dtype):
                    return model(input_values=x, **kw)

            t_ref = cuda_median(lambda: run(reference), repeats)
            t_ours = cuda_median(lambda: run(ours, attention_mask=mask), repeats)
            audio_s = shape[0] * shape[1] / 16000
            rows[f"{dtype_name}_{name}"] = {
                "reference_s": round(t_ref, 5),
                "ours_s": round(t_ours, 5),
                "ours_vs_reference_speed_ratio": round(t_ref / t_ours, 3),
                "ours_rtf": round(t_ours / audio_s, 6),
            }
            print(dtype_name, name, rows[f"{dtype_name}_{name}"], flush=True)
    rows["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    save("gpu", {"checks": checks(), "speed_base_size": speed(args.repeats)})


if __name__ == "__main__":
    main()
