#!/usr/bin/env python
"""Train a speech emotion recognition model with `Trainer` (runs under `accelerate launch` too).

    python train.py configs/tiny.yaml --output_dir runs/tiny                          # RAVDESS, actor-disjoint split
    python train.py configs/bundled.yaml --output_dir checkpoints/ge2e-ravdess-emodb  # the bundled model
    python train.py configs/tiny.yaml --emodb_dir ../shared/data/emodb16k --label_map '{"boredom": null}'
    python train.py configs/bundled.yaml --test_corpus emodb                          # leave one corpus out
    python train.py configs/tiny.yaml --split kfold --folds 5                         # leave-speakers-out CV
    python train.py --model_name_or_path facebook/wav2vec2-base --dataset_name path/to/audiofolder \\
        --label_column_name label --actor_column_name speaker --output_dir runs/mine
    python train.py ... --dataset_name user/hundreds-of-hours --streaming true --max_steps 20000   # larger than the disk
    accelerate launch --num_processes 2 train.py configs/wav2vec2-base.yaml ...

Labels come from the data (sorted label names, or a ClassLabel's order), optionally through --label_map.
Arguments come from flags, from a YAML/JSON file, or from a file followed by overriding flags (relative paths,
in a file or not, are relative to the folder the command runs in).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from transformers import set_seed

from modeling import SERFeatureExtractor
from training.args import ArgumentsError, check_train_args, parse_train_args
from training.checkpoints import CheckpointError
from training.data import preprocess, preprocessing_first, return_arrow_memory_promptly
from training.experiment import (
    finished_fold,
    load_records,
    make_splits,
    recipe_fingerprint,
    run_split,
    saved_feature_extractor,
    subsample,
)
from serving.files import write_json_atomic, write_text_atomic
from training.card import render_card
from training.hub import push_to_hub
from training.metrics import SUMMARY_METRICS
from training.results import assemble_results
from training.sources import DataError
from training.splits import SplitError
from training.streaming import prepare_streaming

logger = logging.getLogger("train")
# `--help` opens with the examples above, before the hundreds of Trainer flags.
USAGE = "%(prog)s [CONFIG.yaml] [--flag VALUE ...]\n" + __doc__


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    model_args, data_args, training_args = parse_train_args(argv, usage=USAGE)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    check_train_args(model_args, data_args, training_args)
    return_arrow_memory_promptly()
    wall_start = time.perf_counter()
    set_seed(training_args.seed)
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    feature_extractor = saved_feature_extractor(model_args) or SERFeatureExtractor(
        noise_reduction=data_args.noise_reduction
    )
    # The first process of the whole run reads and preprocesses into the cache; the others then read that cache (a
    # machine that does not share the cache folder preprocesses once for itself).
    with preprocessing_first(training_args, "data preprocessing"):
        if data_args.streaming:
            streamed = prepare_streaming(data_args, feature_extractor, training_args.seed, make_splits)
            records, labels, data_info = None, streamed.labels, streamed.info
            features, undecodable, splits = streamed.features, streamed.undecodable, [streamed.split]
        else:
            streamed = None
            records, labels, data_info = load_records(data_args)
            records = subsample(records, data_args.max_clips, training_args.seed)
            label2id = {label: i for i, label in enumerate(labels)}
            features, undecodable = preprocess(
                records, feature_extractor, label2id, data_args.preprocessing_cache_dir, data_args.preprocessing_num_workers
            )
    if streamed is None:
        splits = make_splits(features, data_args, training_args.seed)

    recipe = recipe_fingerprint(labels, model_args, data_args, training_args)
    runs = []
    for split in splits:
        if data_args.fold is not None and split.fold != data_args.fold:
            continue
        run_dir = output_dir if split.fold is None else output_dir / f"fold-{split.fold}"
        run_dir.mkdir(parents=True, exist_ok=True)
        logger.info("split: %s", split.summary())
        runs.append(
            finished_fold(split, run_dir, recipe, data_args.overwrite_output_dir)
            or run_split(
                split, features, records, labels, model_args, data_args, training_args, feature_extractor, run_dir,
                *((streamed.train, streamed.train_labels) if streamed else ()),
            )  # fmt: skip
        )
    if data_args.fold is not None:
        logger.info("fold %d done in %s; run again without --fold to collect all folds", data_args.fold, run_dir)
        return {k: v for k, v in runs[0].items() if k != "model"}
    model = runs[0]["model"]
    results = assemble_results(
        runs, model, labels, streamed.summary if streamed else features, data_info, undecodable, feature_extractor, model_args, data_args,
        training_args, argv, training_args.hub_model_id or output_dir.name,
    )  # fmt: skip
    results["training"]["wall_time_s"] = time.perf_counter() - wall_start

    if training_args.should_save:
        write_json_atomic(output_dir / "all_results.json", results)
        write_text_atomic(output_dir / "README.md", render_card(results))
        if training_args.push_to_hub:
            results["hub_repo"] = push_to_hub(output_dir, training_args)
    logger.info("test (%s): %s", results["split_summary"], {m: round(results["test"][m], 4) for m in SUMMARY_METRICS})
    return results


if __name__ == "__main__":
    try:
        main()
    except (DataError, SplitError, CheckpointError, ArgumentsError) as err:
        logging.getLogger("train").error("%s", err)
        sys.exit(2)
