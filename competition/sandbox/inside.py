"""What runs in the sandbox: `python -m competition.sandbox.inside --task TASK --entry /entry
--public /data/public --out /out`.

The same steps as `competition run` for the submission file (competition/training/run.py),
so a code submission's file matches what the organizers' run of the same entry writes:
the entry's config for the task, its model (fitted here on the public training data less the
task's held-out item, or loaded by the entry's `load(task, folder, config)` from the
`model/` folder it carries), its predictions for the test inputs, written by the task. Errors
propagate: a traceback on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from competition.entries import load_entry, resolve_config
from competition.tasks import get_task

log = logging.getLogger("competition.sandbox.inside")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="competition.sandbox.inside")
    parser.add_argument("--task", required=True)
    parser.add_argument("--entry", type=Path, required=True)
    parser.add_argument("--public", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    task = get_task(args.task)
    config = resolve_config(args.entry, task.name)
    entry = load_entry(args.entry)
    load = getattr(entry, "load", None)
    if callable(load) and (args.entry / "model").is_dir():
        log.info("loading the model the entry carries")
        model = load(task, args.entry / "model", config)
    else:
        log.info("loading the training data")
        train, _ = task.hold_out(task.load_train(args.public), config.get("seed", 0))
        log.info("training")
        model = entry.fit(task, train, config)
    log.info("predicting the test inputs")
    inputs = task.load_inputs(args.public)
    predictions = entry.predict(task, model, inputs, config)
    path = args.out / ("submission" + task.submission_suffix)
    path.write_bytes(task.write_submission(inputs, predictions))
    log.info("wrote %s in %.1f s", path, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
