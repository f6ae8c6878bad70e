"""Pictures of predictions against truth (pure: arrays in, arrays or GIF bytes out).

Only ever drawn on data whose labels the viewer may see (a training run's held-out validation
item), never on the hidden test split.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from competition.metrics.nuclei import matched_objects

TP, FP, FN = (40, 200, 40), (230, 40, 40), (40, 110, 255)  # green, red, blue


def _gray_rgb(image: np.ndarray) -> np.ndarray:
    gray = image.astype(np.float32)
    if gray.ndim == 3:
        gray = gray.mean(axis=-1)
    low, high = np.percentile(gray, (1, 99))
    gray = np.clip((gray - low) / max(high - low, 1e-6), 0, 1)
    return np.repeat((gray * 255).astype(np.uint8)[..., None], 3, -1)


def _heat(prob: np.ndarray) -> np.ndarray:
    return np.repeat((np.clip(prob, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)


def _outline(mask: np.ndarray, labels: np.ndarray) -> np.ndarray:
    edge = ndimage.grey_dilation(labels, size=3) != ndimage.grey_erosion(labels, size=3)
    return mask & edge


def nuclei_frame(image: np.ndarray, foreground: np.ndarray, pred_labels: np.ndarray,
                 true_labels: np.ndarray) -> np.ndarray:
    """Image | foreground probability | objects at IoU 0.5: matched green, false positives
    red, missed true nuclei outlined blue."""
    hit_t, hit_p = matched_objects(true_labels, pred_labels)
    overlay = _gray_rgb(image) // 2
    overlay[(pred_labels > 0) & hit_p] = TP
    overlay[(pred_labels > 0) & ~hit_p] = FP
    overlay[_outline((true_labels > 0) & ~hit_t, true_labels)] = FN
    return np.concatenate([_gray_rgb(image), _heat(foreground), overlay], axis=1)


def em_frame(image: np.ndarray, cell_probability: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Image | cell probability | membrane pixels at 0.5: found green, false red, missed blue."""
    pred_membrane = cell_probability < 0.5
    true_membrane = truth == 0
    overlay = _gray_rgb(image) // 2
    overlay[pred_membrane & true_membrane] = TP
    overlay[pred_membrane & ~true_membrane] = FP
    overlay[~pred_membrane & true_membrane] = FN
    return np.concatenate([_gray_rgb(image), _heat(cell_probability), overlay], axis=1)


def gif(frames: list[np.ndarray], captions: list[str], max_height: int = 256,
        ms_per_frame: int = 600) -> bytes:
    """An animated GIF of the frames (scaled to `max_height`), each with its caption."""
    images = []
    for frame, caption in zip(frames, captions, strict=True):
        im = Image.fromarray(frame)
        if im.height > max_height:
            im = im.resize((round(im.width * max_height / im.height), max_height),
                           Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(im)
        draw.rectangle((0, 0, 8 + 6 * len(caption), 14), fill=(0, 0, 0))
        draw.text((4, 2), caption, fill=(255, 255, 255))
        images.append(im.convert("P", palette=Image.Palette.ADAPTIVE))
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=ms_per_frame, loop=0)
    return buf.getvalue()


def validation_frame(task: str, maps, image: np.ndarray, truth: np.ndarray,
                     config: dict) -> tuple[np.ndarray, float]:
    """The picture and the task's score of one validation item from its probability maps
    (nuclei: (H, W, C) map and instance labels; EM: (H, W) map and the 0/255 label slice)."""
    from competition.metrics import em as em_metric
    from competition.metrics.nuclei import image_score
    from competition.postprocess import predictions_from_maps

    if task == "nuclei":
        labels = predictions_from_maps(task, {"v": maps}, config)["v"]
        return (nuclei_frame(image, maps[..., 0], labels, truth),
                image_score(truth, labels))
    prob = np.clip(np.asarray(maps, dtype=np.float32), 0, 1)
    v_rand = float(em_metric.score_slice(truth, prob, em_metric.THRESHOLDS)[0].max())
    return em_frame(image, prob, truth), v_rand
