"""Pictures of predictions against truth (pure: arrays in, arrays or GIF bytes out).

Only ever drawn on data whose labels the viewer may see (a training run's held-out validation
item), never on the hidden test split. Tasks compose their frames from these pieces.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

TP, FP, FN = (40, 200, 40), (230, 40, 40), (40, 110, 255)  # green, red, blue


def gray_rgb(image: np.ndarray) -> np.ndarray:
    """Any image as a contrast-stretched grey RGB picture (uint8)."""
    gray = image.astype(np.float32)
    if gray.ndim == 3:
        gray = gray.mean(axis=-1)
    low, high = np.percentile(gray, (1, 99))
    gray = np.clip((gray - low) / max(high - low, 1e-6), 0, 1)
    return np.repeat((gray * 255).astype(np.uint8)[..., None], 3, -1)


def heat(probability: np.ndarray) -> np.ndarray:
    """A probability map in [0, 1] as grey RGB (uint8)."""
    return np.repeat((np.clip(probability, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)


def outline(mask: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The pixels of `mask` on an object's border."""
    edge = ndimage.grey_dilation(labels, size=3) != ndimage.grey_erosion(labels, size=3)
    border: np.ndarray = mask & edge
    return border


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
