"""What a user names as a model or a backbone, checked before anything loads, with errors that say what is wrong.

transformers treats any name that is not an existing folder as a Hub id: a mistyped folder then fails with the
Hub's "Repo id must be in the form ..." or, offline, a connection error, and a plain backbone folder loads as a
classifier with a random head. These checks turn each case into one clear line.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
from pathlib import Path

from transformers import CONFIG_MAPPING, AutoConfig

from modeling.configuration_ser import SERConfig
from modeling.inference import SERClassifier

# What the Hub accepts as a repo id: `name` or `namespace/name`.
_REPO_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


class ModelError(ValueError):
    """A model reference that cannot be used; the message says why and what to give instead."""


def _did_you_mean(path: Path) -> str:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return ""
    folders = [p.name for p in parent.iterdir() if p.is_dir()]
    match = difflib.get_close_matches(path.name, folders, n=1)
    return f"; did you mean {parent / match[0]}?" if match else ""


def resolve_model_path(name: str | os.PathLike) -> str:
    """`name` if it is a saved model's folder or can only be a Hub id; `ModelError` for a folder that is not there.

    A name is taken as a folder when it exists, starts with `.`, `/` or `~`, has more than one `/`, or when its
    first part is an existing folder (`checkpoints/typo`): such names never reach the Hub.
    """
    text = os.fspath(name)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path.resolve()}: has no config.json, so it is not a saved model (save_pretrained writes one)")
        return str(path)
    if path.exists():
        raise ModelError(f"{path.resolve()}: is a file; give the model's folder, the one that holds config.json")
    first = Path(text.split("/")[0]).expanduser()
    looks_local = (
        text.startswith((".", "/", "~")) or "\\" in text or not _REPO_ID.match(text) or ("/" in text and first.is_dir())
    )
    if looks_local:
        raise ModelError(f"{text}: no such folder ({path.resolve()}){_did_you_mean(path)}")
    return text


def load_config(name: str | os.PathLike, **hub_kwargs):
    """The config of a model folder or Hub id, with `ModelError` for a missing folder or an unreachable Hub id."""
    name = resolve_model_path(name)
    try:
        return AutoConfig.from_pretrained(name, **hub_kwargs)
    except OSError as err:
        reason = str(err).strip().splitlines()[0]
        raise ModelError(f"{name}: not a folder here, and not loadable as a Hub model ({reason})") from None
    except ValueError as err:  # an unknown model_type
        raise ModelError(f"{name}: {str(err).strip().splitlines()[0]}") from None


def check_ser_model(name: str | os.PathLike, **hub_kwargs) -> SERConfig:
    """The `SERConfig` of a speech emotion model of this project; `ModelError` for anything else."""
    config = load_config(name, **hub_kwargs)
    if isinstance(config, SERConfig):
        return config
    architecture = (config.architectures or [config.model_type])[0]
    if architecture.endswith(("ForSequenceClassification", "ForAudioClassification")):
        advice = "for other audio classifiers use transformers.pipeline('audio-classification', model=...)"
    else:
        advice = f"to make one from it, train: python train.py --model_name_or_path {os.fspath(name)} ..."
    raise ModelError(
        f"{os.fspath(name)} is a {architecture} ({config.model_type}), not a speech emotion model of this project "
        f"(it needs this project's feature extractor and head); {advice}"
    )


def check_backbone_config(backbone_config: dict) -> None:
    """Refuses keys that the backbone's config class does not have (a typo would otherwise be stored and ignored,
    and the model built at the default size), naming the closest valid key."""
    model_type = backbone_config.get("model_type", "wav2vec2")
    if model_type not in CONFIG_MAPPING:
        raise ModelError(f"backbone_config: unknown model_type {model_type!r}")
    config_class = CONFIG_MAPPING[model_type]
    valid = set(config_class().to_dict()) | set(inspect.signature(config_class.__init__).parameters) - {"self", "kwargs"}
    for key in backbone_config:
        if key not in valid:
            match = difflib.get_close_matches(key, sorted(valid), n=1)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            raise ModelError(f"backbone_config: {key!r} is not a setting of {config_class.__name__}{hint}")


def load_classifier(name: str | os.PathLike, device=None, dtype: str = "fp32", **hub_kwargs) -> SERClassifier:
    """The `SERClassifier` of a model that a user named (a folder or a Hub id), checked first so that a typo, a
    missing folder or another kind of model gets one clear line (`ModelError`)."""
    name = resolve_model_path(name)
    check_ser_model(name, **hub_kwargs)
    return SERClassifier.from_pretrained(name, device=device, dtype=dtype, **hub_kwargs)
