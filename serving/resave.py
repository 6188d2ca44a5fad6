"""Rewrites what `save_pretrained` writes beside a saved model's weights: its code files (the ones a Hub user runs with
`trust_remote_code=True`), `config.json` (with `auto_map` and `custom_pipelines`) and `preprocessor_config.json`, from
this checkout's `modeling` package. The weights are left as they are.

    python -m serving.resave checkpoints/ge2e-ravdess-emodb

A model folder saved by an earlier version of this project then runs today's inference policy wherever it goes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from modeling import SERFeatureExtractor, SERForSequenceClassification

WRITTEN = ("config.json", "preprocessor_config.json")


def saved_files(folder: str | Path, into: str | Path) -> list[Path]:
    """Saves the model of `folder` into `into` as `save_pretrained` does; the code and config files written."""
    SERForSequenceClassification.from_pretrained(folder).save_pretrained(into)
    SERFeatureExtractor.from_pretrained(folder).save_pretrained(into)
    return sorted(p for p in Path(into).iterdir() if p.suffix == ".py" or p.name in WRITTEN)


def resave(folder: str | Path) -> list[str]:
    """Replaces the code and config files of `folder` with what saving writes now; returns the files changed."""
    folder = Path(folder)
    changed = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = saved_files(folder, tmp)
        names = {p.name for p in fresh}
        for stale in folder.glob("*.py"):
            if stale.name not in names:
                stale.unlink()
                changed.append(f"removed {stale.name}")
        for path in fresh:
            target = folder / path.name
            if not target.exists() or target.read_bytes() != path.read_bytes():
                shutil.copyfile(path, target)
                changed.append(path.name)
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="saved model folders")
    for folder in parser.parse_args(argv).folders:
        changed = resave(folder)
        print(f"{folder}: {', '.join(changed) if changed else 'already current'}", file=sys.stderr)


if __name__ == "__main__":
    main()
