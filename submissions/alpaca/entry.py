"""ALPACA-style landmark transfer (Porto et al. 2021, SlicerMorph's ALPACA), in Python with
open3d and pycpd, the building blocks ALPACA itself uses.

For each target mesh and each template (a landmarked training specimen): scale the template
to the target's bounding-box diagonal (of the principal-axes box: targets are rotated);
voxel-downsample both surfaces (voxel = diagonal / 55);
normals (radius 2 voxels) and FPFH features (radius 5 voxels); RANSAC on feature matches
(distance 3 voxels) for a global rigid alignment; point-to-plane ICP (1.5 voxels); coherent
point drift deformable registration (alpha 2, beta 2, 100 iterations); the template's
landmarks follow the same rigid motion and deformation field; optionally projected onto the
target surface (nearest vertex). Several templates (MALPACA): the median of their estimates.
One template is the most typical training specimen (closest to the Procrustes mean shape);
several are chosen by k-means clustering of the Procrustes-aligned shapes (MALPACA).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from competition.errors import CompetitionError
from competition.landmark_imaging import procrustes


def fit(task, train, config, on_epoch=None):
    return choose_templates(train, config)


def choose_templates(train, config):
    """The training specimens that serve as templates, with their landmarks."""
    chosen = template_indices(train.points, config["templates"], config["seed"])
    return {"templates": [(train.ids[k], np.asarray(train.meshes[k].vertices),
                           train.points[k]) for k in chosen]}


def template_indices(points: np.ndarray, count: int, seed: int = 0) -> list[int]:
    """One template: the most typical specimen (closest to the Procrustes mean shape). More
    (MALPACA, Zhang et al. 2022): k-means clusters of the Procrustes-aligned shapes, and in
    each cluster the specimen closest to its centre, so that the templates span the
    sample's variation instead of crowding at its mean."""
    aligned, mean = procrustes_aligned(points)
    if count <= 1 or count >= len(points):
        order = np.argsort(np.linalg.norm(aligned - mean, axis=(1, 2)))
        return [int(k) for k in order[:max(count, 1)]]
    from scipy.cluster.vq import kmeans2

    flat = aligned.reshape(len(aligned), -1)
    centres, labels = kmeans2(flat, count, minit="++", seed=seed)
    chosen = []
    for c in range(count):
        members = np.flatnonzero(labels == c)
        if len(members):
            chosen.append(int(members[np.argmin(np.linalg.norm(flat[members] - centres[c],
                                                               axis=1))]))
    return sorted(chosen)


def procrustes_aligned(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shapes centred, scaled to unit size and rotated onto their mean (generalised
    Procrustes), and that mean."""
    shapes = [p - p.mean(axis=0) for p in np.asarray(points, float)]
    shapes = [s / np.linalg.norm(s) for s in shapes]
    mean = shapes[0]
    for _ in range(5):  # generalised Procrustes: align to the mean, re-average
        aligned = [procrustes.apply(s, procrustes.rigid_fit(s, mean)) for s in shapes]
        mean = np.mean(aligned, axis=0)
        mean /= np.linalg.norm(mean)
    return np.array([procrustes.apply(s, procrustes.rigid_fit(s, mean)) for s in shapes]), mean


def diagonal(points: np.ndarray) -> float:
    """The bounding-box diagonal in the principal-axes frame: unlike the axis-aligned box's,
    it does not change when a specimen is rotated (test specimens are)."""
    centred = points - points.mean(axis=0)
    _, axes = np.linalg.eigh(np.cov(centred.T))
    local = centred @ axes
    return float(np.linalg.norm(local.max(axis=0) - local.min(axis=0)))


def load_open3d():
    """open3d, or a clear error: its wheel loads only where libusb-1.0 is installed."""
    try:
        import open3d
    except ImportError as e:
        raise CompetitionError(f"open3d cannot load ({e}): install Debian's libusb-1.0-0 "
                               "(apt-get install libusb-1.0-0)") from None
    return open3d


def transfer(template_vertices, template_landmarks, target_vertices, config, seed=0):
    """Landmarks of one template placed on one target (both vertex arrays in mm)."""
    o3d = load_open3d()
    from pycpd import DeformableRegistration

    reg = o3d.pipelines.registration
    target_diag = diagonal(target_vertices)
    # Scale the template to the target's size, about the template's centroid.
    centre = template_vertices.mean(axis=0)
    scale = target_diag / diagonal(template_vertices)
    source = (template_vertices - centre) * scale
    landmarks = (template_landmarks - centre) * scale
    voxel = target_diag / config["voxel_divisor"]

    def features(vertices):
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(vertices))
        down = cloud.voxel_down_sample(voxel)
        down.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(
            radius=config["normal_radius"] * voxel, max_nn=30))
        fpfh = reg.compute_fpfh_feature(down, o3d.geometry.KDTreeSearchParamHybrid(
            radius=config["fpfh_radius"] * voxel, max_nn=100))
        return down, fpfh

    src, src_f = features(source)
    tgt, tgt_f = features(target_vertices)
    distance = config["ransac_distance"] * voxel
    starts = []
    for attempt in range(config["ransac_tries"]):
        o3d.utility.random.seed(seed * 1000 + attempt)
        starts.append(reg.registration_ransac_based_on_feature_matching(
            src, tgt, src_f, tgt_f, True, distance,
            reg.TransformationEstimationPointToPoint(False), 3,
            [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9),
             reg.CorrespondenceCheckerBasedOnDistance(distance)],
            reg.RANSACConvergenceCriteria(config["ransac_iterations"], 0.999)).transformation)
    if config["principal_axes_starts"]:
        # Smooth, nearly symmetric surfaces give FPFH little to match: also start from the
        # four proper rotations that align the principal axes.
        starts += principal_axes_starts(np.asarray(src.points), np.asarray(tgt.points))
    best = None
    for start in starts:  # keep the best-fitting alignment after ICP
        icp = reg.registration_icp(src, tgt, config["icp_distance"] * voxel, start,
                                   reg.TransformationEstimationPointToPlane())
        if best is None or (icp.fitness, -icp.inlier_rmse) > (best.fitness, -best.inlier_rmse):
            best = icp
    matrix = np.asarray(best.transformation)
    moved = np.asarray(src.points) @ matrix[:3, :3].T + matrix[:3, 3]
    landmarks = landmarks @ matrix[:3, :3].T + matrix[:3, 3]
    fixed = np.asarray(tgt.points)
    rng = np.random.default_rng(seed)
    cap = config["cpd_points"]
    if len(moved) > cap:
        moved = moved[rng.choice(len(moved), cap, replace=False)]
    if len(fixed) > cap:
        fixed = fixed[rng.choice(len(fixed), cap, replace=False)]
    cpd = low_rank_cpd(DeformableRegistration)(
        X=fixed, Y=moved, alpha=config["cpd_alpha"], beta=config["cpd_beta"],
        max_iterations=config["cpd_iterations"], tolerance=1e-5, rank=config["cpd_rank"])
    cpd.register()
    landmarks = cpd.displace(landmarks)
    return landmarks, {"fitness": float(best.fitness), "rmse": float(best.inlier_rmse)}


def principal_axes_starts(source: np.ndarray, target: np.ndarray) -> list[np.ndarray]:
    """4x4 rigid transforms mapping the source's principal axes onto the target's, one per
    proper sign combination."""
    def axes(points):
        centre = points.mean(axis=0)
        _, vectors = np.linalg.eigh(np.cov((points - centre).T))
        return centre, vectors[:, ::-1]

    (cs, vs), (ct, vt) = axes(source), axes(target)
    out = []
    for signs in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)):
        rotation = vt @ np.diag(signs) @ vs.T
        if np.linalg.det(rotation) < 0:
            rotation = vt @ np.diag([s * -1 if k == 2 else s for k, s in enumerate(signs)]) @ vs.T
        matrix = np.eye(4)
        matrix[:3, :3] = rotation
        matrix[:3, 3] = ct - rotation @ cs
        out.append(matrix)
    return out


def low_rank_cpd(base):
    """pycpd's deformable CPD with the fast variant of Myronenko & Song (2010, section 4.2):
    G ~ Q diag(lam) Q^T from its `rank` largest eigenpairs, and the M-step solved by the
    Woodbury identity in O(M rank^2) instead of O(M^3) per iteration."""
    from scipy.sparse.linalg import eigsh

    class LowRankCPD(base):
        def __init__(self, *args, rank=100, **kwargs):
            super().__init__(*args, **kwargs)
            rank = min(rank, self.M - 2)
            self.lam, self.Q = eigsh(self.G, k=rank, which="LM")

        def update_transform(self):
            c = 1.0 / (self.alpha * self.sigma2)
            d = self.P1
            b = self.P @ self.X - d[:, None] * self.Y
            inner = np.diag(1.0 / self.lam) + c * (self.Q.T * d) @ self.Q
            self.W = c * b - c * c * (d[:, None] * self.Q) @ np.linalg.solve(
                inner, self.Q.T @ b)

        def transform_point_cloud(self, Y=None):
            self.TY = self.Y + self.Q @ (self.lam[:, None] * (self.Q.T @ self.W))

        def displace(self, points: np.ndarray) -> np.ndarray:
            """Move other points (landmarks) by the same deformation field: the kernel's
            Nystrom extension, G(z, Y) Q Q^T W, which equals the low-rank field on the
            cloud itself (pycpd's transform_point_cloud(Y=...) reuses the cloud's kernel)."""
            squared = ((points[:, None, :] - self.Y[None, :, :]) ** 2).sum(-1)
            kernel = np.exp(-squared / (2 * self.beta ** 2))
            return points + kernel @ (self.Q @ (self.Q.T @ self.W))

    return LowRankCPD


class TransferCache:
    """ALPACA transfers on disk, one .npz (points, seconds) per (template, target, seed), for
    evaluations that need a transfer more than once (cross-validation, leave-one-out). One
    cache serves one set of meshes: keys are specimen names."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_settings(cls, root: Path, config: dict) -> TransferCache:
        """The cache under `root` of these registration settings (a hash of them; not of the
        template count: a transfer is one template's)."""
        relevant = {k: v for k, v in sorted(config.items()) if k not in {"templates", "tasks"}}
        text = json.dumps(relevant, sort_keys=True, default=str)
        return cls(Path(root) / hashlib.sha256(text.encode()).hexdigest()[:12])

    def path(self, key: tuple[str, str, int]) -> Path:
        template, target, seed = key
        return self.folder / f"{template}__{target}__{seed}.npz"

    def get(self, key: tuple[str, str, int]) -> np.ndarray | None:
        path = self.path(key)
        if not path.is_file():
            return None
        with np.load(path) as stored:
            return np.asarray(stored["points"])

    def put(self, key: tuple[str, str, int], points: np.ndarray, seconds: float = 0.0) -> None:
        tmp = self.path(key).with_suffix(".tmp.npz")
        np.savez(tmp, points=points, seconds=seconds)
        tmp.replace(self.path(key))  # whole or absent, however the run is stopped

    def seconds(self, key: tuple[str, str, int]) -> float:
        with np.load(self.path(key)) as stored:
            return float(stored["seconds"])


def predict(task, model, inputs, config):
    return place(model, inputs, config)


def place(model, inputs, config, cache=None):
    """Each input specimen's landmarks: transferred from every template, their median.
    `cache` (optional; `get(key)` and `put(key, points)`, key = (template, specimen, seed))
    keeps transfers that an evaluation needs more than once."""
    out = {}
    seconds = []
    for specimen, mesh in zip(inputs.ids, inputs.meshes, strict=True):
        start = time.perf_counter()
        vertices = np.asarray(mesh.vertices)
        estimates = []
        for k, (template, tv, tl) in enumerate(model["templates"]):
            key = (template, specimen, config["seed"] + k)
            found = None if cache is None else cache.get(key)
            if found is None:
                found = transfer(tv, tl, vertices, config, seed=key[2])[0]
                if cache is not None:
                    cache.put(key, found)
            estimates.append(found)
        points = np.median(estimates, axis=0)
        if config["project"]:
            _, nearest = cKDTree(vertices).query(points)
            points = vertices[nearest]
        out[specimen] = points
        seconds.append(time.perf_counter() - start)
    # What `competition run` records and logs as this entry's speed.
    model["speeds"] = {"seconds_per_specimen": float(np.mean(seconds))}
    return out


def cross_estimates(train, config, progress=None, cache=None) -> np.ndarray:
    """Leave-one-out estimates of the training specimens: each one landmarked from templates
    chosen among the others, as a test specimen would be. (specimens, landmarks, 3); what a
    refiner trains on, so that its training estimates err the way ALPACA's do."""
    out = np.empty_like(np.asarray(train.points, dtype=np.float64))
    for k in range(len(train.ids)):
        rest = [j for j in range(len(train.ids)) if j != k]
        others = type(train)([train.ids[j] for j in rest], [train.meshes[j] for j in rest],
                             train.landmarks, train.points[rest])
        target = type(train)([train.ids[k]], [train.meshes[k]], train.landmarks)
        out[k] = place(choose_templates(others, config), target, config,
                       cache)[train.ids[k]]
        if progress is not None:
            progress(k)
    return out


def probabilities(task, model, inputs, config):
    """Coordinates are what landmark ensembles combine (mean or median per point)."""
    return predict(task, model, inputs, config)
