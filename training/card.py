"""The model card (`README.md` of a trained model folder): Hub metadata plus what the run measured."""

from __future__ import annotations

import json

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
    """The Hub's model-index: the pooled test figures (the mean over folds for k-fold)."""
    return [
        {
            "name": name,
            "results": [
                {
                    "task": {"type": "audio-classification", "name": "Speech emotion recognition"},
                    "dataset": {"type": dataset_name, "name": dataset_name, "split": split_summary},
                    "metrics": [
                        {"type": m, "value": round(test[m], 4), "name": f"{METRIC_NAMES[m]} (test)"}
                        for m in SUMMARY_METRICS
                    ],
                }
            ],
        }
    ]


def metrics_table(rows: dict[str, dict]) -> str:
    lines = ["| part | " + " | ".join(METRIC_NAMES[m] for m in SUMMARY_METRICS) + " |"]
    lines.append("|---" * (len(SUMMARY_METRICS) + 1) + "|")
    for part, metrics in rows.items():
        lines.append(f"| {part} | " + " | ".join(f"{metrics[m]:.3f}" for m in SUMMARY_METRICS) + " |")
    return "\n".join(lines)


def _kfold_table(folds: list[dict], mean: dict, std: dict) -> str:
    lines = ["| fold | test speakers | accuracy | F1 (macro) | UAR |", "|---|---|---|---|---|"]
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


# What the card says about corpora this project has readers for; other sources are described by their name only.
CORPORA = {
    "ravdess": {
        "about": "RAVDESS speech: professional North American actors, two fixed English sentences, acted emotions, "
        "studio audio",
        "licence": "CC BY-NC-SA 4.0",
        "citation": "Livingstone SR, Russo FA (2018). The Ryerson Audio-Visual Database of Emotional Speech and Song "
        "(RAVDESS). PLoS ONE 13(5): e0196391. https://doi.org/10.1371/journal.pone.0196391",
    },
    "emodb": {
        "about": "EmoDB (Berlin Database of Emotional Speech): 10 German actors, 10 sentences, acted emotions",
        "licence": "free for research use",
        "citation": "Burkhardt F, Paeschke A, Rolfes M, Sendlmeier W, Weiss B (2005). A database of German emotional "
        "speech. Proc. Interspeech 2005, 1517-1520.",
    },
}


def per_corpus_table(per_corpus: dict) -> str:
    if not per_corpus:
        return ""
    lines = ["| corpus | test clips | accuracy | F1 (macro, its labels) | UAR | majority-class rate |", "|---|---|---|---|---|---|"]
    for corpus, m in per_corpus.items():
        lines.append(
            f"| {corpus} | {m['clips']} | {m['accuracy']:.3f} | {m['f1_macro']:.3f} | {m['uar']:.3f} | {m['majority_rate']:.3f} |"
        )
    return "\n### Per corpus (test)\n\n" + "\n".join(lines) + "\n"


def _per_corpus_kfold_table(per_corpus: dict) -> str:
    lines = ["| corpus | folds | test clips | accuracy | F1 (macro, its labels) | UAR |", "|---|---|---|---|---|---|"]
    for corpus, m in per_corpus.items():
        lines.append(
            f"| {corpus} | {m['folds']} | {m['clips']} | {m['accuracy_mean']:.3f} ± {m['accuracy_std']:.3f} | "
            f"{m['f1_macro_mean']:.3f} ± {m['f1_macro_std']:.3f} | {m['uar_mean']:.3f} ± {m['uar_std']:.3f} |"
        )
    return "\n### Per corpus (mean ± std over the folds that tested it)\n\n" + "\n".join(lines) + "\n"


def calibration_section(results: dict) -> str:
    """Temperature scaling's effect: expected calibration error before and after, on validation and test."""
    runs = results.get("calibration")
    if not runs:
        return ""
    runs = runs if isinstance(runs, list) else [runs]
    threshold = results["model"].get("uncertainty_threshold", 0.5)
    rows = ["| part | clips | ECE before | ECE after | NLL before | NLL after |", "|---|---|---|---|---|---|"]
    for part in ("validation", "test"):
        for i, run in enumerate(runs):
            name = part if len(runs) == 1 else f"{part}, fold {i}"
            m = run[part]
            rows.append(
                f"| {name} | {m['clips']} | {m['ece_before']:.3f} | {m['ece_after']:.3f} | {m['nll_before']:.3f} | {m['nll_after']:.3f} |"
            )
    temperatures = ", ".join(f"{r['temperature']:.3f}" for r in runs)
    command = f" Command: `{runs[0]['command']}`." if runs[0].get("command") else " Fitted at the end of the training run (its command is below)."
    return f"""
### Calibration

The probabilities are calibrated by temperature scaling, fitted on the validation speakers (temperature
{temperatures}, stored in {"each fold's `fold-K/config.json`" if len(runs) > 1 else "`config.json`"}; the predicted label does not change). Expected calibration error
({runs[0]["ece_bins"]} bins) and negative log-likelihood before and after; the test speakers were not used to fit it.
A prediction is flagged as uncertain (`details=True` in the pipeline) when its top probability is below {threshold:g}.{command}

{chr(10).join(rows)}
"""


def robustness_section(results: dict) -> str:
    """Accuracy through real-world conditions (telephone, codecs, rooms, noise, level, clipping), where measured."""
    run = results.get("robustness")
    if not run:
        return ""
    rows = ["| condition | accuracy | UAR | ratio to clean | refused | eGeMAPS + LR accuracy |", "|---|---|---|---|---|---|"]
    rt60 = run.get("measured_rt60_s", {})
    for name, m in run["conditions"].items():
        label = f"{name} (measured {rt60[name]:g} s)" if name in rt60 else name
        rows.append(
            f"| {label} | {m['accuracy']:.3f} | {m['uar']:.3f} | {m['ratio_to_clean']:.2f} | {m['refused']}/{run['clips']} | "
            f"{m['anchor_accuracy']:.3f} |"
        )
    return f"""
### Robustness

The test speakers' {run["clips"]} clips through real-world conditions (refused clips count as errors; the anchor is
{run["anchor"]}). Worst condition: {run["worst_condition"]}, {run["worst_ratio_to_clean"]:.2f} of the clean accuracy.
Command: `{run["command"]}`.

{chr(10).join(rows)}
"""


def adaptation_use(model: dict) -> str:
    if not model.get("speaker_adaptation"):
        return ""
    return """
With several recordings of the same voice, classify relative to it (a profile is a small JSON file, reusable):

```python
profile = classifier.build_profile(["alice-1.wav", "alice-2.wav", "alice-3.wav", ...])  # any moods, no labels
classifier("alice-4.wav", speaker_profile=profile, details=True)   # "adaptation" says which profile acted
classifier("alice-4.wav", reference_audio=["alice-1.wav", ...])   # the same, built on the fly
profile.save("alice.json"); classifier("alice-5.wav", speaker_profile="alice.json")
```

A recording longer than one window adapts to its own speech segments unless `self_adapt=False`.
"""


def adaptation_section(results: dict) -> str:
    """Accuracy and UAR with speaker profiles of each kind of references, where measured."""
    adaptation = results.get("adaptation")
    if not adaptation:
        return ""
    from .evaluation import adaptation_table

    priors = adaptation.get("profile_prior_clips")
    priors = ", ".join(f"{p:g}" for p in priors) if isinstance(priors, list) else f"{priors:g}"
    table = adaptation_table(adaptation).replace("\n## Speaker adaptation\n", "")
    return f"""
### Speaker adaptation

The same test speakers, each clip classified relative to a profile of its speaker (no labels used). Profiles from
references balanced over the emotions (RAVDESS speakers recorded every emotion) flatter the figure: what a user's
clips cover decides how much adaptation helps. A profile counts only beyond {results["model"].get("profile_offset_clips", 4):g} varied
clips, so that 2-4 clips of a mood leave the answer as it is; shrinkage toward the population
(`profile_prior_clips` {priors}) was picked on the validation speakers.
{table}"""


def render_card(results: dict) -> str:
    """`results` is what train.py writes to all_results.json; every number on the card comes from it."""
    test = results["test"]
    split = results["split"]
    data = results["data"]
    labels = results["labels"]
    model = results["model"]
    train_info = results["training"]
    corpora = data.get("corpora", [])
    is_kfold = split["kind"] == "kfold"
    split_line = results["split_summary"]
    licence = "cc-by-nc-sa-4.0" if "ravdess" in corpora else "other"
    metadata = {
        "license": licence,
        "library_name": "transformers",
        "pipeline_tag": "audio-classification",
        "tags": ["audio-classification", "speech-emotion-recognition", *corpora, "custom_code"],
        "datasets": [data["hub_dataset"]] if data.get("hub_dataset") else None,
        "metrics": list(SUMMARY_METRICS),
        "base_model": model["backbone"] if model["pretrained_backbone"] and model["backbone"] != "ge2e" else None,
        "model-index": _model_index(model["name"], data["dataset"], split_line, test),
    }
    metadata = {k: v for k, v in metadata.items() if v is not None}
    if is_kfold:
        scores = _kfold_table(results["folds"], test, results["test_std"]) + "\n" + _per_corpus_kfold_table(
            results.get("test_per_corpus", {})
        )
    else:
        scores = (
            metrics_table({"validation": results["validation"], "test": test})
            + "\n"
            + per_corpus_table(test.get("per_corpus", {}))
            + "\n![Confusion matrix on the test part](confusion_matrix.png)"
        )
    overlap = (
        "**Speakers overlap**: the same speakers are in train and test, so these figures overstate accuracy "
        "on new voices."
        if split.get("speakers_overlap")
        else "The test speakers never appear in training (speaker-independent evaluation)."
    )
    per_class = ""
    if "per_class" in test:
        rows = ["| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for label, m in test["per_class"].items():
            rows.append(f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
        per_class = "\n### Per label (test)\n\n" + "\n".join(rows) + "\n"
    majority = f" The most frequent label is {test['majority_rate']:.3f} of the test clips." if "majority_rate" in test else ""
    backbone = f"pretrained `{model['backbone']}`" if model["pretrained_backbone"] else "randomly initialised, trained from scratch"
    if model["backbone"] == "ge2e":
        backbone = (
            "the pretrained GE2E speaker encoder, frozen: 3-layer LSTM over 40 mel bands, trained on thousands of "
            "speakers for speaker verification; its weights come from Resemblyzer (Apache-2.0, Copyright 2019 "
            "Corentin Jemine) and are converted into this model's safetensors"
        )
    epochs = f"{train_info['epochs']:g}"
    extraction = (
        f" (of which embedding extraction {train_info['embedding_time_s']:.0f} s)" if train_info["embedding_time_s"] else ""
    )
    extras = ""
    if train_info.get("augmentation"):
        extras += f"\n- Augmentation (training clips only): {train_info['augmentation']}."
    if train_info.get("auxiliary_target"):
        extras += f"\n- Auxiliary target: {train_info['auxiliary_target']}."
    if data.get("label_map"):
        dropped = ", ".join(f"{n} {label}" for label, n in (data.get("labels_dropped") or {}).items()) or "none"
        extras += f"\n- Label map: `{json.dumps(data['label_map'])}` (clips dropped by it: {dropped})."
    known = [CORPORA[c] for c in corpora if c in CORPORA]
    data_lines = "\n".join(f"  - {c['about']} ({c['licence']})." for c in known)
    citations = "\n\n".join(c["citation"] for c in known) or "See the data sources named above."
    head = f"Linear({model['hidden_size']}→{model['head_hidden_size']}) → ReLU → Dropout({model['head_dropout']:g}) → Linear({model['head_hidden_size']}→{model['num_labels']})"
    body = f"""
# {model["name"]}

Speech emotion recognition over {len(labels)} labels ({", ".join(labels)}):
a `{model["backbone_type"]}` backbone ({backbone}), {model["pooling"]} pooling over non-padding frames and a
`{head}` head; {model["parameters"]:,} parameters.

## Results

Split: {split_line}. {overlap}

{scores}
{per_class}
Chance level for {len(labels)} balanced classes is {1 / len(labels):.3f} accuracy.{majority}
{adaptation_section(results)}{calibration_section(results)}{robustness_section(results)}
## Training

- Command: `{train_info["command"]}`
- Mode: {train_info["mode"]}
- Data: {data["dataset"]}: {data["clips"]} clips from {data["actors"]} speakers; {data["duplicates_dropped"]} byte-identical duplicate(s) dropped, {data["skipped_names"]} file(s) off the naming layout skipped, {data["undecodable"]} unusable clip(s) skipped.
{data_lines}
- Preprocessing: mono, resampled to 16 kHz, spectral-gating noise reduction ({"on" if results["preprocessing"]["noise_reduction"] else "off"}), zero-mean unit-variance normalization.{extras}
- Class weights in the loss: {"balanced (inverse frequency in training)" if train_info.get("class_weights") else "none"}.
- Optimizer: AdamW, learning rate {train_info["learning_rate"]}, weight decay {train_info["weight_decay"]}, up to {epochs} epochs, batch size {train_info["batch_size"]}, seed {train_info["seed"]}.
- Epochs run: {", ".join(f"{e:g}" for e in train_info.get("epochs_run", [])) or "?"} (best checkpoint by validation {train_info.get("metric_for_best_model") or "metric"} kept{"; stopped early by patience or time limit" if any(e < train_info["epochs"] for e in train_info.get("epochs_run", [])) else ""}).
- Hardware: {train_info["hardware"]}; training time {train_info["train_time_s"]:.0f} s{" (sum over folds)" if is_kfold else ""}{extraction}; wall time of the run that wrote this card {train_info["wall_time_s"]:.0f} s, data preprocessing included.
- Library versions: {", ".join(f"{k} {v}" for k, v in train_info["versions"].items())}.

## Use

```python
from transformers import pipeline
classifier = pipeline("audio-classification", model="PATH_OR_REPO_ID", trust_remote_code=True, top_k=None)
classifier("speech.wav")                                    # any length, any format FFmpeg reads
classifier("speech.wav", candidate_labels=["angry", "neutral"])  # restricted to some labels, renormalized
classifier("speech.wav", details=True)                      # + uncertain, duration_s and the timeline of segments
```
{adaptation_use(model)}

The pipeline applies the model's inference policy: audio without speech (silence, noise, a tone, music without a
voice) is refused with `NoSpeechError` ("no speech found"), recordings longer than {results["preprocessing"].get("window_s", 5.0):g} s are classified by their
speech segments, and the probabilities are calibrated. The repository carries that code (`modeling_ser.py`,
`pipeline_ser.py` and the files they import, written by `save_pretrained`): `trust_remote_code=True` runs it on your
machine, so read it first or pin a revision. It needs torch, transformers, numpy, scipy, soundfile, soxr, noisereduce,
librosa, silero-vad and opensmile (torchcodec with FFmpeg for WebM or M4A).

## Intended use and limitations

- For research and demos of speech emotion recognition. Not for decisions about people (hiring, health,
  policing, education): acted emotions in a studio are not how people express emotion, and the model has no
  notion of context.
- Trained on acted speech from {data["actors"]} speakers of {", ".join(corpora) or "the sources above"}. Expect much lower
  accuracy on spontaneous speech, other languages and accents, children, noisy or far-field recordings.
- Licence of the weights follows the training data: {"; ".join(f"{c}: {CORPORA[c]['licence']}" for c in corpora if c in CORPORA) or "see the data sources"}.

## Citation

{citations}
"""
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n" + body


if __name__ == "__main__":
    # Re-renders a run's card from its all_results.json, e.g. after editing this template.
    import json
    import sys
    from pathlib import Path

    from serving.files import write_text_atomic

    for folder in map(Path, sys.argv[1:]):
        write_text_atomic(folder / "README.md", render_card(json.loads((folder / "all_results.json").read_text())))
