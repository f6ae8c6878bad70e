"""Tomography helpers for participants and organizers (the harness knows nothing of them):

    python -m competition.tasks.tomography.tools slices OUT_DIR [--spec SPEC] [--seed N]
        the generator's orthogonal slices (image and labels) as PNG pictures, one per
        setting in --vary (default: the documented variations), and `params.json`;
    python -m competition.tasks.tomography.tools zip STORE_DIR OUT.zip
        a zarr directory as the zip `competition submit` makes of a folder (same folder,
        same bytes), e.g. to upload it through the portal.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from competition.tasks.tomography import pictures, synthetic

# What the pictures show: the defaults, then one setting changed at a time.
VARIATIONS = {
    "default": "",
    "isotropic": "concentration=0",
    "aligned": "concentration=30",
    "thick-fibres": "fibre_radius=5,fibre_length=200",
    "more-pores": "pore_fraction=0.04",
    "clean": "noise=0,rings=0,cupping=0,texture=0,blur=0",
    "noisy": "noise=30,blur=1.5",
}


def slices_picture(spec: str | None, seed: int,
                   size: int = 160) -> tuple[np.ndarray, dict[str, Any]]:
    """The orthogonal central planes of a cube of side `size` drawn with `spec`'s settings
    (whatever size the spec names, only that cube is rendered: seconds)."""
    params = synthetic.parse_spec(spec)
    shape = tuple(min(s, size) for s in params.shape)
    params = synthetic.Params(**{**params.__dict__, "shape": shape})
    model = synthetic.draw(params, seed)
    image, labels = synthetic.render(model, (0, 0, 0), shape)  # type: ignore[arg-type]
    return pictures.orthogonal(image, labels), params.as_json()


def write_slices(out: Path, spec: str | None, seed: int, vary: list[str] | None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written, described = [], {}
    names = vary if vary is not None else list(VARIATIONS)
    for name in names:
        extra = VARIATIONS.get(name, name)
        full = ",".join(p for p in (spec or "", extra) if p)
        picture, params = slices_picture(full or None, seed)
        path = out / f"tomography-{_safe(name)}.png"
        Image.fromarray(picture).save(path, optimize=True)
        written.append(path)
        described[path.name] = {"spec": full, "seed": seed, "params": params}
    (out / "params.json").write_text(json.dumps(described, indent=1) + "\n")
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:60]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m competition.tasks.tomography.tools")
    commands = parser.add_subparsers(dest="command", required=True)
    slices = commands.add_parser("slices", help="the generator's orthogonal slices as PNG")
    slices.add_argument("out", type=Path)
    slices.add_argument("--spec", default=None, help="generator settings (see parse_spec)")
    slices.add_argument("--seed", type=int, default=0)
    slices.add_argument("--vary", nargs="*", default=None,
                        help=f"variations to draw: {', '.join(VARIATIONS)} or key=value,...")
    zipper = commands.add_parser("zip", help="a zarr directory as one zip file")
    zipper.add_argument("store", type=Path)
    zipper.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "slices":
        for path in write_slices(args.out, args.spec, args.seed, args.vary):
            print(path)
    else:
        from competition.formats.folder_zip import zip_folder
        from competition.tasks.tomography.task import TomographyTask

        path = zip_folder(args.store, args.out, TomographyTask.limits)
        print(f"{path} ({math.ceil(path.stat().st_size / 1024)} KiB)")


if __name__ == "__main__":
    main()
