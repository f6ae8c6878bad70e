"""Threshold + watershed baseline, OpenCV and SciPy (no learning beyond a few numbers).

Nuclei, per modality (fluorescence, bright-field, stained colour: each its own numbers, since
their images differ most): the task's grey image with nuclei bright (`task.pixel_items`, view
from config.yaml); contrast stretch; a threshold at a learned fraction of the image's own
Otsu threshold (dim and bright images alike); an opening drops specks; the nucleus diameter
is estimated from the image (`models.scale.blob_diameter`), and touching nuclei are split by
a watershed of the distance transform from markers at least a learned fraction of that
diameter apart (0: one marker per connected object); objects smaller than a tenth of a
nucleus are dropped. The Otsu fraction and the marker spacing are chosen per modality on
training images by the competition's metric.
EM: the same idea on membrane intensity: membranes are dark, so the smoothed, stretched
intensity is the cell probability; the smoothing is chosen on training slices by V_rand.

The two pipelines differ by what the task asks for (`task.prediction`): instance labels
(nuclei) or a probability map (EM).
"""

import json
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from competition.metrics import em as em_metric
from competition.metrics.nuclei import image_score
from competition.progress import track
from models.scale import blob_diameter


def stretch(gray, invert=False):
    """8-bit contrast stretch between the 1st and 99th percentiles (EM slices)."""
    low, high = np.percentile(gray, (1, 99))
    out = cv2.convertScaleAbs(gray, alpha=255.0 / max(high - low, 1), beta=-low * 255.0 /
                              max(high - low, 1))
    return 255 - out if invert else out


def contrast(gray):
    """8-bit contrast stretch of a float grey image between its 1st and 99.5th percentiles."""
    low, high = np.percentile(gray, (1, 99.5))
    out = np.clip((np.asarray(gray, np.float32) - low) / max(high - low, 1e-6), 0, 1) * 255
    return out.astype(np.uint8)


def modality(rgb):
    """fluorescence (dark background), brightfield (light, grey) or colour (stained)."""
    rgb = np.asarray(rgb, np.int16)
    if np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean() > 4:
        return "colour"
    return "brightfield" if rgb.mean() > 127 else "fluorescence"


def wants_probabilities(task):
    return task.prediction == "probabilities"


class Prepared:
    """One image, ready for every setting tried: stretched, its Otsu level and its estimated
    nucleus diameter."""

    def __init__(self, gray):
        self.image = contrast(gray)
        self.otsu = float(threshold_otsu(self.image)) if self.image.max() > self.image.min() \
            else 255.0
        self.diameter = blob_diameter(gray)


def segment(prepared, otsu_fraction, spacing, min_size):
    """Instance labels: threshold, opening, distance-transform watershed from markers
    `spacing` diameters apart (0: connected components)."""
    mask = prepared.image > otsu_fraction * prepared.otsu
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel) > 0
    objects, n = ndimage.label(mask)
    if n and spacing > 0:
        distance = ndimage.distance_transform_edt(mask)
        peaks = peak_local_max(ndimage.gaussian_filter(distance, 1),
                               min_distance=max(2, int(spacing * prepared.diameter / 2)),
                               labels=objects, exclude_border=False)
        markers = np.zeros_like(objects)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        objects = watershed(-distance, markers, mask=mask)
    smallest = max(min_size, 0.1 * np.pi * (prepared.diameter / 2) ** 2)
    sizes = np.bincount(objects.ravel())
    small = sizes < smallest
    small[0] = False
    objects[small[objects]] = 0
    _, objects = np.unique(objects, return_inverse=True)
    return objects.reshape(mask.shape).astype(np.int32)


def fit(task, train, config, on_epoch=None):
    if wants_probabilities(task):
        return {"sigma": best_em_sigma(train, config)}
    rng = np.random.default_rng(config["seed"])
    items = task.pixel_items(train, **(config.get("pixels") or {}))
    by_modality = {}
    for k in rng.permutation(len(items)):
        by_modality.setdefault(modality(train.images[k]), []).append(k)
    settings = {}
    for kind, picked in sorted(by_modality.items()):
        picked = picked[: config["max_fit_images"]]
        prepared = [Prepared(items[k].image) for k in track(picked, f"Reading {kind} images")]
        labels = [items[k].objects for k in picked]
        scored = []
        for fraction in track(config["otsu_fractions"], f"Choosing {kind} settings"):
            for spacing in config["marker_spacings"]:
                score = np.mean([image_score(lab, segment(p, fraction, spacing,
                                                          config["min_size"]))
                                 for p, lab in zip(prepared, labels, strict=True)])
                scored.append((float(score), fraction, spacing))
        best = max(scored)
        settings[kind] = {"otsu_fraction": best[1], "marker_spacing": best[2],
                          "train_score": best[0], "images": len(picked)}
    return {"settings": settings}


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
    items = task.pixel_items(inputs, **(config.get("pixels") or {}))
    fallback = max(model["settings"].values(), key=lambda s: s["images"])
    out = {}
    for item, rgb in track(list(zip(items, inputs.images, strict=True)), "Predicting images"):
        chosen = model["settings"].get(modality(rgb), fallback)
        out[item.key] = segment(Prepared(item.image), chosen["otsu_fraction"],
                                chosen["marker_spacing"], config["min_size"])
    return out


def probabilities(task, model, inputs, config):
    """Maps for ensembles: EM the cell probability itself; nuclei the predicted objects as a
    hard foreground and their boundaries (what the U-Nets' two channels mean)."""
    return task.maps_from_predictions(inputs, predict(task, model, inputs, config))


def save(model, folder):
    """The learned numbers as JSON (`competition run` keeps them in runs/.../model/)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(model, indent=1) + "\n")


def load(task, folder, config):
    """What `fit` returned, from `save`'s JSON (a code submission carries it as `model/`)."""
    return json.loads((Path(folder) / "model.json").read_text())
