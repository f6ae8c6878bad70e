"""Every hand-checkable vector of ../shared/METRICS.md, to 1e-6."""

from __future__ import annotations

import math

import numpy as np
import pytest

from competition.formats import rle
from competition.metrics import em, landmarks, multiclass, nuclei, surface


def img(shape, *objects):
    """A label image with object k+1 at the given (row, col) pixels."""
    out = np.zeros(shape, np.int32)
    for k, pixels in enumerate(objects, 1):
        for r, c in pixels:
            out[r, c] = k
    return out


def block(r0, c0, h, w):
    return [(r, c) for r in range(r0, r0 + h) for c in range(c0, c0 + w)]


# --- §1 nuclei ---------------------------------------------------------------------------

def test_a1_identical_object():
    t = img((4, 4), block(0, 0, 2, 2))
    assert nuclei.image_score(t, t) == pytest.approx(1.0, abs=1e-6)


def test_a2_iou_exactly_half_is_not_a_hit():
    t = img((2, 2), [(0, 0), (0, 1)])
    p = img((2, 2), [(0, 0)])
    assert nuclei.image_score(t, p) == pytest.approx(0.0, abs=1e-6)


def test_a3_iou_075_hits_below_075_only():
    t = img((4, 4), block(0, 0, 2, 2))
    p = img((4, 4), [(0, 0), (0, 1), (1, 0)])
    assert nuclei.image_score(t, p) == pytest.approx(0.5, abs=1e-6)


def test_a4_both_empty_scores_one():
    z = np.zeros((3, 3), np.int32)
    assert nuclei.image_score(z, z) == 1.0


def test_a5_true_empty_one_predicted_pixel():
    assert nuclei.image_score(np.zeros((3, 3), int), img((3, 3), [(1, 1)])) == 0.0


def test_a6_one_prediction_covering_two_objects():
    t = img((4, 4), block(0, 0, 2, 2), block(2, 0, 2, 2))
    p = img((4, 4), block(0, 0, 4, 2))
    assert nuclei.image_score(t, p) == pytest.approx(0.0, abs=1e-6)


def test_a7_two_predictions_splitting_one_object():
    t = img((4, 4), block(0, 0, 4, 2))
    p = img((4, 4), block(0, 0, 2, 2), block(2, 0, 2, 2))
    assert nuclei.image_score(t, p) == pytest.approx(0.0, abs=1e-6)


def test_a8_mixed_image():
    a = block(0, 0, 2, 5)  # 10 px
    b = block(4, 4, 2, 2)  # 4 px, unmatched
    t = img((6, 6), a, b)
    p = img((6, 6), a[:9], [(3, 0), (4, 0), (5, 0)])  # 9 px inside A (IoU 0.9); 3-px FP
    # P = 1/3 for t <= 0.85 (8 thresholds), 0 at 0.90 (IoU 0.9 is not > 0.9) and 0.95.
    assert nuclei.image_score(t, p) == pytest.approx(0.266667, abs=1e-6)
    m = nuclei.match_image(t, p)
    assert m.tp.tolist() == [1] * 8 + [0, 0]
    assert m.fp.tolist() == [1] * 8 + [2, 2]
    assert m.fn.tolist() == [1] * 8 + [2, 2]


def test_a9_non_consecutive_labels():
    t = img((4, 4), block(0, 0, 2, 2), block(2, 2, 2, 2))
    t = np.where(t == 1, 5, np.where(t == 2, 9, 0))
    p = np.where(t == 5, 2, np.where(t == 9, 40, 0))
    assert nuclei.image_score(t, p) == 1.0


def test_thresholds_are_exact_integers():
    assert nuclei.THRESHOLDS_PERCENT.tolist() == list(range(50, 100, 5))


# --- RLE --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("shape", "pixels", "expected"),
    [
        ((4, 3), [(0, 1)], "5 1"),
        ((4, 3), [(2, 0), (3, 0), (0, 1), (1, 1)], "3 4"),
        ((3, 3), [(0, 0), (1, 0), (2, 0), (0, 1)], "1 4"),
    ],
)
def test_rle_vectors(shape, pixels, expected):
    mask = img(shape, pixels) > 0
    assert rle.encode(mask) == expected
    labels, bad = rle.runs_to_labels([rle.parse(expected, mask.size)], shape)
    assert bad == -1 and ((labels > 0) == mask).all()


@pytest.mark.parametrize(
    ("text", "rule"),
    [("3 2 1 1", "strictly increasing"), ("0 1", "< 1"), ("1 2 2 1", "overlap")],
)
def test_rle_rejects(text, rule):
    with pytest.raises(rle.RLEError, match=rule):
        rle.parse(text, 12)


def test_rle_rejects_overlap_between_rows_of_one_image():
    runs = [rle.parse("1 2", 9), rle.parse("2 1", 9)]
    _, first_bad = rle.runs_to_labels(runs, (3, 3))
    assert first_bad == 1


# --- §2 EM ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("truth", "proposal", "v_rand", "v_info"),
    [
        ([[1, 1], [2, 2]], [[1, 1], [2, 2]], 1.0, 1.0),
        ([[1, 2], [3, 2]], [[1, 1], [1, 1]], 0.545455, 0.0),
        ([[1, 1, 1, 1]], [[1, 1, 0, 0]], 0.545455, 0.0),
        ([[1, 1, 1, 0], [2, 2, 2, 0], [2, 2, 0, 3]],
         [[5, 5, 6, 6], [5, 5, 6, 6], [7, 7, 0, 6]], 0.46875, 0.262915),
    ],
    ids=["B1", "B2", "B3", "B4"],
)
def test_b_vectors(truth, proposal, v_rand, v_info):
    s = em.foreground_restricted_scores(np.array(truth), np.array(proposal))
    assert s.v_rand == pytest.approx(v_rand, abs=1e-6)
    assert s.v_info == pytest.approx(v_info, abs=1e-6)


def test_thinning_leaves_one_pixel_lines_between_regions():
    binary = np.ones((5, 9), bool)
    binary[:, 3:6] = False  # a 3-pixel membrane between two cells
    seg = em.thin_borders(binary)
    assert set(np.unique(seg)) == {0, 1, 2}
    assert ((seg == 0).sum(axis=1) == 1).all()  # one line pixel per row


def test_thinning_slice_without_cells_is_one_segment():
    assert (em.thin_borders(np.zeros((4, 4), bool)) == 1).all()


# --- §3 surface -------------------------------------------------------------------------

def square(r, c, size=3, shape=(7, 7)):
    m = np.zeros(shape, bool)
    m[r:r + size, c:c + size] = True
    return m


def test_c1_single_pixels():
    a, b = np.zeros((7, 7), bool), np.zeros((7, 7), bool)
    a[2, 2], b[2, 5] = True, True
    s = surface.surface_scores(a, b)
    assert (s.dice, s.hausdorff, s.assd) == pytest.approx((0, 3, 3), abs=1e-6)


def test_c2_shifted_square():
    s = surface.surface_scores(square(1, 1), square(1, 2))
    assert (s.dice, s.hausdorff, s.hd95, s.assd) == pytest.approx((0.666667, 1, 1, 0.5), abs=1e-6)


def test_c3_square_plus_isolated_pixel():
    b = square(1, 1)
    b[6, 6] = True
    s = surface.surface_scores(square(1, 1), b)
    assert (s.dice, s.hausdorff, s.hd95) == pytest.approx((0.947368, 4.242641, 0.848528),
                                                          abs=1e-6)
    # 17 pooled distances, all 0 but one of sqrt(18): ASSD = sqrt(18) / 17 = 0.2495671 exactly
    # by METRICS.md's own definition (its table prints 0.249579, 1.2e-5 away; MedPy agrees
    # with the definition, see test_metric_references.py).
    assert s.assd == pytest.approx(math.sqrt(18) / 17, abs=1e-9)
    assert s.assd == pytest.approx(0.249579, abs=2e-5)


def test_c7_anisotropic_spacing():
    s = surface.surface_scores(square(1, 1), square(2, 1), spacing=(2, 1))
    assert (s.dice, s.hausdorff, s.assd) == pytest.approx((0.666667, 2, 0.875), abs=1e-6)


def test_empty_masks():
    z = np.zeros((5, 5), bool)
    assert surface.surface_scores(z, z) == surface.SurfaceScores(1.0, 0.0, 0.0, 0.0)
    s = surface.surface_scores(z, square(1, 1, shape=(5, 5)))
    assert s.dice == 0 and s.hausdorff == s.hd95 == s.assd == math.inf


def test_crop_does_not_change_distances_in_3d():
    a = np.zeros((20, 30, 25), bool)
    b = np.zeros_like(a)
    a[5:12, 4:20, 3:9] = True
    b[7:15, 10:26, 5:12] = True
    b[18, 28, 23] = True  # a far-away voxel near the corner
    d_ab, d_ba = surface.surface_distances(a, b, (1.5, 1.0, 0.7))
    from scipy import ndimage
    full = ndimage.distance_transform_edt(~surface.surface(b), sampling=(1.5, 1.0, 0.7))
    np.testing.assert_allclose(np.sort(d_ab), np.sort(full[surface.surface(a)]))


# --- §4 multiclass ----------------------------------------------------------------------

def test_d1():
    t = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [2, 2, 2, 1]])
    p = np.array([[0, 1, 1, 1], [0, 2, 2, 2], [2, 2, 0, 1]])
    c = multiclass.confusion_matrix(t, p, 3)
    np.testing.assert_allclose(multiclass.per_class_iou(c), [0.5, 0.6, 0.666667], atol=1e-6)
    assert multiclass.mean_iou(c) == pytest.approx(0.588889, abs=1e-6)


def test_absent_class_is_nan_and_excluded():
    c = multiclass.confusion_matrix(np.array([0, 1]), np.array([0, 1]), 3)
    iou = multiclass.per_class_iou(c)
    assert np.isnan(iou[2]) and multiclass.mean_iou(c) == 1.0


def test_dataset_aggregation_sums_confusions():
    c1 = multiclass.confusion_matrix(np.array([0, 0]), np.array([0, 1]), 2)
    c2 = multiclass.confusion_matrix(np.array([1, 1]), np.array([1, 1]), 2)
    per_class, miou = multiclass.dataset_iou([c1, c2])
    np.testing.assert_allclose(per_class, [0.5, 2 / 3])
    assert miou == pytest.approx((0.5 + 2 / 3) / 2)


# --- §5 landmarks -----------------------------------------------------------------------

def test_e1():
    manual = np.array([(10, 10), (20, 20), (30, 30)])
    model = np.array([(13, 14), (20, 20), (30, 33)])
    reference = np.array([(10, 12), (21, 20), (30, 33)])
    d_model = landmarks.distances(model, manual)
    d_ref = landmarks.distances(reference, manual)
    np.testing.assert_allclose(d_model, [5, 0, 3])
    np.testing.assert_allclose(d_ref, [2, 1, 3])
    assert landmarks.rmse(d_model) == pytest.approx(3.366502, abs=1e-6)
    w = landmarks.win_rate(d_model, d_ref)
    assert w.percent == pytest.approx(33.333, abs=1e-3)
    assert (w.wins, w.ties, w.n) == (1, 1, 3)
