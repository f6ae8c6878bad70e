"""Multi-arm U-Net baseline: three encoders see the raw image, its CLAHE-preprocessed version
and that version's adaptive threshold; their features meet at every skip connection."""

from competition.progress import track
from models import segmentation
from models.unet import build_multiarm_unet


def fit(task, train, config, on_epoch=None):
    items = task.pixel_items(train)
    return segmentation.fit([i.image for i in items], [i.targets for i in items],
                            [i.objects for i in items], {**config, "arms": True},
                            build_multiarm_unet, on_epoch)


def probabilities(task, model, inputs, config):
    """Prediction maps by item (the raw material of ensembles)."""
    items = task.pixel_items(inputs)
    maps = segmentation.probability_maps(model, [i.image for i in items], track)
    return {item.key: m for item, m in zip(items, maps, strict=True)}


def predict(task, model, inputs, config):
    return task.predictions_from_maps(probabilities(task, model, inputs, config), config)
