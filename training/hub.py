"""Uploading a trained model folder to the Hub."""

from __future__ import annotations

from pathlib import Path

from transformers import TrainingArguments

# What a model folder needs on the Hub: weights, configs, the code trust_remote_code runs, the card and figures.
HUB_FILES = ["*.safetensors", "*.json", "*.py", "README.md", "*.png"]
NOT_HUB_FILES = [
    "checkpoint-*", "fold-*", "runs/*", "*_results.json", "trainer_state.json", "training_args.*",
    ".*",  # a temporary file that a killed write left behind
]  # fmt: skip


def hub_files(output_dir: Path) -> list[str]:
    """The files of a model folder that `push_to_hub` uploads (relative paths), as huggingface_hub selects them."""
    from huggingface_hub.utils import filter_repo_objects

    paths = sorted(p.relative_to(output_dir).as_posix() for p in Path(output_dir).rglob("*") if p.is_file())
    return list(filter_repo_objects(paths, allow_patterns=HUB_FILES, ignore_patterns=NOT_HUB_FILES))


def push_to_hub(output_dir: Path, training_args: TrainingArguments) -> str:
    from huggingface_hub import HfApi

    if not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (user/model-name)")
    api = HfApi(token=training_args.hub_token)
    repo = api.create_repo(training_args.hub_model_id, private=training_args.hub_private_repo, exist_ok=True)
    api.upload_folder(
        repo_id=repo.repo_id,
        folder_path=str(output_dir),
        allow_patterns=HUB_FILES,
        ignore_patterns=NOT_HUB_FILES,
        commit_message="Upload speech emotion recognition model",
    )
    return repo.repo_id
