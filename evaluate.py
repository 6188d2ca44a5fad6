#!/usr/bin/env python
"""Evaluate a saved model on any data source, with the metrics train.py reports.

    python evaluate.py --model_name_or_path checkpoints/ge2e-ravdess-emodb --emodb_dir ../shared/data/emodb16k \\
        --label_map '{"boredom": null}' --output_dir runs/eval-emodb
    python evaluate.py --model_name_or_path runs/tiny --data_dir ../shared/data/ravdess16k --part test --seed 42
    accelerate launch --multi_gpu --num_processes 2 evaluate.py --model_name_or_path ... --data_dir ...

Data flags are train.py's, given as flags (--data_dir, --emodb_dir, --manifest, --dataset_name, --label_map,
split flags and --seed; a training YAML config is not read here).
--part test evaluates the test part of the split those flags and --seed draw (the run's own test speakers);
the default evaluates every clip. --part validation --fit_temperature calibrates the model: it fits the
temperature on the run's validation speakers and saves it in the model's config.json (and card). Clips whose labels the model does not have are counted and left out.
Writes OUTPUT_DIR/eval_results.json (accuracy, f1_macro, ..., per_corpus), the confusion matrix and
eval_results.md. Under `accelerate launch` (or torchrun) the first process preprocesses the data for all, the processes
share the clips, and the first one writes the results.
"""

from __future__ import annotations

import logging
import shlex
import sys

from accelerate import PartialState
from transformers import HfArgumentParser

from serving.loading import ModelError
from training.args import DataArguments, EvaluationArguments
from training.data import return_arrow_memory_promptly
from training.evaluation import evaluate_model, results_markdown
from training.sources import DataError
from training.splits import SplitError


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((EvaluationArguments, DataArguments), allow_abbrev=False)
    argv = sys.argv[1:] if argv is None else argv
    eval_args, data_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    return_arrow_memory_promptly()
    results = evaluate_model(eval_args, data_args, command="python evaluate.py " + shlex.join(argv))
    if PartialState().is_main_process:  # under `accelerate launch`, one table
        print(results_markdown(results))
    return results


if __name__ == "__main__":
    try:
        main()
    except (DataError, SplitError, ModelError) as err:
        logging.getLogger("evaluate").error("%s", err)
        sys.exit(2)
