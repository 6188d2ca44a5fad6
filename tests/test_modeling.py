import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TEST_LABELS, labelled, tiny_backbone
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

from modeling import SERConfig, SERFeatureExtractor, SERForSequenceClassification, load_audio


def make_model(norm="layer", seed=0, **config_kwargs) -> SERForSequenceClassification:
    torch.manual_seed(seed)
    return SERForSequenceClassification(SERConfig(backbone_config=tiny_backbone(norm), **{**labelled(), **config_kwargs})).eval()


@pytest.fixture(scope="module")
def waves(manifest, data_dir):
    # Eight real clips, one per emotion, from two actors.
    picked = {}
    for row in manifest:
        if row["actor"] in ("1", "2") and row["emotion"] not in picked:
            picked[row["emotion"]] = load_audio(data_dir / row["path"])
    return [picked[e] for e in TEST_LABELS]


def test_config_defaults_reproduce_the_recipe():
    config = SERConfig()
    assert config.backbone_config.model_type == "wav2vec2"
    assert config.backbone_config.hidden_size == 768
    assert (config.head_hidden_size, config.head_dropout, config.pooling) == (256, 0.3, "mean")
    # No dataset's labels are assumed: without labels a config has transformers' two placeholders.
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    labels = SERConfig(id2label={0: "low", 1: "mid", 2: "high"})
    assert labels.num_labels == 3 and labels.label2id == {"low": 0, "mid": 1, "high": 2}
    reloaded = SERConfig.from_dict(labels.to_dict())
    assert reloaded.id2label == {0: "low", 1: "mid", 2: "high"} and reloaded.label2id == labels.label2id
    with pytest.raises(ValueError, match="pooling"):
        SERConfig(pooling="max")


def test_head_architecture():
    model = make_model()
    layers = list(model.head)
    assert [type(m).__name__ for m in layers] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert (layers[0].in_features, layers[0].out_features) == (32, 256)
    assert layers[2].p == 0.3
    assert (layers[3].in_features, layers[3].out_features) == (256, 8)


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm", "data2vec-audio"])
def test_backbone_families(model_type, waves, tmp_path):
    torch.manual_seed(0)
    model = SERForSequenceClassification(SERConfig(backbone_config=tiny_backbone(model_type=model_type), **labelled())).eval()
    assert model.backbone.config.model_type == model_type
    inputs = SERFeatureExtractor()(waves[:2], return_tensors="pt")
    logits = model(**inputs).logits
    assert logits.shape == (2, 8) and torch.isfinite(logits).all()
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded.backbone) is type(model.backbone)
    torch.testing.assert_close(reloaded(**inputs).logits, logits, rtol=0, atol=0)


def test_save_load_round_trip_gives_identical_logits(waves, tmp_path):
    model = make_model()
    fe = SERFeatureExtractor()
    model.save_pretrained(tmp_path)
    fe.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "modeling_ser.py"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    inputs = fe(waves[:3], return_tensors="pt")
    reloaded = SERForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    auto = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert isinstance(auto, SERForSequenceClassification)
    assert auto.config.id2label == model.config.id2label


def test_fresh_process_loads_with_trust_remote_code(waves, tmp_path):
    """A user without this project: only transformers and the saved folder."""
    model = make_model()
    fe = SERFeatureExtractor()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    fe.save_pretrained(model_dir)
    np.save(tmp_path / "wave.npy", waves[4])
    expected = model(**fe(waves[4], return_tensors="pt")).logits.detach().numpy()
    script = f"""
import sys, numpy as np
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
model = AutoModelForAudioClassification.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
fe = AutoFeatureExtractor.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
assert "modeling" not in sys.modules, "the project must not be importable here"
wave = np.load({str(tmp_path / "wave.npy")!r})
np.save({str(tmp_path / "out.npy")!r}, model(**fe(wave, return_tensors="pt")).logits.detach().numpy())
print(type(model).__module__)
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("transformers_modules.")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=0, atol=1e-6)


def test_config_json_holds_backbone_and_labels(tmp_path):
    make_model(pooling="weighted_mean").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "ser"
    assert saved["backbone_config"]["model_type"] == "wav2vec2"
    assert saved["pooling"] == "weighted_mean"
    assert saved["auto_map"]["AutoModelForAudioClassification"] == "modeling_ser.SERForSequenceClassification"
    assert AutoConfig.from_pretrained(tmp_path).backbone_config.hidden_size == 32


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_pooling_ignores_padding(norm, waves):
    model = make_model(norm)
    fe = SERFeatureExtractor()
    short = waves[0][:16000]
    longer = waves[1]
    assert len(longer) > 2 * len(short)
    alone = model.embed(**fe(short, return_tensors="pt"))
    batched = model.embed(**fe([short, longer], return_tensors="pt"))[:1]
    if norm == "layer":
        torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)
    else:
        # GroupNorm in the conv feature encoder normalizes over time, padding included: no mask can reach it,
        # so only closeness holds (here with 70% of the batch row padded; batch by length to stay closer).
        cosine = torch.nn.functional.cosine_similarity(batched.flatten(), alone.flatten(), dim=0)
        assert cosine > 0.9
    # Without masked pooling the padding frames would count: the mean would differ markedly.
    hidden = model.backbone(fe([short, longer], return_tensors="pt")["input_values"]).last_hidden_state
    assert not torch.allclose(hidden[0].mean(0), alone[0, 0], atol=1e-3)


def test_weighted_mean_pooling_and_cached_embeddings(waves):
    model = make_model(pooling="weighted_mean")
    inputs = SERFeatureExtractor()(waves[:2], return_tensors="pt")
    pooled = model.embed(**inputs)
    assert pooled.shape == (2, 3, 32)  # embeddings + 2 transformer layers
    torch.testing.assert_close(model(pooled_embeddings=pooled).logits, model(**inputs).logits)
    assert model.layer_weights.requires_grad


def test_freezing_flags():
    model = make_model(freeze_backbone=True)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert model.head.training and not model.backbone.training
    model = make_model()  # freeze_feature_encoder defaults to True
    assert not any(p.requires_grad for p in model.backbone.feature_extractor.parameters())
    assert all(p.requires_grad for p in model.backbone.encoder.parameters())


def test_from_backbone_loads_pretrained_weights(tmp_path):
    torch.manual_seed(1)
    backbone = AutoModel.from_config(AutoConfig.for_model(**tiny_backbone()))
    backbone.save_pretrained(tmp_path)
    model = SERForSequenceClassification.from_backbone(str(tmp_path), pooling="weighted_mean")
    assert model.config.pooling == "weighted_mean"
    for name, value in backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], value, rtol=0, atol=0)


def test_loss_falls_and_model_overfits_real_clips(waves):
    torch.manual_seed(0)
    model = SERForSequenceClassification(SERConfig(backbone_config=tiny_backbone(), head_dropout=0.0, **labelled())).train()
    inputs = SERFeatureExtractor()([w[:32000] for w in waves], return_tensors="pt")
    labels = torch.arange(8)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.01)
    losses = []
    for _ in range(60):
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(np.log(8), rel=0.2)
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    with torch.no_grad():
        assert (model(**inputs).logits.argmax(-1) == labels).all()


def test_frame_mask_matches_transformers():
    model = make_model()
    lengths = torch.tensor([16000, 9000, 1601, 12345])
    mask = (torch.arange(16000)[None, :] < lengths[:, None]).long()
    frames = model.backbone._get_feat_extract_output_lengths(torch.tensor(16000)).item()
    expected = model.backbone._get_feature_vector_attention_mask(frames, mask)
    assert torch.equal(model._frame_mask(frames, mask), expected.bool())


class SERModelTester:
    """A tiny config and real-speech inputs, in the style of transformers' `Wav2Vec2ModelTester`."""

    num_labels = 4
    batch_size = 3

    def __init__(self, waves):
        self.waves = waves[: self.batch_size]

    def get_config(self, **kwargs) -> SERConfig:
        labels = ("neutral", "happy", "sad", "angry")[: self.num_labels]
        return SERConfig(backbone_config=tiny_backbone(), **{**labelled(labels), **kwargs})

    def prepare_inputs(self, length: int = 16000):
        """Clips of 1/4, 1/2 and 1 x `length` samples, zero-padded to `length`, with their attention mask."""
        lengths = [length // 4, length // 2, length]
        values = torch.zeros(self.batch_size, length)
        mask = torch.zeros(self.batch_size, length, dtype=torch.long)
        for i, (wave, n) in enumerate(zip(self.waves, lengths)):
            values[i, :n] = torch.from_numpy(SERFeatureExtractor.normalize(wave[:n]))
            mask[i, :n] = 1
        return values, mask, lengths, torch.tensor([0, 1, 3])


@pytest.fixture(scope="module")
def tester(waves):
    return SERModelTester(waves)


@pytest.mark.parametrize("pooling", ["mean", "weighted_mean"])
def test_forward_returns_what_the_backbone_is_asked_for(tester, pooling):
    torch.manual_seed(0)
    model = SERForSequenceClassification(tester.get_config(pooling=pooling, attn_implementation="eager")).eval()
    values, mask, _, labels = tester.prepare_inputs()
    with torch.no_grad():
        plain = model(values, attention_mask=mask, labels=labels)
        full = model(values, attention_mask=mask, labels=labels, output_hidden_states=True, output_attentions=True)
        as_tuple = model(values, attention_mask=mask, labels=labels, return_dict=False)
    assert plain.logits.shape == (tester.batch_size, tester.num_labels)
    assert plain.hidden_states is None and not plain.attentions  # weighted pooling computes them, but was not asked
    layers = model.config.backbone_config.num_hidden_layers
    assert len(full.hidden_states) == layers + 1 and len(full.attentions) == layers
    frames = model.backbone._get_feat_extract_output_lengths(values.shape[-1])
    assert full.hidden_states[-1].shape == (tester.batch_size, frames, model.config.hidden_size)
    assert full.attentions[0].shape == (tester.batch_size, 2, frames, frames)
    torch.testing.assert_close(full.logits, plain.logits)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2  # (loss, logits): None fields are left out
    torch.testing.assert_close(as_tuple[0], plain.loss)
    torch.testing.assert_close(as_tuple[1], plain.logits)


def test_masked_loss_is_the_loss_of_the_unpadded_clips(tester):
    torch.manual_seed(0)
    model = SERForSequenceClassification(tester.get_config()).eval()
    values, mask, lengths, labels = tester.prepare_inputs()
    with torch.no_grad():
        masked = model(values, attention_mask=mask, labels=labels).loss
        unmasked = model(values, labels=labels).loss
        alone = [model(values[i : i + 1, :n], labels=labels[i : i + 1]).loss for i, n in enumerate(lengths)]
    assert not torch.isclose(masked, unmasked)  # padding frames would count without the mask
    torch.testing.assert_close(masked, torch.stack(alone).mean(), rtol=1e-4, atol=1e-5)


def test_a_training_step_with_gradient_checkpointing_matches_one_without(tester):
    values, mask, _, labels = tester.prepare_inputs()
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = SERForSequenceClassification(tester.get_config(freeze_feature_encoder=False))
        if checkpointing:
            model.activation_checkpointing_enable()
        assert model.backbone.is_activation_checkpointing == checkpointing
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = model(values, attention_mask=mask, labels=labels).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer.step()
        assert all(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in grads)
        results.append((loss.detach(), grads))
    (loss, grads), (loss_ckpt, grads_ckpt) = results
    assert any(n.startswith("backbone.encoder") for n in grads) and grads.keys() == grads_ckpt.keys()
    torch.testing.assert_close(loss_ckpt, loss)
    for name, grad in grads.items():  # recomputing activations gives the same gradients
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-4, atol=1e-6)


def test_sdpa_and_eager_attention_agree(tester, tmp_path):
    torch.manual_seed(0)
    SERForSequenceClassification(tester.get_config()).save_pretrained(tmp_path)
    values, mask, _, _ = tester.prepare_inputs()
    outputs = {}
    for implementation in ("sdpa", "eager"):
        model = SERForSequenceClassification.from_pretrained(tmp_path, attn_implementation=implementation).eval()
        assert model.backbone.config._attn_implementation == implementation
        with torch.no_grad():
            outputs[implementation] = model(values, attention_mask=mask, output_hidden_states=True)
    torch.testing.assert_close(outputs["sdpa"].logits, outputs["eager"].logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outputs["sdpa"].hidden_states[-1], outputs["eager"].hidden_states[-1], rtol=1e-4, atol=1e-5)


def test_temperature_scales_the_logits_and_keeps_the_label(tester, tmp_path):
    torch.manual_seed(0)
    model = SERForSequenceClassification(tester.get_config()).eval()
    values, mask, _, _ = tester.prepare_inputs()
    with torch.no_grad():
        plain = model(values, attention_mask=mask).logits
        model.config.temperature = 2.0
        model.save_pretrained(tmp_path)
        warm = SERForSequenceClassification.from_pretrained(tmp_path).eval()(values, attention_mask=mask).logits
    assert SERConfig.from_pretrained(tmp_path).temperature == 2.0
    torch.testing.assert_close(warm, plain / 2.0)
    assert torch.equal(warm.argmax(-1), plain.argmax(-1))
    with pytest.raises(ValueError, match="temperature must be positive"):
        SERConfig(temperature=0.0)


def test_temperature_scaling_recovers_a_known_temperature():
    from training.calibration import calibrate, expected_calibration_error, fit_temperature, softmax

    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(4000, 8))
    # Labels drawn from softmax(logits / 2.5): the logits are over-confident by a factor 2.5.
    labels = np.array([rng.choice(8, p=p) for p in softmax(logits, 2.5)])
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)
    report = calibrate((logits[:2000], labels[:2000]), (logits[2000:], labels[2000:]))
    assert report["test"]["ece_after"] < report["test"]["ece_before"] / 2  # on data it was not fitted on
    assert expected_calibration_error(softmax(logits, 2.5), labels) < 0.05 < expected_calibration_error(softmax(logits), labels)


def test_temperature_fits_are_bounded_and_need_enough_clips():
    from training.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE, calibrate

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 200)
    right = np.eye(4)[labels]  # every validation clip right: the fit would drive T towards 0
    wrong = np.eye(4)[(labels + 1) % 4] * 10  # every one wrong: towards infinity (all predictions uniform)
    assert calibrate((right, labels), (right, labels))["fitted_factor"] == MIN_TEMPERATURE
    assert calibrate((wrong, labels), (wrong, labels))["fitted_factor"] == MAX_TEMPERATURE
    assert calibrate((right[:10], labels[:10]), (right, labels)) is None  # too few clips to fit on
    assert calibrate((right * np.nan, labels), (right, labels)) is None


def test_continuing_from_a_calibrated_model_trains_plain_logits(tiny_model_dir, tmp_path):
    from training.args import ModelArguments
    from training.experiment import build_model

    calibrated = SERForSequenceClassification.from_pretrained(tiny_model_dir)
    calibrated.config.temperature = 2.0
    calibrated.config.robustness = {"clean": 0.5, "telephone": 0.2}
    calibrated.save_pretrained(tmp_path)
    model = build_model(ModelArguments(model_name_or_path=str(tmp_path)), list(TEST_LABELS))
    assert model.config.temperature == 1.0  # a new one is fitted after training
    assert model.config.robustness is None  # the old weights' figures; the new ones are unmeasured
