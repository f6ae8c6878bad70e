"""The model so far, handed with an epoch's logs to a caller's `on_epoch` (validation
pictures, `competition cv --curves`): every `snapshot_every`-th epoch and the last, None
with the others, so that a caller scoring snapshots pays for a few of them only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


def snapshot_callback(on_epoch: Callable[..., None], trained: Any,
                      config: dict[str, Any]) -> keras.callbacks.Callback:
    every = max(int(config.get("snapshot_every", 1)), 1)
    last = int(config["epochs"]) - 1

    def epoch_end(epoch: int, logs: dict[str, Any] | None) -> None:
        shown = trained if (epoch + 1) % every == 0 or epoch == last else None
        on_epoch(epoch, dict(logs or {}), shown)

    return keras.callbacks.LambdaCallback(on_epoch_end=epoch_end)
