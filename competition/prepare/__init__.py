"""`competition prepare KIND`: real data sets and synthetic demos -> prepared competitions."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from competition.errors import SourceDataError
from competition.prepare import dsb2018, isbi2012, mouse_landmarks, synthetic
from competition.prepare.common import DEFAULT_PUBLIC_FRACTION, staged_output

REAL: dict[str, Callable] = {
    "dsb2018": dsb2018.prepare,
    "isbi2012": isbi2012.prepare,
    "mouse-landmarks": mouse_landmarks.prepare,
}
# Each demo writes synthetic source data in the real layout, then runs the real preparer.
DEMOS: dict[str, tuple[Callable, Callable, dict]] = {
    "demo-nuclei": (synthetic.write_nuclei_source, dsb2018.prepare, {"test_fraction": 0.25}),
    "demo-em": (synthetic.write_em_source, isbi2012.prepare, {}),
    "demo-landmarks": (synthetic.write_landmarks_source, mouse_landmarks.prepare, {}),
}
KINDS = (*REAL, *DEMOS)


def prepare(kind: str, out: Path, source: Path | None = None, seed: int = 0,
            public_fraction: float = DEFAULT_PUBLIC_FRACTION,
            test_fraction: float | None = None, force: bool = False,
            name: str | None = None) -> Path:
    """Prepare a competition in `out`; all or nothing.

    The name defaults to the kind (not the directory), so the same inputs give the same bytes
    wherever they are written.
    """
    if not 0 < public_fraction < 1:
        raise SourceDataError(f"public fraction {public_fraction} must lie strictly in (0, 1)")
    options = {} if test_fraction is None else {"test_fraction": test_fraction}
    out = Path(out)
    if kind in REAL:
        if source is None:
            raise SourceDataError(f"{kind} needs --source DIR (the downloaded data set)")
        source = Path(source)
        if not source.is_dir():
            raise SourceDataError(f"{source}: source folder not found")
        with staged_output(out, force) as stage:
            REAL[kind](source, stage, seed, public_fraction, name=name or kind, kind=kind,
                       **options)
        return out
    if kind in DEMOS:
        write_source, build, defaults = DEMOS[kind]
        with tempfile.TemporaryDirectory() as tmp, staged_output(out, force) as stage:
            write_source(Path(tmp), seed)
            build(Path(tmp), stage, seed, public_fraction, name=name or kind, kind=kind,
                  **{**defaults, **options})
        return out
    raise SourceDataError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
