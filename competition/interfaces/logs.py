"""Logging for the command line: our warnings always, our info with --verbose; the chatter of
TensorFlow, absl and MLflow only with --verbose."""

from __future__ import annotations

import logging
import os
import warnings

NOISY = ("tensorflow", "absl", "keras", "mlflow", "alembic", "h5py", "numba", "urllib3")


def configure(verbose: bool = False) -> None:
    # TensorFlow's C++ logs are read from the environment when it loads: set before any import.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "2"
    if not verbose:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
        warnings.filterwarnings("ignore", module=r"(tensorflow|keras|absl|mlflow)(\.|$)")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger("competition")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
