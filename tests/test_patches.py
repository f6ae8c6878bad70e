"""Surface patch images: geometry of the projection and its inverse map, channels."""

from __future__ import annotations

import numpy as np

from competition.formats import meshes
from competition.landmark_imaging import patches
from tests.conftest import shared


def grid(n: int = 81, extent: float = 4.0, bump: float = 0.0):
    """A square surface in the xy-plane (optionally with a Gaussian bump at the origin)."""
    xs = np.linspace(-extent, extent, n)
    x, y = np.meshgrid(xs, xs)
    z = bump * np.exp(-(x ** 2 + y ** 2) / 0.5)
    vertices = np.column_stack([x.ravel(), y.ravel(), z.ravel()])
    k = np.arange(n * n).reshape(n, n)
    a, b, c, d = k[:-1, :-1].ravel(), k[:-1, 1:].ravel(), k[1:, :-1].ravel(), k[1:, 1:].ravel()
    faces = np.concatenate([np.column_stack([a, b, d]), np.column_stack([a, d, c])])
    return vertices, faces


def test_plane_projects_and_maps_back_exactly():
    vertices, faces = grid()
    patch = patches.render(vertices, faces, np.zeros(3), radius=2.0)
    assert np.allclose(np.abs(patch.axes[2]), [0, 0, 1])  # viewed along the normal
    assert np.isfinite(patch.height).all()  # the window is covered
    assert np.allclose(patch.to_pixel(np.zeros(3)), (patches.SIZE - 1) / 2)
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-1.5, 1.5, (20, 2)), np.zeros(20)])
    pixels = patch.to_pixel(points)
    back = patch.to_surface(pixels)
    # Nearest-pixel ray hits: within half a pixel diagonal in the plane, exact in height.
    assert np.abs(back[:, :2] - points[:, :2]).max() <= patch.mm_per_pixel * 0.71
    assert np.allclose(back[:, 2], 0, atol=1e-9)
    assert (patch.image[..., 0] > 250).all()  # a plane hides no sky
    shifted = patches.render(vertices, faces, np.zeros(3), radius=2.0, shift=(0.5, 0.0))
    moved = shifted.to_pixel(np.zeros(3))[0] - patch.to_pixel(np.zeros(3))[0]
    assert np.allclose(np.abs(moved), [0.5 / patch.mm_per_pixel, 0])


def test_channels_see_a_bump():
    vertices, faces = grid(bump=1.0)
    patch = patches.render(vertices, faces, np.array([0.0, 0.0, 1.0]), radius=3.0)
    centre = (patches.SIZE - 1) // 2
    top = patch.image[centre, centre]
    foot = patch.image[centre, centre + 30]  # beside the bump, ~0.8 mm out
    far = patch.image[centre, 5]
    assert top[1] > far[1] + 20  # curvature: the convex top is brighter than the flat
    assert foot[0] < far[0]  # openness: the bump hides sky from its foot
    assert np.nanmax(patch.height) > np.nanmin(patch.height) + 0.9


def test_real_landmarks_map_back_to_the_surface():
    source = shared("mouse_skulls")
    ply = sorted((source / "Models").glob("*.ply"))[0]
    markup = source / "LMs" / f"{ply.stem}.mrk.json"
    mesh, _, _ = meshes.drop_nonfinite(meshes.read_mesh(ply.read_bytes(), str(ply)))
    points = meshes.read_markups(markup.read_bytes(), str(markup))
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    normals = patches.vertex_normals(vertices, faces)
    curvature = patches.vertex_curvature(vertices, faces, normals)
    errors = []
    for name in list(points)[:10]:
        patch = patches.render(vertices, faces, points[name], 2.0, normals=normals,
                               curvature=curvature)
        back = patch.to_surface(patch.to_pixel(points[name]))[0]
        if np.isfinite(back).all():  # a landmark on a thin edge may face away
            errors.append(np.linalg.norm(back - points[name]))
    assert len(errors) >= 7
    assert np.median(errors) < 0.1, errors  # 2 mm window: 0.018 mm per pixel


def test_surface_renders_its_neighbourhood_exactly_as_the_whole_mesh():
    """Surface.render draws from the vertices a view can reach: the same bytes as `render`
    on the whole mesh, for every view, shift and seed."""
    source = shared("mouse_skulls")
    ply = sorted((source / "Models").glob("*.ply"))[1]
    mesh, _, _ = meshes.drop_nonfinite(meshes.read_mesh(ply.read_bytes(), str(ply)))
    surface = patches.Surface.of(np.asarray(mesh.vertices), np.asarray(mesh.faces))
    rng = np.random.default_rng(0)
    for k, vertex in enumerate(rng.choice(len(surface.vertices), 4, replace=False)):
        centre = surface.vertices[vertex] + rng.normal(0, 0.2, 3)
        seed = None if k % 2 else np.array([0.0, 1.0, 0.0])
        for view in patches.views(radii=(1.0, 2.0, 4.0), shift=1.5):
            fast = surface.render(centre, view, seed)
            whole = patches.render(surface.vertices, surface.faces, centre, view.radius,
                                   view.shift, surface.normals, surface.curvature, seed)
            assert np.array_equal(fast.image, whole.image)
            assert np.array_equal(fast.height, whole.height, equal_nan=True)
            assert np.array_equal(fast.axes, whole.axes)
            assert fast.image.any()


def test_patch_sets_for_training_and_test_specimens(demo_dirs, tmp_path, capsys):
    import csv

    from PIL import Image

    from tests.test_bad_input import run_cli

    comp = demo_dirs["demo-landmarks"]
    # The landmarks task's own command (its plugin adds it under the task's name).
    code, out, err = run_cli(["landmarks", "patches", comp, "--out", tmp_path / "train"],
                             capsys)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "train" / "index.csv").open()))
    assert len(rows) == 8 * 10 * 4  # training specimens x landmarks x views
    # Centre and axes are in the specimen's own coordinates: the manual landmark's pixel
    # maps back onto it (in the image plane) through them.
    from competition.board.prepared import PreparedCompetition

    prepared = PreparedCompetition.open(comp)
    train = prepared.task.load_train(prepared.public_dir)
    for row in rows[::37]:
        truth = train.points[train.ids.index(row["specimen"]),
                             train.landmarks.index(row["landmark"])]
        axes = np.array(row["axes"].split(), float).reshape(3, 3)
        centre = np.array([float(row[f"centre_{c}"]) for c in "xyz"])
        pixel = np.array([float(row["truth_col"]), float(row["truth_row"])])
        in_plane = (truth - centre) @ axes[:2].T / float(row["mm_per_pixel"])
        assert np.allclose(in_plane + (patches.SIZE - 1) / 2, pixel, atol=1e-4)
    for row in rows[:8]:
        with Image.open(tmp_path / "train" / row["image"]) as im:
            assert im.size == (patches.SIZE, patches.SIZE) and im.mode == "RGB"
        assert row["truth_col"] and float(row["mm_per_pixel"]) > 0
    # The manual landmark lies within its window (jitter 0.4 mm, smallest radius 1 mm).
    inside = [0 <= float(r["truth_col"]) < patches.SIZE for r in rows if r["view"] == "0"]
    assert np.mean(inside) > 0.95

    code, out, err = run_cli(["landmarks", "patches", comp, "--out", tmp_path / "test",
                              "--split", "test"], capsys)
    assert code == 2 and "--estimates" in err
    code, out, err = run_cli(["landmarks", "patches", comp, "--out", tmp_path / "test",
                              "--split", "test", "--estimates",
                              comp / "public" / "sample_submission.csv"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "test" / "index.csv").open()))
    assert rows and all(r["truth_col"] == "" for r in rows)  # hidden landmarks never written


def test_seed_sets_the_image_x_axis_and_moved_surfaces_draw_the_same_patch():
    from scipy.spatial.transform import Rotation

    vertices, faces = grid(bump=1.0)
    vertices = vertices + np.random.default_rng(0).normal(0, 0.02, vertices.shape)  # no symmetry
    surface = patches.Surface.of(vertices, faces)
    centre = np.array([0.3, -0.2, 0.9])
    seed = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    patch = surface.render(centre, patches.View(2.0), seed)
    view = patch.axes[2]
    in_plane = seed - view * (seed @ view)
    assert np.allclose(patch.axes[0], in_plane / np.linalg.norm(in_plane))
    # The same surface moved rigidly, viewed with the seed moved along: the same image, and
    # pixels map back to the moved surface points.
    rotation = Rotation.from_euler("xyz", [40, -70, 150], degrees=True).as_matrix()
    pose = rotation, np.array([5.0, -3.0, 8.0])
    moved = surface.moved(pose)
    again = moved.render(centre @ rotation.T + pose[1], patches.View(2.0), rotation @ seed)
    assert np.abs(again.image.astype(int) - patch.image.astype(int)).max() <= 2
    direct = patches.Surface.of(vertices @ rotation.T + pose[1], faces)
    assert np.allclose(direct.normals, moved.normals) and np.allclose(direct.curvature,
                                                                        moved.curvature)
    pixel = np.array([[140.0, 90.0]])
    assert np.allclose(again.to_surface(pixel), patch.to_surface(pixel) @ rotation.T + pose[1])


def test_common_pose_draws_the_same_patches_whatever_the_rotation(demo_dirs):
    from scipy.spatial.transform import Rotation

    from competition.board.prepared import PreparedCompetition
    from competition.landmark_imaging import procrustes

    comp = PreparedCompetition.open(demo_dirs["demo-landmarks"])
    train = comp.task.load_train(comp.public_dir)
    mean = procrustes.mean_shape(train.points)
    mesh, estimates = train.meshes[0], train.points[0]
    rotated = mesh.copy()
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler("zyx", [120, -35, 70], degrees=True).as_matrix()
    matrix[:3, 3] = [12.0, -40.0, 7.0]
    rotated.apply_transform(matrix)
    seed = np.array([0.0, 1.0, 0.0])
    drawn = []
    for m, e in ((mesh, estimates), (rotated, estimates @ matrix[:3, :3].T + matrix[:3, 3])):
        surface, placed, _ = patches.posed(m.vertices, m.faces, e, mean)
        drawn.append((placed, surface.render(placed[2], patches.View(2.0), seed).image.astype(int)))
    assert np.allclose(drawn[0][0], drawn[1][0], atol=1e-6)
    assert np.abs(drawn[0][1] - drawn[1][1]).max() <= 2
