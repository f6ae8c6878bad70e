"""Synthetic three-phase fibre composites (glass fibre, polymer matrix, pores), as X-ray
tomography shows them, with exact labels; any size, in bounded memory.

Everything is a function of the position and the seed, never of how the volume is cut:

- fibres are finite cylinders defined analytically (axis end points and radius), drawn from
  the seed once for the whole volume (a Boolean model: centres uniform, lengths log-normal,
  directions von Mises-Fisher about a preferred direction, radii normal);
- pores are ellipsoids (centre, axes, semi-axes), painted over the matrix only;
- grey levels: one mean per class with a grey offset per fibre and a smooth texture in the
  matrix, blurred (the point spread), plus correlated noise from a counter-based hash of the
  voxel's global index, plus ring artefacts and beam-hardening cupping (functions of the
  distance to the rotation axis, the z axis through the slice centre).

Each chunk is rendered from the fibres and pores that can reach it, on the chunk grown by a
halo as wide as the blur kernels, then cropped: so a fibre crossing a chunk border is
continuous, and different chunkings give the same bytes. Chunks are written to zarr in
parallel by dask; memory is a few chunks, whatever the size of the volume.

`competition prepare demo-tomography --synthetic SPEC`: SPEC is the size `XxYxZ` (columns x
rows x slices, as a raw sidecar gives it), optionally followed by `,key=value` settings of
`Params` (e.g. `1300x1040x1900,fibre_fraction=0.2,direction=z`); see `parse_spec`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
from scipy import ndimage

from competition.errors import SourceDataError

CLASSES = ("matrix", "fibre", "pore")
MAX_VOXELS = 20_000_000_000  # a sanity bound on a spec (20 G voxels is ~40 GB of zarr)


@dataclass(frozen=True)
class Params:
    """What the generator draws. Lengths are in voxels, grey levels in 8-bit units."""

    shape: tuple[int, int, int] = (256, 192, 192)  # (z, y, x): slices, rows, columns
    chunks: tuple[int, int, int] = (64, 256, 256)  # zarr chunks, and the unit of work
    # Fibres: a Boolean model of finite cylinders.
    fibre_fraction: float = 0.17  # volume fraction (GF-PA66: 30 wt% glass is ~17 vol%)
    fibre_radius: float = 3.0  # mean radius
    fibre_radius_sd: float = 0.35
    fibre_length: float = 120.0  # mean length (log-normal)
    fibre_length_sd: float = 0.3  # sigma of log(length)
    direction: tuple[float, float, float] = (0.0, 0.0, 1.0)  # preferred axis (z, y, x)
    concentration: float = 6.0  # von Mises-Fisher kappa about it; 0 = isotropic
    # Pores: ellipsoids in the matrix, elongated along a fibre-like direction.
    pore_fraction: float = 0.01  # volume fraction
    pore_radius: float = 2.5  # mean short semi-axis
    pore_elongation: float = 2.0  # long semi-axis / short
    # Grey levels and artefacts.
    grey: tuple[float, float, float] = (105.0, 165.0, 60.0)  # matrix, fibre, pore means
    fibre_grey_sd: float = 8.0  # each fibre's own offset
    texture: float = 6.0  # amplitude of the matrix's smooth density variation
    blur: float = 1.0  # sigma of the point spread
    noise: float = 15.0  # standard deviation of the noise
    noise_blur: float = 0.6  # sigma of its correlation
    rings: float = 4.0  # amplitude of ring artefacts
    cupping: float = 14.0  # beam hardening: the centre is darker by this much

    def __post_init__(self) -> None:
        problems = []
        if len(self.shape) != 3 or min(self.shape) < 1:
            problems.append(f"shape {self.shape} must be three positive sizes")
        elif math.prod(self.shape) > MAX_VOXELS:
            problems.append(f"{math.prod(self.shape):,} voxels are over the generator's bound "
                            f"of {MAX_VOXELS:,}")
        if len(self.chunks) != 3 or min(self.chunks) < 8:
            problems.append(f"chunks {self.chunks} must be three sizes of at least 8")
        for name in ("fibre_fraction", "pore_fraction"):
            if not 0 <= getattr(self, name) < 0.9:
                problems.append(f"{name} must lie in [0, 0.9)")
        for name in ("fibre_radius", "fibre_length", "pore_radius", "pore_elongation"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive")
        for name in ("fibre_radius_sd", "fibre_length_sd", "concentration", "fibre_grey_sd",
                     "texture", "blur", "noise", "noise_blur", "rings", "cupping"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must not be negative")
        if len(self.direction) != 3 or not np.linalg.norm(self.direction) > 0:
            problems.append("direction must be a non-zero vector")
        if len(self.grey) != 3:
            problems.append("grey needs three levels (matrix, fibre, pore)")
        if problems:
            raise SourceDataError("synthetic tomography: " + "; ".join(problems))

    def as_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


AXES = {"z": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "x": (0.0, 0.0, 1.0)}


def parse_spec(spec: str | None) -> Params:
    """`XxYxZ[,key=value...]` -> Params. The size is columns x rows x slices (x, y, z), as a
    raw volume's sidecar gives it; `direction` is an axis name (x, y or z) or `dx:dy:dz`;
    `grey` is `matrix:fibre:pore`; `chunks` is `cx:cy:cz`. E.g. `1300x1040x1900` (the size of
    GF-PA66) or `256x256x320,concentration=0,pore_fraction=0.02`."""
    if spec is None or not spec.strip():
        return Params()
    values: dict[str, Any] = {}
    names = {f.name: f for f in dataclasses.fields(Params)}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            values["shape"] = _xyz(part, "x", "size", int)
        elif key not in names or key == "shape":
            raise SourceDataError(f"--synthetic {spec!r}: unknown setting {key!r}; settings: "
                                  + ", ".join(n for n in names if n != "shape"))
        elif key == "direction":
            values[key] = AXES[value] if value in AXES else _xyz(value, ":", key, float)
        elif key == "chunks":
            values[key] = _xyz(value, ":", key, int)
        elif key == "grey":
            levels = _numbers(value, ":", key, float)
            if len(levels) != 3:
                raise SourceDataError(f"--synthetic: grey needs matrix:fibre:pore, got {value!r}")
            values[key] = tuple(levels)
        else:
            try:
                values[key] = float(value)
            except ValueError:
                raise SourceDataError(f"--synthetic: {key} must be a number, got {value!r}") \
                    from None
    try:
        return Params(**values)
    except TypeError as e:
        raise SourceDataError(f"--synthetic {spec!r}: {e}") from None


def _numbers(text: str, sep: str, what: str, kind: type) -> list[Any]:
    try:
        return [kind(v) for v in text.lower().split(sep)]
    except ValueError:
        raise SourceDataError(f"--synthetic: {what} {text!r} is not {sep}-separated numbers") \
            from None


def _xyz(text: str, sep: str, what: str, kind: type) -> tuple[Any, Any, Any]:
    """Three numbers given x first, returned (z, y, x)."""
    numbers = _numbers(text, sep, what, kind)
    if len(numbers) != 3:
        raise SourceDataError(f"--synthetic: {what} {text!r} needs three numbers x{sep}y{sep}z")
    x, y, z = numbers
    return z, y, x


# --- the model: what is drawn from the seed, once -------------------------------------------------

@dataclass
class Model:
    params: Params
    fibre_p0: np.ndarray  # (n, 3) axis start, global (z, y, x)
    fibre_p1: np.ndarray  # (n, 3) axis end
    fibre_radius: np.ndarray  # (n,)
    fibre_grey: np.ndarray  # (n,) each fibre's grey level
    pore_centre: np.ndarray  # (m, 3)
    pore_axes: np.ndarray  # (m, 3, 3): columns are the ellipsoid's unit axes
    pore_semi: np.ndarray  # (m, 3) semi-axes along them
    ring_radius: np.ndarray  # (k,)
    ring_amplitude: np.ndarray  # (k,)
    texture_waves: np.ndarray  # (t, 3) angular frequencies along z, y, x
    texture_phases: np.ndarray  # (t, 3)
    texture_amplitude: np.ndarray  # (t,)
    noise_key: int
    fibre_lo: np.ndarray = field(init=False)  # (n, 3) bounding boxes, for the chunks' lists
    fibre_hi: np.ndarray = field(init=False)
    pore_lo: np.ndarray = field(init=False)
    pore_hi: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        r = self.fibre_radius[:, None]
        self.fibre_lo = np.minimum(self.fibre_p0, self.fibre_p1) - r
        self.fibre_hi = np.maximum(self.fibre_p0, self.fibre_p1) + r
        half = np.sqrt(((self.pore_axes * self.pore_semi[:, None, :]) ** 2).sum(axis=2))
        self.pore_lo = self.pore_centre - half
        self.pore_hi = self.pore_centre + half


def von_mises_fisher(rng: np.random.Generator, mean: np.ndarray, kappa: float,
                     n: int) -> np.ndarray:
    """`n` unit vectors about `mean` with concentration `kappa` (Wood's method)."""
    mu = np.asarray(mean, np.float64) / np.linalg.norm(mean)
    u = rng.random(n)
    w = 2 * u - 1 if kappa < 1e-6 else 1 + np.log(u + (1 - u) * np.exp(-2 * kappa)) / kappa
    helper = np.eye(3)[int(np.argmin(np.abs(mu)))]
    e1 = np.cross(mu, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(mu, e1)
    phi = rng.uniform(0, 2 * np.pi, n)
    s = np.sqrt(np.clip(1 - w**2, 0, None))
    out: np.ndarray = (w[:, None] * mu + s[:, None] * (np.cos(phi)[:, None] * e1
                                                       + np.sin(phi)[:, None] * e2))
    return out


def draw(params: Params, seed: int) -> Model:
    """The whole volume's fibres, pores, rings, texture and noise key, from the seed."""
    rng = np.random.default_rng([seed, 0x70_6D_6F])  # a stream of its own for this task
    shape = np.array(params.shape, np.float64)
    # Fibres: centres in the volume grown by a mean length, so that fibres reach in from
    # outside as densely as they lie inside (no thinning at the borders).
    margin = params.fibre_length + 2 * params.fibre_radius
    lo, hi = -margin, shape + margin
    mean_volume = math.pi * (params.fibre_radius**2 + params.fibre_radius_sd**2) * \
        params.fibre_length
    n_fibres = int(round(-math.log(1 - params.fibre_fraction) * float(np.prod(hi - lo))
                         / mean_volume))
    centre = rng.uniform(lo, hi, (n_fibres, 3))
    s = params.fibre_length_sd
    length = np.minimum(params.fibre_length * np.exp(rng.normal(-s * s / 2, s, n_fibres)),
                        2 * params.fibre_length)
    axis = von_mises_fisher(rng, np.array(params.direction), params.concentration, n_fibres)
    radius = np.clip(rng.normal(params.fibre_radius, params.fibre_radius_sd, n_fibres),
                     0.5 * params.fibre_radius, 1.5 * params.fibre_radius)
    half = axis * length[:, None] / 2
    fibre_grey = params.grey[1] + rng.normal(0, params.fibre_grey_sd, n_fibres)
    # Pores: painted over the matrix only, so their count is raised by the matrix's share.
    short = params.pore_radius
    long_ = short * params.pore_elongation
    pore_volume = 4 / 3 * math.pi * short * short * long_
    matrix_share = max(1 - params.fibre_fraction, 0.05)
    n_pores = int(round(-math.log(1 - params.pore_fraction / matrix_share)
                        * float(np.prod(shape)) / pore_volume)) if params.pore_fraction else 0
    pore_centre = rng.uniform(0, shape, (n_pores, 3))
    scale = np.exp(rng.normal(-0.06, 0.2, n_pores))  # mean volume as drawn
    semi = np.stack([short * scale, short * scale, long_ * scale], axis=1)
    pore_long = von_mises_fisher(rng, np.array(params.direction), params.concentration / 2,
                                 n_pores)
    pore_axes = _frames(pore_long, rng)
    # Rings about the rotation axis (through the slice centre), and the texture's waves.
    max_r = math.hypot(shape[1], shape[2]) / 2
    n_rings = max(3, int(max_r / 25))
    ring_radius = rng.uniform(0, max_r, n_rings)
    ring_amplitude = params.rings * rng.choice([-1.0, 1.0], n_rings) * rng.uniform(0.4, 1,
                                                                                  n_rings)
    n_waves = 4
    waves = rng.uniform(2 * np.pi / 120, 2 * np.pi / 30, (n_waves, 3))
    phases = rng.uniform(0, 2 * np.pi, (n_waves, 3))
    amplitude = params.texture * rng.uniform(0.5, 1.0, n_waves) / math.sqrt(n_waves / 4)
    noise_key = int(rng.integers(0, 2**63 - 1))
    return Model(params, centre - half, centre + half, radius, fibre_grey, pore_centre,
                 pore_axes, semi, ring_radius, ring_amplitude, waves, phases, amplitude,
                 noise_key)


def _frames(long_axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(m, 3, 3) right-handed frames whose third column is `long_axis`, turned at random
    about it."""
    m = len(long_axis)
    helper = np.where(np.abs(long_axis[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    e1 = np.cross(long_axis, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(long_axis, e1)
    phi = rng.uniform(0, 2 * np.pi, m)[:, None]
    a = np.cos(phi) * e1 + np.sin(phi) * e2
    b = np.cross(long_axis, a)
    return np.stack([a, b, long_axis], axis=2)


# --- rendering one block --------------------------------------------------------------------------

def kernel_radius(sigma: float) -> int:
    """How far scipy's Gaussian filter reaches (its default truncation at 4 sigma)."""
    return int(4.0 * sigma + 0.5) if sigma > 0 else 0


def halo(params: Params) -> int:
    return max(kernel_radius(params.blur), kernel_radius(params.noise_blur))


def render_labels(model: Model, lo: tuple[int, int, int],
                  hi: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0 matrix, 1 fibre, 2 pore) and each voxel's fibre grey level of the box
    [lo, hi) in global coordinates (which may reach outside the volume)."""
    lo_a, hi_a = np.array(lo, np.float64), np.array(hi, np.float64)
    shape = tuple(int(h - low) for low, h in zip(lo, hi, strict=True))
    labels = np.zeros(shape, np.uint8)
    levels = np.zeros(shape, np.float32)
    near = np.flatnonzero(np.all(model.fibre_hi >= lo_a - 1, axis=1)
                          & np.all(model.fibre_lo <= hi_a, axis=1))
    _paint_fibres(labels, levels, lo_a, model.fibre_p0[near], model.fibre_p1[near],
                  model.fibre_radius[near], model.fibre_grey[near].astype(np.float32))
    near = np.flatnonzero(np.all(model.pore_hi >= lo_a - 1, axis=1)
                          & np.all(model.pore_lo <= hi_a, axis=1))
    _paint_pores(labels, lo_a, model.pore_centre[near], model.pore_axes[near],
                 model.pore_semi[near])
    return labels, levels


def render(model: Model, lo: tuple[int, int, int],
           hi: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8, labels uint8) of the box [lo, hi): the same bytes however the volume is
    cut into boxes."""
    p = model.params
    h = halo(p)
    glo = tuple(v - h for v in lo)
    ghi = tuple(v + h for v in hi)
    labels, levels = render_labels(model, glo, ghi)  # type: ignore[arg-type]
    coords = [np.arange(a, b, dtype=np.float64) for a, b in zip(glo, ghi, strict=True)]
    factors = [np.cos(model.texture_waves[:, k, None] * coords[k][None, :]
                      + model.texture_phases[:, k, None]).astype(np.float32)
               for k in range(3)]
    base = np.empty(labels.shape, np.float32)
    _compose(base, labels, levels, np.asarray(p.grey, np.float32),
             model.texture_amplitude.astype(np.float32), factors[0], factors[1], factors[2])
    if p.blur > 0:
        base = ndimage.gaussian_filter(base, p.blur)
    if p.noise > 0:
        noise = np.empty(labels.shape, np.float32)
        _hash_noise(noise, np.array(glo, np.int64), np.array(p.shape, np.int64),
                    np.uint64(model.noise_key))
        if p.noise_blur > 0:
            noise = ndimage.gaussian_filter(noise, p.noise_blur)
            noise *= np.float32(1 / _smoothed_sd(p.noise_blur))
        base += np.float32(p.noise) * noise
    inner = tuple(slice(h, h + (b - a)) for a, b in zip(lo, hi, strict=True))
    image = base[inner]
    image += _artefacts(model, lo, hi)[None]
    return (np.clip(np.rint(image), 0, 255).astype(np.uint8),
            np.ascontiguousarray(labels[inner]))


def _smoothed_sd(sigma: float) -> float:
    """The standard deviation of unit white noise after scipy's 3-D Gaussian filter."""
    r = kernel_radius(sigma)
    x = np.arange(-r, r + 1)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    w /= w.sum()
    return float(np.sqrt((w**2).sum()) ** 3)


def _artefacts(model: Model, lo: tuple[int, int, int], hi: tuple[int, int, int]) -> np.ndarray:
    """Rings and cupping of one slice's (y, x) box: functions of the distance to the
    rotation axis (the z axis through the centre of the slices)."""
    p = model.params
    cy, cx = (p.shape[1] - 1) / 2, (p.shape[2] - 1) / 2
    y = np.arange(lo[1], hi[1], dtype=np.float64)[:, None] - cy
    x = np.arange(lo[2], hi[2], dtype=np.float64)[None, :] - cx
    r = np.sqrt(y * y + x * x)
    max_r = math.hypot(p.shape[1], p.shape[2]) / 2
    field = -p.cupping * (1 - np.clip(r / max_r, 0, 1) ** 2)
    for radius, amplitude in zip(model.ring_radius, model.ring_amplitude, strict=True):
        field = field + amplitude * np.exp(-0.5 * ((r - radius) / 1.2) ** 2)
    return field.astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _paint_fibres(labels: np.ndarray, levels: np.ndarray, origin: np.ndarray, p0: np.ndarray,
                  p1: np.ndarray, radius: np.ndarray, grey: np.ndarray) -> None:  # pragma: no cover
    """Voxels (integer centres) within `radius` of each segment p0-p1 become fibre (1).

    Planes across the segment's dominant axis are visited one by one; in each, only the box
    the capsule can reach is tested, so the work is close to the fibre's own volume."""
    dims = labels.shape
    a = np.empty(3)
    d = np.empty(3)
    q = np.zeros(3, np.int64)
    lo = np.zeros(3, np.int64)
    hi = np.zeros(3, np.int64)
    for f in range(p0.shape[0]):
        r = radius[f]
        r2 = r * r
        for i in range(3):
            a[i] = p0[f, i] - origin[i]
            d[i] = p1[f, i] - p0[f, i]
        dd = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        k = 0
        for i in range(1, 3):
            if abs(d[i]) > abs(d[k]):
                k = i
        j1 = (k + 1) % 3
        j2 = (k + 2) % 3
        c_lo = max(0, int(math.ceil(min(a[k], a[k] + d[k]) - r)))
        c_hi = min(dims[k] - 1, int(math.floor(max(a[k], a[k] + d[k]) + r)))
        for c in range(c_lo, c_hi + 1):
            if abs(d[k]) > 1e-12:
                t1 = (c - r - a[k]) / d[k]
                t2 = (c + r - a[k]) / d[k]
                if t1 > t2:
                    t1, t2 = t2, t1
                t1 = max(t1, 0.0)
                t2 = min(t2, 1.0)
                if t1 > t2:
                    continue
            else:
                t1, t2 = 0.0, 1.0
            for j in (j1, j2):
                s1 = a[j] + t1 * d[j]
                s2 = a[j] + t2 * d[j]
                lo[j] = max(0, int(math.ceil(min(s1, s2) - r)))
                hi[j] = min(dims[j] - 1, int(math.floor(max(s1, s2) + r)))
            q[k] = c
            for u in range(lo[j1], hi[j1] + 1):
                q[j1] = u
                for v in range(lo[j2], hi[j2] + 1):
                    q[j2] = v
                    w0 = q[0] - a[0]
                    w1 = q[1] - a[1]
                    w2 = q[2] - a[2]
                    t = (w0 * d[0] + w1 * d[1] + w2 * d[2]) / dd if dd > 0 else 0.0
                    t = min(max(t, 0.0), 1.0)
                    e0 = w0 - t * d[0]
                    e1 = w1 - t * d[1]
                    e2 = w2 - t * d[2]
                    if e0 * e0 + e1 * e1 + e2 * e2 <= r2:
                        labels[q[0], q[1], q[2]] = 1
                        levels[q[0], q[1], q[2]] = grey[f]


@numba.njit(cache=True, nogil=True)
def _paint_pores(labels: np.ndarray, origin: np.ndarray, centre: np.ndarray, axes: np.ndarray,
                 semi: np.ndarray) -> None:  # pragma: no cover
    """Matrix voxels inside each ellipsoid become pore (2)."""
    dims = labels.shape
    for p in range(centre.shape[0]):
        c0 = centre[p, 0] - origin[0]
        c1 = centre[p, 1] - origin[1]
        c2 = centre[p, 2] - origin[2]
        h = np.empty(3)
        for i in range(3):
            s = 0.0
            for j in range(3):
                s += (axes[p, i, j] * semi[p, j]) ** 2
            h[i] = math.sqrt(s)
        z_lo, z_hi = max(0, int(math.ceil(c0 - h[0]))), min(dims[0] - 1, int(c0 + h[0]))
        y_lo, y_hi = max(0, int(math.ceil(c1 - h[1]))), min(dims[1] - 1, int(c1 + h[1]))
        x_lo, x_hi = max(0, int(math.ceil(c2 - h[2]))), min(dims[2] - 1, int(c2 + h[2]))
        for z in range(z_lo, z_hi + 1):
            for y in range(y_lo, y_hi + 1):
                for x in range(x_lo, x_hi + 1):
                    if labels[z, y, x] != 0:
                        continue
                    w0, w1, w2 = z - c0, y - c1, x - c2
                    total = 0.0
                    for j in range(3):
                        local = (w0 * axes[p, 0, j] + w1 * axes[p, 1, j]
                                 + w2 * axes[p, 2, j]) / semi[p, j]
                        total += local * local
                    if total <= 1.0:
                        labels[z, y, x] = 2


@numba.njit(cache=True, nogil=True)
def _compose(out: np.ndarray, labels: np.ndarray, levels: np.ndarray, grey: np.ndarray,
             amplitude: np.ndarray, fz: np.ndarray, fy: np.ndarray,
             fx: np.ndarray) -> None:  # pragma: no cover
    """Class grey levels: fibres their own, the matrix its mean plus a separable texture."""
    nz, ny, nx = labels.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                c = labels[z, y, x]
                if c == 1:
                    out[z, y, x] = levels[z, y, x]
                elif c == 2:
                    out[z, y, x] = grey[2]
                else:
                    t = grey[0]
                    for w in range(amplitude.shape[0]):
                        t += amplitude[w] * fz[w, z] * fy[w, y] * fx[w, x]
                    out[z, y, x] = t


@numba.njit(cache=True, nogil=True)
def _hash_noise(out: np.ndarray, origin: np.ndarray, shape: np.ndarray,
                key: np.uint64) -> None:  # pragma: no cover
    """Unit-variance noise that is a function of the voxel's global index (splitmix64, an
    Irwin-Hall sum of four 16-bit uniforms): the same wherever a block starts."""
    nz, ny, nx = out.shape
    span_y = np.int64(shape[1] + 4096)  # indices of halo voxels outside the volume stay unique
    span_x = np.int64(shape[2] + 4096)
    scale = np.float32(math.sqrt(3.0) / 65536.0)
    for z in range(nz):
        for y in range(ny):
            row = ((origin[0] + z + 4096) * span_y + (origin[1] + y + 2048)) * span_x
            for x in range(nx):
                s = np.uint64(row + origin[2] + x + 2048) ^ key
                s = (s + np.uint64(0x9E3779B97F4A7C15))
                s = (s ^ (s >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
                s = (s ^ (s >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
                s = s ^ (s >> np.uint64(31))
                total = (np.float32(s & np.uint64(0xFFFF)) +
                         np.float32((s >> np.uint64(16)) & np.uint64(0xFFFF)) +
                         np.float32((s >> np.uint64(32)) & np.uint64(0xFFFF)) +
                         np.float32(s >> np.uint64(48)))
                out[z, y, x] = (total - np.float32(131070.0)) * scale


# --- writing a volume -----------------------------------------------------------------------------

def generate(folder: Path, params: Params, seed: int, workers: int | None = None) -> None:
    """`folder/volume.zarr` (uint8 grey) and `folder/labels.zarr` (0 matrix, 1 fibre, 2 pore),
    chunk by chunk, in parallel (dask threads), in bounded memory; with `generator.json`
    (the parameters and seed)."""
    from dask.base import compute
    from dask.delayed import delayed

    from competition.tasks.tomography import volumes

    folder.mkdir(parents=True, exist_ok=True)
    model = draw(params, seed)
    image = volumes.create_zarr(folder / "volume.zarr", params.shape, params.chunks)
    labels = volumes.create_zarr(folder / "labels.zarr", params.shape, params.chunks)

    def write(lo: tuple[int, int, int], hi: tuple[int, int, int]) -> None:
        grey, truth = render(model, lo, hi)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        image[box] = grey
        labels[box] = truth

    tasks = [delayed(write)(lo, hi) for lo, hi in chunk_boxes(params.shape, params.chunks)]
    compute(*tasks, scheduler="threads", num_workers=workers)  # type: ignore[no-untyped-call]
    (folder / "generator.json").write_text(json.dumps(
        {"generator": "competition.tasks.tomography.synthetic", "seed": seed,
         "params": params.as_json(), "classes": list(CLASSES)}, indent=1) + "\n")


def chunk_boxes(shape: tuple[int, ...], chunks: tuple[int, ...]
                ) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    boxes = []
    for index in np.ndindex(*(math.ceil(s / c) for s, c in zip(shape, chunks, strict=True))):
        lo = tuple(int(i * c) for i, c in zip(index, chunks, strict=True))
        hi = tuple(min(a + c, s) for a, c, s in zip(lo, chunks, shape, strict=True))
        boxes.append((lo, hi))
    return boxes  # type: ignore[return-value]


def write_tomography_source(root: Path, seed: int, spec: str | None = None) -> None:
    """The synthetic kind's source in the real zarr layout: volume.zarr and labels.zarr."""
    generate(Path(root), parse_spec(spec), seed)
