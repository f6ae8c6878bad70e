"""Where a U-Net entry's training time goes, in one run: the input pipeline alone, the train
step alone, and both together, in patches per second, with the thread settings in force.

    python benchmarks/bench_training.py [--entry submissions/unet] [--competition DIR]
        [--steps 10] [--images 64] [--set key=value ...] [--json out.json]

Uses the entry's own configuration for the competition's task (config.yaml, then `--set`):
the same patch size, batch, augmentation, scale handling and network as `competition run`.
Training images come from `--competition DIR` (the first `--images` of its public training
set, a real competition) or, without it, from a synthetic demo-nuclei competition prepared
in a temporary folder.

1. inputs: preparing the training images (zoom to the canonical size, input channels,
   weight maps): seconds per image.
2. pipeline: `PatchDataset` batches drawn in this thread alone (crop, flips, rotations,
   elastic deformation, brightness/contrast/noise), as configured, then without the elastic
   deformation, then without any augmentation.
3. train step: `train_on_batch` on batches drawn beforehand (no input cost), after one
   warm-up step (tracing).
4. fit: `model.fit` on the `PatchDataset` with the configured worker threads, one epoch of
   `--steps` batches after a warm-up epoch: what an epoch of `competition run` costs without
   its validation picture.
5. predict: whole 256x256 tiles through the network, forward only (the unit of prediction
   and of test-time augmentation).

The README's throughput figures are step 3 and 4 of `--entry submissions/unet` and `--entry
submissions/multiarm_unet`. Nothing is asserted (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def patches_per_second(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else float("inf")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def training_images(competition: Path | None, images: int, task_name: str,
                    config: dict[str, Any]) -> tuple[list[Any], list[Any], list[Any], str]:
    from competition.board.prepared import PreparedCompetition
    from competition.tasks import get_task
    from competition.tasks.preparing import prepare

    demos = [k for k, s in get_task(task_name).sources().items() if s.synthetic is not None]
    with tempfile.TemporaryDirectory() as tmp:
        root = competition or prepare(demos[0], Path(tmp) / "demo", seed=0)
        comp = PreparedCompetition.open(root)
        task = comp.task
        train = task.load_train(comp.public_dir)
        items = task.pixel_items(train, **(config.get("pixels") or {}))[:images]
        return ([i.image for i in items], [i.targets for i in items],
                [i.objects for i in items], f"{comp.name} ({len(items)} training items)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entry", type=Path, default=REPO / "submissions" / "unet")
    parser.add_argument("--competition", type=Path, help="a prepared competition")
    parser.add_argument("--task", default="nuclei", help="without --competition: the demo's")
    parser.add_argument("--steps", type=int, default=10, help="batches per measurement")
    parser.add_argument("--images", type=int, default=64, help="training images used")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="key=value on top of the entry's config.yaml (repeatable)")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args()

    from competition.board.prepared import PreparedCompetition
    from competition.entries import resolve_config

    task_name = PreparedCompetition.open(args.competition).task.name if args.competition \
        else args.task
    config = resolve_config(args.entry, task_name, None, args.sets)
    arms = "multiarm" in args.entry.resolve().name
    config = {**config, "arms": arms}

    from models import segmentation, threads
    from models.unet import build_multiarm_unet, build_unet

    thread_info = threads.configure_tensorflow(config.get("threads", "auto"))
    import keras
    import numpy as np

    keras.utils.set_random_seed(config["seed"])
    images, targets, objects, source = training_images(args.competition, args.images,
                                                       task_name, config)
    out: dict[str, Any] = {"entry": args.entry.name, "task": task_name, "source": source,
                           "hardware": f"{platform.machine()}, {cpu_model()}",
                           "threads": thread_info, "steps": args.steps,
                           "batch_size": config["batch_size"], "patch": config["patch"]}

    start = time.perf_counter()
    inputs, outputs = segmentation.training_pairs(images, targets, objects, config)
    out["inputs_seconds_per_image"] = round((time.perf_counter() - start) / len(images), 4)

    config["steps_per_epoch"] = args.steps  # every measurement draws `--steps` batches
    n = args.steps * config["batch_size"]
    pipeline = {}
    for label, changes in (("as configured", {}), ("no elastic", {"elastic": False}),
                           ("no augmentation", {"augment": False, "zoom": None})):
        dataset = segmentation.patch_dataset(inputs, outputs, {**config, **changes,
                                                               "workers": 1})
        start = time.perf_counter()
        batches = [dataset[k] for k in range(args.steps)]
        pipeline[label] = patches_per_second(n, time.perf_counter() - start)
    out["pipeline_patches_per_second"] = pipeline

    build = build_multiarm_unet if arms else build_unet
    out_channels = int(np.asarray(outputs[0]).shape[-1]) - (1 if config["weight_maps"] else 0)
    model = segmentation.compiled_model(config, out_channels, build)
    dataset = segmentation.patch_dataset(inputs, outputs, config)
    batches = [dataset[k] for k in range(args.steps)]
    model.train_on_batch(*batches[0])  # tracing
    start = time.perf_counter()
    for x, y in batches:
        model.train_on_batch(x, y)
    out["train_step_patches_per_second"] = patches_per_second(n, time.perf_counter() - start)

    model.fit(dataset, epochs=1, verbose=0)  # warm-up epoch: the fit function's tracing
    start = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0)
    out["fit_patches_per_second"] = patches_per_second(n, time.perf_counter() - start)

    from models.training import predict_batches

    predict = predict_batches(model, arms)
    tiles = np.stack([np.asarray(batches[0][0] if not arms else
                                 np.concatenate(list(batches[0][0].values()), -1))[0]] * 4)
    predict(tiles)
    start = time.perf_counter()
    for _ in range(args.steps):
        predict(tiles)
    out["predict_tiles_per_second"] = patches_per_second(4 * args.steps,
                                                         time.perf_counter() - start)
    fit_rate = out["fit_patches_per_second"]
    out["pipeline_share_of_an_epoch"] = round(fit_rate / pipeline["as configured"], 3)
    out["fit_over_train_step"] = round(fit_rate / out["train_step_patches_per_second"], 3)

    print(json.dumps(out, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
