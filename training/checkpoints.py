"""Checkpoints: which one to resume from, checked before use, and an atomic save of the final model."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from transformers import Trainer

from .auxiliary import unwrap

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message says which and why."""


def check_checkpoint(path: str) -> None:
    """Raises `CheckpointError` unless `path` holds a complete checkpoint: trainer state and readable weights."""
    from safetensors import safe_open

    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder}: no such folder ({Path(folder).resolve()})")
    try:
        json.loads((folder / "trainer_state.json").read_text())
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            raise FileNotFoundError("no *.safetensors weights")
        for file in weights:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    f.get_slice(key)  # reads the header and checks each tensor's extent against the file
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {folder} is incomplete or corrupt ({type(err).__name__}: {err}); delete it, or start "
            "afresh with --overwrite_output_dir true"
        ) from None


def check_checkpoint_fits(path: str, model) -> None:
    """Raises `CheckpointError` when the checkpoint holds other weights than `model` has (another head, pooling or
    auxiliary target): Trainer would load what matches and resume a half-random model with the saved step count."""
    from safetensors import safe_open

    saved = set()
    for file in Path(path).glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as f:
            saved |= set(f.keys())
    expected = set(model.state_dict().keys())
    if saved != expected:
        differing = sorted(saved ^ expected)
        raise CheckpointError(
            f"checkpoint {path} was saved from another model setup ({len(differing)} weights differ, e.g. "
            f"{differing[:3]}): continue with the flags it was made with, or start afresh with --overwrite_output_dir "
            "true or another --output_dir"
        )


def pick_resume_checkpoint(requested: str | None, output_dir: Path, overwrite: bool) -> str | None:
    """The explicit checkpoint (checked), else the newest complete one in `output_dir` (a run killed while
    saving can leave a partial last checkpoint: it is skipped with a warning)."""
    if requested:
        check_checkpoint(requested)
        return requested
    if overwrite or not output_dir.is_dir():
        return None
    candidates = sorted(
        (p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for candidate in candidates:
        try:
            check_checkpoint(str(candidate))
            return str(candidate)
        except CheckpointError as err:
            logger.warning("skipping %s", err)
    return None


def save_final_model(trainer: Trainer, output_dir: Path) -> None:
    """Writes the model (without any training-only layer) beside a temporary folder, then moves each file in:
    readers never see half a file."""
    tmp = output_dir / ".saving"
    shutil.rmtree(tmp, ignore_errors=True)
    unwrap(trainer.model).save_pretrained(str(tmp))
    trainer.processing_class.save_pretrained(str(tmp))
    for file in tmp.iterdir():
        os.replace(file, output_dir / file.name)
    tmp.rmdir()
