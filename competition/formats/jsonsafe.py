"""Plain JSON values from anything a score, a run record or a configuration holds (pure).

The one sanitiser: strict JSON has no NaN or infinity (they become null), numpy scalars become
Python numbers, arrays become lists (or, past `max_items`, a note of their shape: a template
mesh in a run record is not worth its megabytes), anything else its `str`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def jsonable(value: Any, max_items: int | None = None) -> Any:
    """A value made of plain JSON types.

    Parameters
    ----------
    value : Any
        Nested dicts, lists and tuples of numbers, numpy scalars and arrays, strings...
    max_items : int, optional
        Arrays with more elements become a note of their shape.

    Returns
    -------
    Any
        Dicts with string keys, lists, int, float (finite), bool, str or None.

    Examples
    --------
    >>> import numpy as np
    >>> jsonable({"score": np.float32(0.5), "n": np.int64(3), "bad": float("nan"),
    ...           "shape": (2, 3), "ids": np.arange(3)})
    {'score': 0.5, 'n': 3, 'bad': None, 'shape': [2, 3], 'ids': [0, 1, 2]}
    >>> jsonable({"mesh": np.zeros((1000, 3))}, max_items=64)
    {'mesh': 'array(1000, 3)'}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v, max_items) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, max_items) for v in value]
    if isinstance(value, np.ndarray):
        if max_items is not None and value.size > max_items:
            return f"array{tuple(value.shape)}"
        return jsonable(value.tolist(), max_items)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def finite(value: Any) -> float | None:
    """A finite float, or None (missing, NaN, infinite or not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
