"""Surface patch images around a landmark estimate (pure: arrays in, arrays out).

The published refiner looks at 224x224 RGB renderings of the local surface around ALPACA's
estimate. A patch is an orthographic view along the local mean normal: the surface within
`radius` of the centre is rasterised (triangles, z-buffer) into a height map, and three
channels are drawn from it: R openness, one minus an ambient-occlusion-like obscurance (how
much of the sky each pixel's neighbourhood hides), G curvature (the surface's mean curvature,
interpolated from the vertices), B shading (Lambert, light along the view); black where no
surface is. The height map is also the inverse
map: a pixel's 3D surface point is the first hit of a ray cast down the view axis, which the
z-buffer holds.

A view's in-plane axes come from a seed direction. Specimens are first moved into a common
pose (`posed`: a rigid fit of their landmark estimates onto a mean shape) and each landmark
keeps one seed (`landmark_seeds`), so that a patch's x axis points the same way on every
specimen, however the specimen arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numba
import numpy as np

from competition.landmark_imaging import procrustes

if TYPE_CHECKING:
    from scipy.spatial import cKDTree

SIZE = 224


@dataclass
class Patch:
    image: np.ndarray  # (SIZE, SIZE, 3) uint8
    height: np.ndarray  # (SIZE, SIZE) float64 along the view axis, NaN where no surface
    centre: np.ndarray  # (3,) the 3D point at the image centre (before any shift)
    axes: np.ndarray  # (3, 3) rows: image x, image y, view axis (towards the viewer)
    mm_per_pixel: float

    def to_pixel(self, points: np.ndarray) -> np.ndarray:
        """(k, 2) pixel coordinates (column, row; continuous) of 3D points."""
        local = (np.atleast_2d(points) - self.centre) @ self.axes.T
        pixels: np.ndarray = local[:, :2] / self.mm_per_pixel + (SIZE - 1) / 2
        return pixels

    def to_surface(self, pixels: np.ndarray) -> np.ndarray:
        """(k, 3) surface points under pixel coordinates (nearest pixel's ray hit; NaN where
        the ray misses the surface)."""
        pixels = np.atleast_2d(pixels)
        col = np.clip(np.rint(pixels[:, 0]).astype(int), 0, SIZE - 1)
        row = np.clip(np.rint(pixels[:, 1]).astype(int), 0, SIZE - 1)
        xy = (pixels - (SIZE - 1) / 2) * self.mm_per_pixel
        local = np.column_stack([xy, self.height[row, col]])
        points: np.ndarray = self.centre + local @ self.axes
        return points


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # area-weighted
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(length > 0, length, 1)


def vertex_curvature(vertices: np.ndarray, faces: np.ndarray,
                     normals: np.ndarray) -> np.ndarray:
    """Signed mean-curvature proxy per vertex: the umbrella Laplacian along the normal over
    the squared mean edge length (positive on ridges and bumps, negative in pits)."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    n = len(vertices)
    total = np.zeros_like(vertices)
    count = np.zeros(n)
    np.add.at(total, edges[:, 0], vertices[edges[:, 1]])
    np.add.at(count, edges[:, 0], 1)
    lengths = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    mean_len = np.zeros(n)
    np.add.at(mean_len, edges[:, 0], lengths)
    count = np.maximum(count, 1)
    mean_len = np.maximum(mean_len / count, 1e-12)
    laplacian = vertices - total / count[:, None]
    curvature: np.ndarray = (laplacian * normals).sum(axis=1) / mean_len ** 2
    return curvature


@numba.njit(cache=True)
def _rasterise(xy: np.ndarray, z: np.ndarray, values: np.ndarray, faces: np.ndarray,
               size: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover (compiled)
    """Z-buffer triangles given in pixel coordinates: the highest surface wins."""
    height = np.full((size, size), -np.inf)
    out = np.zeros((size, size, values.shape[1]))
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        x0, y0, x1, y1, x2, y2 = xy[a, 0], xy[a, 1], xy[b, 0], xy[b, 1], xy[c, 0], xy[c, 1]
        det = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
        if abs(det) < 1e-12:
            continue
        lo_x = max(int(np.floor(min(x0, x1, x2))), 0)
        hi_x = min(int(np.ceil(max(x0, x1, x2))), size - 1)
        lo_y = max(int(np.floor(min(y0, y1, y2))), 0)
        hi_y = min(int(np.ceil(max(y0, y1, y2))), size - 1)
        for row in range(lo_y, hi_y + 1):
            for col in range(lo_x, hi_x + 1):
                w0 = ((y1 - y2) * (col - x2) + (x2 - x1) * (row - y2)) / det
                w1 = ((y2 - y0) * (col - x2) + (x0 - x2) * (row - y2)) / det
                w2 = 1.0 - w0 - w1
                if w0 < -1e-9 or w1 < -1e-9 or w2 < -1e-9:
                    continue
                depth = w0 * z[a] + w1 * z[b] + w2 * z[c]
                if depth > height[row, col]:
                    height[row, col] = depth
                    for k in range(values.shape[1]):
                        out[row, col, k] = w0 * values[a, k] + w1 * values[b, k] + \
                            w2 * values[c, k]
    return height, out


def obscurance(height: np.ndarray, mm_per_pixel: float, reach_px: int = 12,
               directions: int = 8) -> np.ndarray:
    """Horizon-based ambient obscurance of a height map, 0 (open) to 1 (hidden): for each of
    `directions` directions, the steepest elevation angle of the surface within `reach_px`;
    missing surface counts as open."""
    filled = np.where(np.isfinite(height), height, -np.inf)
    total = np.zeros_like(height)
    for k in range(directions):
        angle = 2 * np.pi * k / directions
        dx, dy = np.cos(angle), np.sin(angle)
        steepest = np.zeros_like(height)
        for step in range(1, reach_px + 1):
            sx, sy = int(round(dx * step)), int(round(dy * step))
            shifted = np.full_like(filled, -np.inf)
            src = filled[max(sy, 0): SIZE + min(sy, 0), max(sx, 0): SIZE + min(sx, 0)]
            shifted[max(-sy, 0): SIZE + min(-sy, 0), max(-sx, 0): SIZE + min(-sx, 0)] = src
            with np.errstate(invalid="ignore"):
                rise = (shifted - filled) / (step * mm_per_pixel * np.hypot(dx, dy))
            # fmax skips NaN (no surface either side) and -inf (none beside); +inf appears
            # only where this pixel has no surface, which the image leaves black anyway.
            steepest = np.fmax(steepest, rise)
        total += np.arctan(steepest) / (np.pi / 2)
    return total / directions


def frame(vertices: np.ndarray, normals: np.ndarray, centre: np.ndarray,
          radius: float, seed: np.ndarray | None = None) -> np.ndarray:
    """(3, 3) rows x, y, view axis: the view axis is the mean normal of the vertices within
    `radius`; x is `seed` (default: the world axis least aligned with the view) made
    orthogonal to it. A fixed seed per landmark keeps the in-plane axes the same across
    specimens in one pose, where the default could swap two axes between them."""
    near = np.linalg.norm(vertices - centre, axis=1) <= radius
    view = normals[near].mean(axis=0) if near.any() else np.array([0.0, 0.0, 1.0])
    view /= max(np.linalg.norm(view), 1e-12)
    if seed is None or abs(np.dot(seed, view)) > 0.99 * np.linalg.norm(seed):
        seed = least_aligned_axis(view)
    x = seed - view * (seed @ view)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(view, x), view])


def least_aligned_axis(direction: np.ndarray) -> np.ndarray:
    axis: np.ndarray = np.eye(3)[int(np.argmin(np.abs(direction)))]
    return axis


def render(vertices: np.ndarray, faces: np.ndarray, centre: np.ndarray, radius: float,
           shift: tuple[float, float] = (0.0, 0.0), normals: np.ndarray | None = None,
           curvature: np.ndarray | None = None, seed: np.ndarray | None = None,
           curvature_scale: float | None = None) -> Patch:
    """The patch of the surface within `radius` (mm) of `centre`, viewed along its mean
    normal (image x from `seed`, see `frame`); `shift` (mm, in the image plane) moves the
    window, not the frame. `curvature_scale`: the whole surface's 95th percentile of
    |curvature| (default: of the vertices given)."""
    normals = vertex_normals(vertices, faces) if normals is None else normals
    curvature = vertex_curvature(vertices, faces, normals) if curvature is None else curvature
    if curvature_scale is None:
        curvature_scale = float(np.percentile(np.abs(curvature), 95))
    axes = frame(vertices, normals, centre, radius, seed)
    window = centre + shift[0] * axes[0] + shift[1] * axes[1]
    mm_per_pixel = 2 * radius / (SIZE - 1)
    local = (vertices - window) @ axes.T
    # The surface within the window's box: nothing from the far side of the specimen.
    inside = (np.abs(local[:, :2]).max(axis=1) <= radius * 1.05) & \
        (np.abs(local[:, 2]) <= radius)
    keep = inside[faces].any(axis=1)
    xy = local[:, :2] / mm_per_pixel + (SIZE - 1) / 2
    shade = np.abs(normals @ axes[2])
    values = np.column_stack([curvature, shade])
    height, drawn = _rasterise(xy, local[:, 2].copy(), values, faces[keep].astype(np.int64),
                               SIZE)
    height = np.where(np.isfinite(height), height, np.nan)
    surface = np.isfinite(height)
    occ = obscurance(height, mm_per_pixel)
    curv = np.tanh(drawn[..., 0] / max(curvature_scale, 1e-12))
    rgb = np.stack([1 - occ, (curv + 1) / 2, drawn[..., 1]], axis=-1)
    image = np.where(surface[..., None], np.clip(rgb, 0, 1) * 255, 0).astype(np.uint8)
    return Patch(image, height, window, axes, mm_per_pixel)


@dataclass(frozen=True)
class View:
    """One of a landmark's images: a window radius (mm) and an in-plane shift of it (mm)."""

    radius: float
    shift: tuple[float, float] = (0.0, 0.0)


def views(radii: tuple[float, ...] = (1.0, 2.0, 4.0), shift: float = 1.0) -> list[View]:
    """The published four: three radii around the estimate, and the middle radius's window
    shifted (so that the landmark is not always at the centre)."""
    middle = radii[len(radii) // 2]
    return [View(r) for r in radii] + [View(middle, (shift, shift))]


@dataclass
class Surface:
    """A mesh with its per-vertex normals and curvature, computed once per specimen."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    curvature: np.ndarray
    _tree: cKDTree | None = field(default=None, repr=False, compare=False)
    _scale: float | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, vertices: np.ndarray, faces: np.ndarray) -> Surface:
        vertices = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.int64)
        normals = vertex_normals(vertices, faces)
        return cls(vertices, faces, normals, vertex_curvature(vertices, faces, normals))

    def render(self, centre: np.ndarray, view: View, seed: np.ndarray | None = None) -> Patch:
        """`render` on the part of the surface a view can reach (the same image as on the
        whole mesh, several times faster: a skull has some 80,000 vertices, a window a few
        hundred)."""
        centre = np.asarray(centre, float)
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.vertices)
            self._scale = float(np.percentile(np.abs(self.curvature), 95))
        # The view's box (half-width 1.05 radius, depth radius, around the shifted window)
        # lies within this ball around the centre, and so does the frame's neighbourhood.
        reach = float(np.hypot(*view.shift)) + 1.8 * view.radius
        near = np.zeros(len(self.vertices), bool)
        near[self._tree.query_ball_point(centre, reach)] = True
        faces = self.faces[near[self.faces].any(axis=1)]
        mask = np.zeros(len(self.vertices), bool)
        mask[faces] = True
        used = np.flatnonzero(mask)  # sorted: the vertices keep their order
        index = np.full(len(self.vertices), -1, np.int64)
        index[used] = np.arange(len(used))
        return render(self.vertices[used], index[faces], centre, view.radius, view.shift,
                      self.normals[used], self.curvature[used], seed, self._scale)

    def moved(self, pose: tuple[np.ndarray, np.ndarray]) -> Surface:
        """The same surface rigidly moved (normals turn with it; curvature does not change)."""
        rotation, translation = pose
        return Surface(self.vertices @ rotation.T + translation, self.faces,
                       self.normals @ rotation.T, self.curvature)

    def normal_at(self, point: np.ndarray, radius: float) -> np.ndarray:
        """The view axis a patch of `radius` around `point` would have."""
        view: np.ndarray = frame(self.vertices, self.normals, np.asarray(point, float),
                                 radius)[2]
        return view


def jittered_estimate(surface: Surface, truth: np.ndarray, jitter_mm: float,
                      rng: np.random.Generator, tree: cKDTree | None = None) -> np.ndarray:
    """A training estimate: the manual landmark displaced like a registration's error,
    snapped to the nearest vertex."""
    return snap(surface, truth + rng.normal(0, jitter_mm, 3), tree)


def snap(surface: Surface, points: np.ndarray, tree: cKDTree | None = None) -> np.ndarray:
    """The nearest vertices of points."""
    from scipy.spatial import cKDTree

    tree = tree or cKDTree(surface.vertices)
    nearest: np.ndarray = surface.vertices[tree.query(points)[1]]
    return nearest


def posed(vertices: np.ndarray, faces: np.ndarray, estimates: np.ndarray,
          mean: np.ndarray) -> tuple[Surface, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """A specimen in the common pose: its surface and landmark estimates moved by the rigid
    fit of the estimates onto `mean` (a mean shape), and that pose. Specimens arrive in any
    orientation (hidden test specimens are rotated at random); in the common pose a
    patch's in-plane axes mean the same on every specimen."""
    pose = procrustes.rigid_fit(estimates, mean)
    return Surface.of(vertices, faces).moved(pose), procrustes.apply(estimates, pose), pose


def landmark_seeds(surfaces: list[Surface], points: np.ndarray, radius: float) -> np.ndarray:
    """(landmarks, 3): per landmark, the axis least aligned with its mean normal over
    specimens in the common pose (`points`: (specimens, landmarks, 3)); the x direction of
    its patches on every specimen."""
    normals = np.array([[s.normal_at(p, radius) for p in specimen]
                        for s, specimen in zip(surfaces, points, strict=True)])
    seeds: np.ndarray = np.array([least_aligned_axis(n) for n in normals.mean(axis=0)])
    return seeds
