"""The command line starts light: `competition --help` loads none of the heavy libraries, and
scoring a nuclei CSV loads no mesh or deep-learning library (their import costs seconds).
The time itself is a benchmark (benchmarks/bench_cli.py), not a test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.test_bad_input import nuclei_valid

HEAVY = ("numpy", "scipy", "trimesh", "open3d", "mlflow", "tensorflow", "keras")


def loaded_modules(*args: str) -> set[str]:
    """The modules in sys.modules after the CLI ran `args` in a fresh interpreter."""
    script = ("import json, sys\n"
              f"sys.argv = ['competition', *{list(args)!r}]\n"
              "from competition.interfaces.cli import main\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "print('MODULES=' + json.dumps(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("MODULES="))
    return set(json.loads(line[len("MODULES="):]))


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("args", [["--help"], ["score", "--help"], ["run", "--help"]])
def test_help_loads_no_heavy_library(args):
    loaded = top_level(loaded_modules(*args))
    assert "typer" in loaded  # the probe works
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_scoring_a_nuclei_csv_loads_no_mesh_or_deep_learning_library(demo_dirs, tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text(nuclei_valid(demo_dirs["demo-nuclei"]))
    loaded = top_level(loaded_modules("score", str(demo_dirs["demo-nuclei"]), str(path)))
    assert "numpy" in loaded  # it did score
    assert loaded.isdisjoint({"trimesh", "open3d", "tensorflow", "keras", "mlflow"})


@pytest.mark.parametrize("verbose", [False, True])
def test_tensorflow_log_noise_is_off_unless_verbose(verbose):
    """The logging the CLI sets up (before any import) silences TensorFlow's C++ INFO lines
    ("oneDNN custom operations are on", "cpu_feature_guard") and its Python warnings;
    `--verbose` lets them through."""
    script = ("from competition.interfaces import logs\n"
              f"logs.configure(verbose={verbose})\n"
              "import tensorflow as tf\n"
              "print(int(tf.reduce_sum(tf.ones((4, 4)))))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "16"
    chatter = [line for line in done.stderr.splitlines()
               if "tensorflow/core" in line or "oneDNN" in line]
    assert bool(chatter) == verbose, done.stderr[-2000:]
