"""Cross-validated landmark evaluation over every specimen of a landmark source: ALPACA, MALPACA,
the bias-correction ablation, the refiner and the refiner without images (organizers' script;
it reads the manual landmarks of every specimen).

    python benchmarks/landmarks_cv.py ../shared/data/mouse_skulls --out data/landmarks-cv
        [--folds 5] [--seed 0] [--workers 2] [--methods alpaca,malpaca,bias,refiner,...]
        [--malpaca 3] [--alpaca-config FILE] [--refiner-config FILE] [--set key=value ...]

SOURCE is a folder of `Models/*.ply` and `LMs/*.mrk.json` (or `.fcsv`), as SlicerMorph ships
them: its specimens are split into `--folds` folds by `--seed`, and each is predicted once,
while held out, by methods that see only the other folds. The held-out specimens reach the
methods without their landmarks: only the scoring here reads them. Or SOURCE is a prepared landmark
competition: its hidden specimens are predicted by methods that see its training specimens,
ALPACA's points being the competition's reference (`competition reference`) where it has
one. The methods:

- `alpaca`: one template, the most typical training specimen (submissions/alpaca);
- `malpaca`: `--malpaca` templates chosen by k-means of the Procrustes-aligned training
  shapes, the median of their transfers;
- `bias`: ALPACA plus each landmark's mean offset learned on the training folds' leave-one-out
  ALPACA estimates (competition/landmark_imaging/bias.py): ablation (a), no images; the
  share of the offset applied is chosen as the refiner chooses its shrinkage (most wins);
- `bias-error`: the same, the share of lowest mean error: the entry submissions/alpaca_bias
  (its `correction`, on the same leave-one-out estimates);
- `refiner`: submissions/xception_landmarks trained on the training folds' leave-one-out
  ALPACA estimates, refining the held-out fold's ALPACA estimates;
- `noise`: the same refiner with its images replaced by noise: ablation (b).

Each method's mean error comes with a 95 % bootstrap interval over specimens (a skull's
points are not independent), and each pair's difference with a paired one.

Every ALPACA transfer (template, target, seed) is cached under OUT/transfers/<settings hash>/
with its seconds, planned first and run on `--workers` processes; a rerun reuses them, and
finished folds' predictions (OUT/folds/) too. Writes OUT/results.json, OUT/errors.npz,
OUT/per_landmark.csv, OUT/table.md and OUT/per_landmark_error.png, and logs them to the
organizers' MLflow store (experiment `landmarks-cv/organizers`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from competition.entries import load_entry, resolve_config  # noqa: E402
from competition.errors import CompetitionError  # noqa: E402
from competition.formats import landmarks_csv, meshes  # noqa: E402
from competition.landmark_imaging import evaluation  # noqa: E402
from competition.tasks import get_task  # noqa: E402
from competition.tasks.landmarks.data import LandmarkData  # noqa: E402
from competition.tasks.landmarks.prepare import (  # noqa: E402
    TASK_NAME,
    find_specimens,
    load_clean_mesh,
)

ALPACA = REPO / "submissions" / "alpaca"
BIAS = REPO / "submissions" / "alpaca_bias"
REFINER = REPO / "submissions" / "xception_landmarks"
METHODS = ("alpaca", "malpaca", "bias", "bias-error", "refiner", "noise")
TRAINED = {"refiner": "real", "noise": "noise"}
# Besides each method against ALPACA: the refiner counts as working only where it beats the
# bias correction (ablation a) and its own images-free twin (ablation b).
PAIRS = [("bias", "alpaca"), ("bias-error", "alpaca"), ("refiner", "bias"),
         ("refiner", "bias-error"), ("refiner", "noise"), ("noise", "bias")]
CORRECTIONS = {"bias": "wins", "bias-error": "error"}
log = logging.getLogger("benchmarks.landmarks_cv")


def load_source(source: Path) -> LandmarkData:
    """Every specimen of a SlicerMorph-style folder, its mesh and manual landmarks."""
    found = find_specimens(source)
    ids, surfaces, points = [], [], []
    names: list[str] | None = None
    for specimen, (ply, markup) in found.items():
        marks = meshes.read_markups(markup.read_bytes(), str(markup))
        names = names or list(marks)
        if sorted(marks) != sorted(names):
            raise CompetitionError(f"{markup}: landmarks differ from the other specimens'")
        ids.append(specimen)
        surfaces.append(load_clean_mesh(ply))
        points.append([marks[n] for n in names])
    return LandmarkData(ids, surfaces, names or [], np.asarray(points, float))


def subset(data: LandmarkData, index: np.ndarray | list[int],
           points: bool = True) -> LandmarkData:
    """The specimens at `index`; `points=False`: without their landmarks (held out)."""
    index = [int(k) for k in index]
    kept = data.points[index] if points and data.points is not None else None
    return LandmarkData([data.ids[k] for k in index], [data.meshes[k] for k in index],
                        data.landmarks, kept)


def planned_transfers(folds: list[tuple[LandmarkData, LandmarkData | None]], alpaca: Any,
                      config: dict[str, Any], malpaca: int,
                      methods: list[str]) -> set[tuple[str, str, int]]:
    """Every (template, target, seed) the folds (training, held-out specimens; None: the
    held-out side is not planned) need: the held-out specimens' templates, and each
    training specimen's leave-one-out template (for `bias` and the refiners)."""
    needed = set()
    seed = config["seed"]
    for train, test in folds:
        if test is not None:
            for count in [1] + ([malpaca] if "malpaca" in methods else []):
                chosen = alpaca.template_indices(train.points, count, seed)
                needed |= {(train.ids[t], target, seed + j) for j, t in enumerate(chosen)
                           for target in test.ids}
        if set(methods) & {"bias", "bias-error", "refiner", "noise"}:
            for k in range(len(train.ids)):
                rest = [j for j in range(len(train.ids)) if j != k]
                t = alpaca.template_indices(train.points[rest], 1, seed)[0]
                needed.add((train.ids[rest[t]], train.ids[k], seed))
    return needed


def _transfer(template: np.ndarray, landmarks: np.ndarray, target: np.ndarray,
              config: dict[str, Any], seed: int) -> tuple[np.ndarray, float]:
    alpaca = load_entry(ALPACA)
    start = time.process_time()
    points, _ = alpaca.transfer(template, landmarks, target, config, seed=seed)
    return points, time.process_time() - start


def run_transfers(data: LandmarkData, needed: set[tuple[str, str, int]], cache: Any,
                  config: dict[str, Any], workers: int, console: Console) -> None:
    """The planned transfers not cached yet, on `workers` processes (1: in this one)."""
    todo = sorted(key for key in needed if cache.get(key) is None)
    console.print(f"ALPACA transfers: {len(needed)} needed, {len(todo)} to run "
                  f"on {workers} processes", markup=False)
    index = {name: k for k, name in enumerate(data.ids)}

    def arguments(key: tuple[str, str, int]) -> tuple:
        t, s = index[key[0]], index[key[1]]
        return (np.asarray(data.meshes[t].vertices), data.points[t],
                np.asarray(data.meshes[s].vertices), config, key[2])

    if not todo:
        return
    if workers <= 1:  # in this process (the smoke test)
        for key in todo:
            cache.put(key, *_transfer(*arguments(key)))
        return
    context = multiprocessing.get_context("spawn")  # no copied locks of this process' threads
    with ProcessPoolExecutor(workers, mp_context=context) as pool, \
            Progress(console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("ALPACA transfers", total=len(todo))
        futures = {pool.submit(_transfer, *arguments(key)): key for key in todo}
        for future in as_completed(futures):
            cache.put(futures[future], *future.result())
            bar.advance(task)


def seconds_per_specimen(cache: Any, fold_info: list[dict[str, Any]], count: int,
                         seed: int) -> float | None:
    """Mean CPU seconds of one held-out specimen's transfers with `count` templates (a
    method's time per specimen), from the cached transfers it used."""
    totals = []
    for fold in fold_info:
        templates = fold.get("templates", {}).get(str(count))
        for target in fold["held_out"] if templates else []:
            keys = [(t, target, seed + j) for j, t in enumerate(templates)]
            if all(cache.path(key).is_file() for key in keys):
                totals.append(sum(cache.seconds(key) for key in keys))
    return float(np.mean(totals)) if totals else None


def write_estimates(path: Path, data: LandmarkData, estimates: np.ndarray) -> Path:
    path.write_bytes(landmarks_csv.write_points(
        [(i, n, estimates[s, k]) for s, i in enumerate(data.ids)
         for k, n in enumerate(data.landmarks)]))
    return path


def load_split(directory: Path
               ) -> tuple[LandmarkData, LandmarkData, np.ndarray, np.ndarray | None]:
    """A prepared landmark competition's training specimens, its hidden specimens (meshes
    only, as participants have them), their manual landmarks (from the private solution,
    for scoring only) and, where one is installed, the reference predictions the board's win
    rate is computed against (ALPACA's, in `private/reference.csv`)."""
    from competition.board.prepared import PreparedCompetition

    comp = PreparedCompetition.open(directory)
    if comp.task.name != TASK_NAME:
        raise CompetitionError(f"{directory}: a {comp.task.name} competition, not landmarks")
    train = comp.task.load_train(comp.public_dir)
    test = comp.task.load_inputs(comp.public_dir)
    truths, _ = landmarks_csv.read_points(comp.solution_path.read_bytes(), with_usage=True)
    hidden = np.array([[truths[i][n] for n in test.landmarks] for i in test.ids])
    reference = None
    if comp.reference_path is not None:
        given, _ = landmarks_csv.read_points(comp.reference_path.read_bytes())
        reference = np.array([[given[i][n] for n in test.landmarks] for i in test.ids])
    return train, test, hidden, reference


def fold_predictions(train: LandmarkData, test: LandmarkData, methods: list[str],
                     alpaca: Any, alpaca_config: dict[str, Any], malpaca: int,
                     refiner_config: dict[str, Any], cache: Any, folder: Path,
                     test_cache: Any = None, given_alpaca: np.ndarray | None = None
                     ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Each method's (test specimens, landmarks, 3) points, trained on `train` only (`test`
    carries no landmarks); stored
    in `folder`, and read back from there on a rerun. `cache` keeps the training specimens'
    transfers, `test_cache` the test specimens'; `given_alpaca`: ALPACA's test points are
    these (the board's reference) instead of new transfers."""
    folder.mkdir(parents=True, exist_ok=True)
    stored = folder / "predictions.npz"
    info_path = folder / "fold.json"
    done: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {}
    if stored.is_file():
        with np.load(stored) as old:
            done = {k: np.asarray(old[k]) for k in old.files}
        info = json.loads(info_path.read_text())

    def save() -> None:
        np.savez(stored, **done)
        info_path.write_text(json.dumps(info, indent=1, default=float) + "\n")

    def placed(count: int) -> np.ndarray:
        model = alpaca.choose_templates(train, {**alpaca_config, "templates": count})
        info.setdefault("templates", {})[str(count)] = [t[0] for t in model["templates"]]
        out = alpaca.place(model, test, alpaca_config, test_cache)
        return np.array([out[i] for i in test.ids])

    if given_alpaca is not None:
        done["alpaca"] = np.asarray(given_alpaca, float)
        info["alpaca"] = "the competition's reference predictions"
    if "alpaca" not in done:
        done["alpaca"] = placed(1)
    if "malpaca" in methods and "malpaca" not in done:
        done["malpaca"] = placed(malpaca)
    loo = None
    if set(methods) & {"bias", "bias-error", "refiner", "noise"}:
        loo = alpaca.cross_estimates(train, {**alpaca_config, "templates": 1}, cache=cache)
        info["loo_mean_error"] = float(np.linalg.norm(loo - train.points, axis=2).mean())
    for method, criterion in CORRECTIONS.items():
        if method in methods and method not in done:
            correction = load_entry(BIAS).correction(
                loo, train.points, {"share": "auto", "criterion": criterion})
            info[f"{method}_share"] = correction.share
            done[method] = np.array([correction.apply(e) for e in done["alpaca"]])
    save()
    task = get_task(TASK_NAME)
    refiner = load_entry(REFINER)
    for method, images in TRAINED.items():
        if method not in methods or method in done:
            continue
        config = {**refiner_config, "images": images,
                  "training_estimates": str(write_estimates(folder / "train_estimates.csv",
                                                            train, loo)),
                  "estimates": str(write_estimates(folder / "test_estimates.csv", test,
                                                   done["alpaca"]))}
        start = time.perf_counter()
        model = refiner.fit(task, train, config)
        fitted = time.perf_counter() - start
        out = refiner.predict(task, model, test, config)
        done[method] = np.array([out[i] for i in test.ids])
        info[method] = {"fit_seconds": fitted, **model.report}
        save()
    return {m: done[m] for m in methods}, info


def per_landmark_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    reference = summary["reference"]
    for k, landmark in enumerate(summary["landmark_names"]):
        row: dict[str, Any] = {"landmark": landmark}
        for name, m in summary["methods"].items():
            row[f"{name}_mean_error"] = round(m["per_landmark_mean"][k], 4)
            if name != reference:
                low, high = m["per_landmark_win_rate_ci"][k]
                row[f"{name}_win_rate"] = round(m["per_landmark_win_rate"][k], 2)
                row[f"{name}_win_rate_low"], row[f"{name}_win_rate_high"] = \
                    round(low, 2), round(high, 2)
                row[f"{name}_p"] = m["per_landmark_p"][k]
        rows.append(row)
    return rows


def plot(summary: dict[str, Any], path: Path) -> None:
    """Per-landmark mean error of every method, and win rates against the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = summary["landmark_names"]
    x = np.arange(len(names))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, len(names) * 0.25), 7),
                                      sharex=True)
    for k, (name, m) in enumerate(summary["methods"].items()):
        colour = f"C{k}"  # the same in both panels
        top.plot(x, m["per_landmark_mean"], marker="o", markersize=3, label=name, color=colour)
        if name != summary["reference"]:
            rate = np.array(m["per_landmark_win_rate"])
            ci = np.array(m["per_landmark_win_rate_ci"]).T
            shift = 0.15 * (k - len(summary["methods"]) / 2)  # side by side, not on top
            bottom.errorbar(x + shift, rate, yerr=[rate - ci[0], ci[1] - rate], fmt="o",
                            markersize=3, capsize=2, label=name, color=colour)
    top.set_ylabel("mean error (mm)")
    top.legend(fontsize=8)
    bottom.axhline(50, color="grey", lw=0.8)
    bottom.axhline(75, color="grey", lw=0.8, ls="--")
    bottom.set_ylabel(f"win rate vs {summary['reference']} (%)")
    bottom.set_xticks(x, names, fontsize=6, rotation=90)
    bottom.set_xlabel("landmark")
    fig.suptitle(f"{summary['specimens']} specimens, each predicted while held out")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def log_to_mlflow(out: Path, summary: dict[str, Any], params: dict[str, Any]) -> str | None:
    from competition.tracking.config import CompetitionKey, load_config
    from competition.tracking.runs import Tracker, numeric_fields

    config = load_config()
    if not config.enabled or config.uri("organizers") is None:
        return None
    tracker = Tracker(config, "organizers")
    # Not a prepared competition: a fixed key of its own.
    run_id = tracker.start(CompetitionKey("landmarks-cv", "landmarks-cv"),
                           f"cv-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}",
                           {"kind": "evaluation"})
    metrics = {}
    for name, m in summary["methods"].items():
        metrics.update(numeric_fields({k: v for k, v in m.items()
                                       if not isinstance(v, list)}, f"{name}."))
    tracker.log(run_id, params=params, metrics=metrics)
    for name in ("results.json", "per_landmark.csv", "table.md", "per_landmark_error.png"):
        tracker.log_file(run_id, out / name, "cv")
    tracker.end(run_id)
    return run_id


def main(source: Path = typer.Argument(..., help="Models/*.ply and LMs/ of every specimen."),
         out: Path = typer.Option(..., help="Where caches, predictions and results go."),
         folds: int = typer.Option(5, help="Cross-validation folds."),
         seed: int = typer.Option(0, help="Fixes the folds."),
         workers: int = typer.Option(2, help="Processes for the ALPACA transfers."),
         methods: str = typer.Option(",".join(METHODS), help="Comma-separated, of "
                                     + ", ".join(METHODS) + " (alpaca always)."),
         malpaca: int = typer.Option(3, help="MALPACA's template count."),
         alpaca_config: Path | None = typer.Option(None, help="On top of submissions/alpaca/"
                                                   "config.yaml (e.g. its smoke.yaml)."),
         refiner_config: Path | None = typer.Option(None, help="On top of submissions/"
                                                    "xception_landmarks/config.yaml."),
         set_: list[str] = typer.Option([], "--set", help="Refiner key=value overrides."),
         cache_root: Path | None = typer.Option(None, "--cache", help="Where transfers are "
                                                "cached (default OUT/transfers)."),
         mlflow: bool = typer.Option(True, help="Log the results to the organizers' store.")
         ) -> None:
    console = Console(stderr=True)
    wanted = ["alpaca"] + [m for m in methods.split(",") if m and m != "alpaca"]
    unknown = [m for m in wanted if m not in METHODS]
    if unknown:
        console.print(f"error: unknown methods {unknown}; choose from {', '.join(METHODS)}",
                      markup=False)
        raise typer.Exit(2)
    try:
        started = time.perf_counter()
        alpaca = load_entry(ALPACA)
        a_config = resolve_config(ALPACA, TASK_NAME, alpaca_config, [])
        r_config = resolve_config(REFINER, TASK_NAME, refiner_config, set_)
        cache = alpaca.TransferCache.for_settings(cache_root or out / "transfers", a_config)
        fold_info = []
        if (source / "competition.yaml").is_file():  # the hidden split of a competition
            train, data, truths, reference = load_split(source)
            console.print(f"{source}: {len(train.ids)} training, {len(data.ids)} hidden "
                          "specimens", markup=False)
            # The training side's transfers are planned and cached (the names are the
            # source's); the renamed hidden specimens' are not.
            needed = planned_transfers([(train, None)], alpaca, a_config, malpaca, wanted)
            run_transfers(train, needed, cache, a_config, workers, console)
            found, info = fold_predictions(train, data, wanted, alpaca, a_config, malpaca,
                                           r_config, cache, out / "folds" / "split",
                                           given_alpaca=reference)
            predicted = found
            fold_info.append({"held_out": data.ids, **info})
        else:
            data = load_source(source)
            truths = data.points  # read by the scoring below only
            parts = evaluation.folds(len(data.ids), folds, seed)
            needed = planned_transfers(
                [(subset(data, np.setdiff1d(np.arange(len(data.ids)), part)),
                  subset(data, part, points=False)) for part in parts], alpaca, a_config,
                malpaca, wanted)
            run_transfers(data, needed, cache, a_config, workers, console)
            predicted = {m: np.zeros_like(truths) for m in wanted}
            for f, part in enumerate(parts):
                console.print(f"fold {f + 1}/{len(parts)}: {len(part)} held out", markup=False)
                train_index = np.setdiff1d(np.arange(len(data.ids)), part)
                found, info = fold_predictions(
                    subset(data, train_index), subset(data, part, points=False), wanted,
                    alpaca, a_config,
                    malpaca, r_config, cache, out / "folds" / f"fold{f + 1}", test_cache=cache)
                for m in wanted:
                    predicted[m][part] = found[m]
                fold_info.append({"held_out": [data.ids[k] for k in part], **info})
    except CompetitionError as e:
        console.print(f"error: {e}", markup=False)
        raise typer.Exit(2) from None
    errors = {m: np.linalg.norm(predicted[m] - truths, axis=2) for m in wanted}
    summary = evaluation.compare(errors, data.landmarks, "alpaca", against=PAIRS)
    seconds = [cache.seconds(key) for key in needed]
    split = (source / "competition.yaml").is_file()
    summary.update({
        "source": str(source), "evaluation": "hidden split" if split else "cross-validation",
        "folds": None if split else folds, "seed": seed, "specimens_ids": data.ids,
        "transfers": len(needed), "transfer_cpu_hours": sum(seconds) / 3600,
        "seconds_per_transfer": float(np.mean(seconds)) if seconds else None,
        "alpaca_seconds_per_specimen": seconds_per_specimen(cache, fold_info, 1,
                                                            a_config["seed"]),
        "malpaca_seconds_per_specimen": seconds_per_specimen(cache, fold_info, malpaca,
                                                             a_config["seed"]),
        "malpaca_templates": malpaca if "malpaca" in wanted else None,
        "wall_seconds": time.perf_counter() - started, "fold_info": fold_info,
        "refiner_config": {k: v for k, v in r_config.items() if k != "alpaca"}})
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    np.savez(out / "errors.npz", specimens=np.array(data.ids), landmarks=np.array(data.landmarks),
             **errors)
    rows = per_landmark_rows(summary)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (out / "per_landmark.csv").write_text(buffer.getvalue())
    (out / "table.md").write_text(evaluation.markdown_table(summary))
    plot(summary, out / "per_landmark_error.png")
    run_id = log_to_mlflow(out, summary, {"folds": folds, "seed": seed, "methods": wanted,
                                          "source": str(source)}) if mlflow else None
    for name, m in summary["methods"].items():
        low, high = m["mean_error_ci"]
        line = f"{name}: mean error {m['mean_error']:.3f} mm ({low:.3f}-{high:.3f})"
        if "win_rate" in m:
            low, high = m["win_rate_ci"]
            line += (f", win rate {m['win_rate']:.1f} % ({low:.1f}-{high:.1f}) against "
                     f"alpaca, Wilcoxon p {m['p_specimens']:.3g} (per-specimen means)")
        print(line)
    for pair, p in summary["pairs"].items():
        low, high = p["mean_error_difference_ci"]
        print(f"{pair}: Wilcoxon p {p['p_specimens']:.3g}, mean error difference "
              f"{p['mean_error_difference']:+.3f} mm ({low:+.3f} to {high:+.3f}), better on "
              f"{p['specimens_better']} of {summary['specimens']} specimens")
    print(f"{len(needed)} ALPACA transfers, {summary['transfer_cpu_hours']:.2f} CPU hours; "
          f"results in {out}" + (f"; MLflow run {run_id}" if run_id else ""))


if __name__ == "__main__":
    typer.run(main)
