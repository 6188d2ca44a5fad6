"""The model card (`README.md` of a trained model folder): Hub metadata plus what the run measured."""

from __future__ import annotations

import yaml

from .metrics import SUMMARY_METRICS

METRIC_NAMES = {
    "accuracy": "Accuracy",
    "f1_macro": "F1 (macro)",
    "f1_micro": "F1 (micro)",
    "f1_weighted": "F1 (weighted)",
    "uar": "Unweighted average recall",
}


def _model_index(name: str, dataset_name: str, split_summary: str, test: dict) -> list[dict]:
    return [
        {
            "name": name,
            "results": [
                {
                    "task": {"type": "audio-classification", "name": "Speech emotion recognition"},
                    "dataset": {"type": dataset_name, "name": "RAVDESS (speech)", "split": split_summary},
                    "metrics": [
                        {"type": m, "value": round(test[m], 4), "name": f"{METRIC_NAMES[m]} (test)"}
                        for m in SUMMARY_METRICS
                    ],
                }
            ],
        }
    ]


def _table(rows: dict[str, dict]) -> str:
    lines = ["| part | " + " | ".join(METRIC_NAMES[m] for m in SUMMARY_METRICS) + " |"]
    lines.append("|---" * (len(SUMMARY_METRICS) + 1) + "|")
    for part, metrics in rows.items():
        lines.append(f"| {part} | " + " | ".join(f"{metrics[m]:.3f}" for m in SUMMARY_METRICS) + " |")
    return "\n".join(lines)


def _kfold_table(folds: list[dict], mean: dict, std: dict) -> str:
    lines = ["| fold | test actors | accuracy | F1 (macro) | UAR |", "|---|---|---|---|---|"]
    for fold in folds:
        t = fold["test"]
        lines.append(
            f"| {fold['split']['fold']} | {fold['split']['actors']['test']} | {t['accuracy']:.3f} | "
            f"{t['f1_macro']:.3f} | {t['uar']:.3f} |"
        )
    lines.append(
        f"| mean ± std | | {mean['accuracy']:.3f} ± {std['accuracy']:.3f} | "
        f"{mean['f1_macro']:.3f} ± {std['f1_macro']:.3f} | {mean['uar']:.3f} ± {std['uar']:.3f} |"
    )
    return "\n".join(lines)


def render_card(results: dict) -> str:
    """`results` is what train.py writes to all_results.json; every number on the card comes from it."""
    test = results["test"]
    split = results["split"]
    data = results["data"]
    is_kfold = split["kind"] == "kfold"
    split_line = results["split_summary"]
    metadata = {
        "license": "cc-by-nc-sa-4.0",
        "library_name": "transformers",
        "pipeline_tag": "audio-classification",
        "tags": ["audio-classification", "speech-emotion-recognition", "ravdess", "custom_code"],
        "datasets": [data["dataset"]] if data.get("hub_dataset") else None,
        "metrics": list(SUMMARY_METRICS),
        "base_model": results["model"]["backbone"] if results["model"]["pretrained_backbone"] else None,
        "model-index": _model_index(results["model"]["name"], data["dataset"], split_line, test),
    }
    metadata = {k: v for k, v in metadata.items() if v is not None}
    if is_kfold:
        scores = _kfold_table(results["folds"], results["test"], results["test_std"])
    else:
        scores = _table({"validation": results["validation"], "test": test}) + (
            "\n\n![Confusion matrix on the test part](confusion_matrix.png)"
        )
    overlap = (
        "**Speakers overlap**: the same actors are in train and test, so these figures overstate accuracy "
        "on new voices."
        if split.get("speakers_overlap")
        else "The test actors never appear in training (speaker-independent evaluation)."
    )
    per_class = ""
    if "per_class" in test:
        rows = ["| emotion | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for label, m in test["per_class"].items():
            rows.append(f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
        per_class = "\n### Per emotion (test)\n\n" + "\n".join(rows) + "\n"
    train_info = results["training"]
    model = results["model"]
    backbone = (
        f"pretrained `{model['backbone']}`" if model["pretrained_backbone"] else "randomly initialised, trained from scratch"
    )
    epochs = f"{train_info['epochs']:g}"
    extraction = (
        f" (of which embedding extraction {train_info['embedding_time_s']:.0f} s)" if train_info["embedding_time_s"] else ""
    )
    body = f"""
# {results["model"]["name"]}

Speech emotion recognition over the eight RAVDESS emotions ({", ".join(results["labels"])}):
a `{results["model"]["backbone_type"]}` backbone ({backbone}),
{results["model"]["pooling"]} pooling over non-padding frames and a `Linear({results["model"]["hidden_size"]}→256) → ReLU → Dropout(0.3) → Linear(256→8)` head.

## Results

Split: {split_line}. {overlap}

{scores}
{per_class}
Chance level for eight balanced classes is 0.125 accuracy.

## Training

- Command: `{train_info["command"]}`
- Mode: {train_info["mode"]}
- Data: {data["dataset"]}: {data["clips"]} clips from {data["actors"]} actors; {data["duplicates_dropped"]} byte-identical duplicate(s) dropped, {data["skipped_names"]} file(s) off the naming layout skipped, {data["undecodable"]} unusable clip(s) skipped.
- Preprocessing: mono, resampled to 16 kHz, spectral-gating noise reduction ({"on" if results["preprocessing"]["noise_reduction"] else "off"}), zero-mean unit-variance normalization.
- Optimizer: AdamW, learning rate {train_info["learning_rate"]}, weight decay {train_info["weight_decay"]}, {epochs} epochs, batch size {train_info["batch_size"]}, seed {train_info["seed"]}.
- Hardware: {train_info["hardware"]}; wall time {train_info["wall_time_s"]:.0f} s{extraction}, data preprocessing included.
- Library versions: {", ".join(f"{k} {v}" for k, v in train_info["versions"].items())}.

## Use

```python
from transformers import pipeline
classifier = pipeline("audio-classification", model="PATH_OR_REPO_ID", trust_remote_code=True, top_k=None)
classifier("speech.wav")
```

The repository carries its modeling code (`modeling_ser.py` and the files it imports): `trust_remote_code=True`
runs that code on your machine, so read it first or pin a revision.

## Intended use and limitations

- For research and demos of speech emotion recognition on short English utterances. Not for decisions about
  people (hiring, health, policing, education): acted emotions in a studio are not how people express emotion,
  and the model has no notion of context.
- Trained on RAVDESS only: 24 professional North American actors (this run saw {data["actors"]}), two fixed
  sentences, acted emotions, clean studio audio. Expect much lower accuracy on spontaneous speech, other
  languages and accents, children, noisy or far-field recordings.
- Licence: RAVDESS is CC BY-NC-SA 4.0, so these weights are for non-commercial use and share-alike.

## Citation

Livingstone SR, Russo FA (2018). The Ryerson Audio-Visual Database of Emotional Speech and Song (RAVDESS).
PLoS ONE 13(5): e0196391. https://doi.org/10.1371/journal.pone.0196391
"""
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n" + body


if __name__ == "__main__":
    # Re-renders a run's card from its all_results.json, e.g. after editing this template.
    import json
    import sys
    from pathlib import Path

    from .files import write_text_atomic

    for folder in map(Path, sys.argv[1:]):
        write_text_atomic(folder / "README.md", render_card(json.loads((folder / "all_results.json").read_text())))
