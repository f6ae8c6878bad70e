"""Threshold + watershed baseline, OpenCV only (no learning beyond two numbers).

Nuclei: grey image; invert it when its mean is above a cut learned on the training images
(bright-field and stained tissue show dark nuclei on a bright background); contrast stretch;
a global threshold chosen on the training images by a foreground-IoU sweep; an opening drops
specks; distance transform, markers (the cores of objects, at a fraction of each object's
largest distance, chosen on training images by the competition metric) and a watershed split
touching nuclei.
EM: the same idea on membrane intensity: membranes are dark, so the smoothed, stretched
intensity is the cell probability; the smoothing is chosen on training slices by V_rand.

The two pipelines differ by what the task asks for (`task.prediction`): instance labels
(nuclei) or a probability map (EM).
"""

import cv2
import numpy as np

from competition.metrics import em as em_metric
from competition.metrics.nuclei import image_score
from competition.progress import track


def grey(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def stretch(gray, invert):
    low, high = np.percentile(gray, (1, 99))
    out = cv2.convertScaleAbs(gray, alpha=255.0 / max(high - low, 1), beta=-low * 255.0 /
                              max(high - low, 1))
    return 255 - out if invert else out


def learn_inversion_cut(grays, labels):
    """The image-mean cut that best predicts 'nuclei darker than background'."""
    means = np.array([g.mean() for g in grays])
    darker = np.array([g[lab > 0].mean() < g[lab == 0].mean() for g, lab in
                       zip(grays, labels, strict=True)])
    candidates = np.concatenate([[-1.0], np.sort(means) + 1e-3])
    accuracy = [((means > c) == darker).mean() for c in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def wants_probabilities(task):
    return task.prediction == "probabilities"


def fit(task, train, config, on_epoch=None):
    if wants_probabilities(task):
        return {"sigma": best_em_sigma(train, config)}
    rng = np.random.default_rng(config["seed"])
    pick = rng.permutation(len(train.images))[: config["max_fit_images"]]
    grays = [grey(train.images[k]) for k in pick]
    labels = [train.labels[k] for k in pick]
    cut = learn_inversion_cut(grays, labels)
    prepared = [stretch(g, g.mean() > cut) for g in grays]
    best = (-1.0, 128)
    for t in track(range(5, 255, 5), "Choosing the threshold"):
        ious = []
        for image, lab in zip(prepared, labels, strict=True):
            pred, true = image > t, lab > 0
            union = (pred | true).sum()
            ious.append((pred & true).sum() / union if union else 1.0)
        best = max(best, (float(np.mean(ious)), t))
    threshold = best[1]
    # How eagerly to split touching nuclei, chosen by the competition's own metric.
    split = max((float(np.mean([image_score(lab, split_nuclei(image > threshold, f,
                                                                 config["min_size"]))
                                for image, lab in zip(prepared[: config["max_split_images"]],
                                                      labels, strict=False)])), f)
                for f in track(config["split_fractions"], "Choosing the split"))
    return {"inversion_cut": cut, "threshold": threshold, "train_iou": best[0],
            "split_fraction": split[1], "train_score": split[0]}


def split_nuclei(mask, fraction, min_size):
    """Opening, then markers where the distance to the background exceeds `fraction` of its
    object's largest distance (0: one marker per connected object), then a watershed of the
    distance transform."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    n, objects = cv2.connectedComponents(mask)
    peak = np.zeros(n, np.float32)
    np.maximum.at(peak, objects.ravel(), dist.ravel())
    sure = (dist > fraction * peak[objects]) & (mask > 0)
    _, markers = cv2.connectedComponents(sure.astype(np.uint8))
    markers = markers + 1  # background 1, nuclei 2..
    markers[(mask > 0) & ~sure] = 0  # to be flooded
    relief = cv2.cvtColor(cv2.normalize(-dist, None, 0, 255, cv2.NORM_MINMAX)
                          .astype(np.uint8), cv2.COLOR_GRAY2BGR)
    labels = cv2.watershed(relief, markers.astype(np.int32))
    labels[(labels <= 1) | (mask == 0)] = 0  # background and watershed lines
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < min_size] = 0
    _, labels = np.unique(labels, return_inverse=True)
    return labels.reshape(mask.shape).astype(np.int32)


def em_probability(raw, sigma):
    smooth = cv2.GaussianBlur(raw, (0, 0), sigma) if sigma else raw
    return stretch(smooth, invert=False).astype(np.float32) / 255


def best_em_sigma(train, config):
    slices = range(0, len(train.volume), max(1, len(train.volume) // config["max_fit_slices"]))
    best = (-1.0, 0.0)
    for sigma in track(config["sigmas"], "Choosing the smoothing"):
        scores = []
        for z in slices:
            prob = em_probability(train.volume[z], sigma)
            truth = em_metric.components(train.labels[z] > 0)[0]
            scores.append([em_metric.foreground_restricted_scores(
                truth, em_metric.thin_borders(prob > th)).v_rand for th in (0.3, 0.5, 0.7)])
        best = max(best, (float(np.mean(scores, axis=0).max()), sigma))
    return best[1]


def predict(task, model, inputs, config):
    if wants_probabilities(task):
        return np.stack([em_probability(raw, model["sigma"]) for raw in inputs.volume])
    out = {}
    for image_id, rgb in track(list(zip(inputs.ids, inputs.images, strict=True)),
                               "Predicting images"):
        g = grey(rgb)
        image = stretch(g, g.mean() > model["inversion_cut"])
        out[image_id] = split_nuclei(image > model["threshold"], model["split_fraction"],
                                     config["min_size"])
    return out


def probabilities(task, model, inputs, config):
    """Maps for ensembles: EM the cell probability itself; nuclei the predicted objects as a
    hard foreground and their boundaries (what the U-Nets' two channels mean)."""
    return task.maps_from_predictions(inputs, predict(task, model, inputs, config))
