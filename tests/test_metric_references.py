"""Cross-checks against the references the field trusts (test-only dependencies)."""

from __future__ import annotations

import csv
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from competition.formats import rle
from competition.metrics import contingency, em, multiclass, nuclei, surface
from tests.conftest import shared


def real_dsb_labels(n_images: int) -> list[np.ndarray]:
    """Label images of the first n real DSB training images, decoded from Kaggle's CSV."""
    root = shared("dsb2018")
    rows = defaultdict(list)
    with open(root / "stage1_train_labels.csv") as f:
        for row in csv.DictReader(f):
            rows[row["ImageId"]].append(row["EncodedPixels"])
    out = []
    for image_id in sorted(rows)[:n_images]:
        with Image.open(root / "stage1_train" / image_id / "images" / f"{image_id}.png") as im:
            w, h = im.size
        labels, bad = rle.runs_to_labels([rle.parse(s, h * w) for s in rows[image_id]], (h, w))
        assert bad == -1
        out.append(labels)
    return out


def perturb(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible prediction: objects dropped, eroded, dilated, shifted; a few false ones."""
    out = np.zeros_like(labels)
    for lab in range(1, labels.max() + 1):
        mask = labels == lab
        action = rng.integers(0, 5)
        if action == 0:
            continue
        if action == 1:
            mask = ndimage.binary_erosion(mask)
        elif action == 2:
            mask = ndimage.binary_dilation(mask)
        elif action == 3:
            mask = np.roll(mask, int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2)))
        out[mask & (out == 0)] = lab + 1000
    h, w = labels.shape
    for k in range(3):
        r, c = rng.integers(0, h - 5), rng.integers(0, w - 5)
        out[r:r + 4, c:c + 4][out[r:r + 4, c:c + 4] == 0] = 5000 + k
    return out


def exact_tp(true: np.ndarray, pred: np.ndarray) -> list[int]:
    """Independent integer implementation: object masks and exact fractions, no bincount."""
    tps = []
    t_ids = [v for v in np.unique(true) if v]
    ious = []
    for a in t_ids:
        ma = true == a
        for b in np.unique(pred[ma]):
            if b == 0:
                continue
            mb = pred == b
            inter = int((ma & mb).sum())
            ious.append(Fraction(inter, int((ma | mb).sum())))
    for t in range(50, 100, 5):
        tps.append(sum(iou > Fraction(t, 100) for iou in ious))
    return tps


@pytest.mark.real_data
def test_nuclei_equals_an_independent_exact_implementation_on_real_masks():
    rng = np.random.default_rng(0)
    for labels in real_dsb_labels(25):
        pred = perturb(labels, rng)
        assert nuclei.match_image(labels, pred).tp.tolist() == exact_tp(labels, pred)


@pytest.mark.real_data
def test_nuclei_agrees_with_stardist_matching_except_at_exact_ties():
    """stardist counts IoU >= t in float32 with Hungarian matching; we count IoU > t exactly.

    For t >= 0.5 matches are unique, so the only possible differences are pairs whose IoU
    equals a threshold exactly (or within float32 rounding of it): those count for stardist
    and not for us. Every disagreement must be explained by such a pair.
    """
    from stardist.matching import matching

    rng = np.random.default_rng(1)
    thresholds = list(nuclei.THRESHOLDS)
    compared = explained = 0
    for labels in real_dsb_labels(120):
        pred = perturb(labels, rng)
        ours = nuclei.match_image(labels, pred)
        stats = matching(labels, pred, thresh=thresholds)
        theirs = np.array([s.tp for s in stats])
        assert ours.n_true == stats[0].n_true and ours.n_pred == stats[0].n_pred
        t_flat, n_t = contingency.relabel(labels)
        p_flat, n_p = contingency.relabel(pred)
        i, j, inter = contingency.overlaps(t_flat, n_t, p_flat, n_p,
                                           where=(t_flat > 0) & (p_flat > 0))
        area_t = np.bincount(t_flat)
        area_p = np.bincount(p_flat)
        union = area_t[i] + area_p[j] - inter
        for k, pct in enumerate(nuclei.THRESHOLDS_PERCENT):
            compared += 1
            if ours.tp[k] == theirs[k]:
                continue
            explained += 1
            iou32 = (inter / union).astype(np.float32)
            at_tie = (100 * inter == pct * union) | (np.abs(iou32 - np.float32(pct / 100)) < 1e-6)
            assert theirs[k] - ours.tp[k] == int(at_tie.sum()), (pct, ours.tp[k], theirs[k])
    assert compared == 120 * 10
    assert explained < compared * 0.05  # ties are rare; systematic disagreement would not be


def test_exact_ties_are_where_the_references_differ():
    """The documented difference on a hand-made tie: IoU exactly 0.5 (METRICS.md A2)."""
    from stardist.matching import matching

    true = np.zeros((4, 4), np.int32)
    true[0, :2] = 1
    pred = np.zeros_like(true)
    pred[0, 0] = 1
    assert nuclei.match_image(true, pred).tp[0] == 0
    assert matching(true, pred, thresh=0.5).tp == 1


@pytest.mark.parametrize("ndim", [2, 3])
def test_surface_metrics_equal_medpy(ndim):
    from medpy.metric import binary

    rng = np.random.default_rng(ndim)
    shape = (40, 48) if ndim == 2 else (24, 30, 28)
    for _ in range(6):
        a = ndimage.gaussian_filter(rng.random(shape), 2) > 0.52
        b = ndimage.binary_dilation(a, iterations=int(rng.integers(0, 3))) ^ \
            (ndimage.gaussian_filter(rng.random(shape), 3) > 0.56)
        if not a.any() or not b.any():
            continue
        spacing = tuple(rng.uniform(0.3, 2.5, ndim))
        s = surface.surface_scores(a, b, spacing)
        assert s.dice == pytest.approx(binary.dc(a, b), abs=1e-12)
        assert s.hausdorff == pytest.approx(binary.hd(a, b, voxelspacing=spacing), abs=1e-9)
        assert s.hd95 == pytest.approx(binary.hd95(a, b, voxelspacing=spacing), abs=1e-9)
        assert s.assd == pytest.approx(binary.assd(a, b, voxelspacing=spacing), abs=1e-9)


def test_adapted_rand_error_equals_scikit_image():
    from skimage.metrics import adapted_rand_error

    rng = np.random.default_rng(5)
    for _ in range(10):
        truth = ndimage.label(ndimage.gaussian_filter(rng.random((60, 70)), 2) > 0.5)[0]
        prop = ndimage.label(ndimage.gaussian_filter(rng.random((60, 70)), 2) > 0.48)[0]
        ours = em.adapted_rand_error(truth, prop)
        theirs = adapted_rand_error(truth, prop)
        np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_isbi_score_is_not_adapted_rand_error():
    truth = np.array([[1, 1, 1, 1]])
    prop = np.array([[1, 1, 0, 0]])
    assert em.foreground_restricted_scores(truth, prop).v_rand == pytest.approx(6 / 11)
    assert 1 - em.adapted_rand_error(truth, prop)[0] != pytest.approx(6 / 11)


def test_per_class_jaccard_equals_scikit_learn():
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(7)
    for _ in range(10):
        t = rng.integers(0, 4, 500)
        p = np.where(rng.random(500) < 0.7, t, rng.integers(0, 4, 500))
        c = multiclass.confusion_matrix(t, p, 4)
        expected = jaccard_score(t, p, average=None, labels=[0, 1, 2, 3])
        np.testing.assert_allclose(multiclass.per_class_iou(c), expected, atol=1e-12)
        assert multiclass.mean_iou(c) == pytest.approx(
            jaccard_score(t, p, average="macro", labels=[0, 1, 2, 3]))


def test_many_objects_never_build_a_dense_table():
    """40,000 objects on each side: a dense n_true x n_pred table would need 12.8 GB."""
    import tracemalloc

    side = 400
    true = np.arange(side * side, dtype=np.int64).reshape(side, side) // 4 + 1
    pred = np.roll(true, 1, axis=1) + 7
    tracemalloc.start()
    m = nuclei.match_image(true, pred)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    n = side * side // 4
    assert m.n_true == m.n_pred == n
    # Each 1x4 strip is matched by its copy shifted one pixel: IoU 3/5, a hit up to t = 0.55.
    assert m.tp[0] == m.tp[1] > 0.98 * n and m.tp[2] == 0
    assert peak < 100 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


def test_border_thinning_matches_scikit_image_watershed_up_to_tie_placement():
    """Our compiled flood is scikit-image's binary-relief watershed with raster-order seeding:
    same regions and line properties; only where two fronts meet at equal distance may the
    line sit one pixel over, which moves V_rand by ~1e-4 at most."""
    from skimage.segmentation import watershed

    rng = np.random.default_rng(11)
    cross = ndimage.generate_binary_structure(2, 1)
    for _ in range(8):
        field = ndimage.gaussian_filter(rng.random((96, 96)), 2.5)
        binary = field > np.quantile(field, 0.3)
        ours = em.thin_borders(binary)
        markers, n = ndimage.label(binary, cross)
        theirs = watershed((~binary).astype(np.uint8), markers, connectivity=1,
                           watershed_line=True)
        assert (ours[binary] == markers[binary]).all()  # cells keep their region
        assert set(np.unique(ours)) - {0} == set(range(1, n + 1))
        for a, b in ((ours[1:], ours[:-1]), (ours[:, 1:], ours[:, :-1])):
            assert not ((a > 0) & (b > 0) & (a != b)).any()  # regions never touch
        assert abs((ours == 0).mean() - (theirs == 0).mean()) < 0.01
        truth = ndimage.label(ndimage.gaussian_filter(rng.random((96, 96)), 2.5) > 0.5,
                              cross)[0]
        v_ours = em.foreground_restricted_scores(truth, ours).v_rand
        v_theirs = em.foreground_restricted_scores(truth, theirs).v_rand
        assert abs(v_ours - v_theirs) < 2e-3


@pytest.mark.real_data
def test_cli_nuclei_score_on_the_real_hidden_split(real_dirs, tmp_path, capsys):
    """`competition score nuclei` end to end on the 134 real hidden images: per image, the
    TP counts equal the exact-fraction implementation, and the score is stardist's up to
    exact-threshold ties."""
    import json

    from stardist.matching import matching

    from competition.board.prepared import PreparedCompetition
    from tests.test_bad_input import run_cli

    comp = PreparedCompetition.open(real_dirs["dsb2018"])
    solution = comp.load_solution()
    rng = np.random.default_rng(2)
    rows, truth, preds = [], {}, {}
    for image_id, image in solution.items():
        h, w = image.shape
        flat, _ = image.labels_flat(image_id)
        labels = flat.reshape(w, h).T
        pred = perturb(labels, rng)
        truth[image_id], preds[image_id] = labels, pred
        rows += [f"{image_id},{enc}" for enc in rle.encode_labels(pred) or [""]]
    sub = tmp_path / "sub.csv"
    sub.write_text("ImageId,EncodedPixels\n" + "\n".join(rows) + "\n")
    code, out, err = run_cli(["score", "nuclei", sub, "--solution", comp.solution_path,
                              "--json", "--per-image"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["n_images"] == 134
    stardist_scores = []
    for row in result["per_image"]:
        t, p = truth[row["ImageId"]], preds[row["ImageId"]]
        assert row["tp"] == exact_tp(t, p)
        stats = matching(t, p, thresh=list(nuclei.THRESHOLDS))
        stardist_scores.append(np.mean([s.accuracy for s in stats]))
    assert result["score"] == pytest.approx(np.mean(stardist_scores), abs=2e-3)
