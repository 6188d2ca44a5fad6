"""The pretrained GE2E speaker encoder as a backbone: Resemblyzer's weights (Apache-2.0, shipped inside its wheel)
converted into the model's own safetensors, so that a saved model needs no Resemblyzer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from modeling.voice_encoder import GE2EConfig, GE2EModel

LICENSE_NOTICE = (
    "The GE2E speaker encoder's weights come from Resemblyzer (https://github.com/resemble-ai/Resemblyzer, "
    "Copyright 2019 Corentin Jemine, Apache License 2.0)."
)


def resemblyzer_weights() -> Path:
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the GE2E backbone's pretrained weights come from the resemblyzer package: pip install resemblyzer")
    return Path(spec.submodule_search_locations[0]) / "pretrained.pt"


def pretrained_ge2e() -> GE2EModel:
    """A `GE2EModel` with Resemblyzer's pretrained weights (its training-only similarity scale is left out)."""
    state = torch.load(resemblyzer_weights(), map_location="cpu", weights_only=True)["model_state"]
    model = GE2EModel(GE2EConfig())
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
    return model.eval()
