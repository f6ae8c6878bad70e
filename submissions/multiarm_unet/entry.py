"""Multi-arm U-Net baseline: three encoders see the raw image, its CLAHE-preprocessed version
and that version's adaptive threshold; their features meet at every skip connection.

The same steps as submissions/unet (per-modality pixels, one nucleus size, flips and
rotations at test time, watershed settings chosen on held-out training images), each a key
of config.yaml."""

from competition.progress import track
from models import segmentation, tuning
from models.unet import build_multiarm_unet


def fit(task, train, config, on_epoch=None):
    train, held = tuning.hold_out(task, train, config.get("tune_images", 0), config["seed"])
    items = task.pixel_items(train, **(config.get("pixels") or {}))
    model = segmentation.fit([i.image for i in items], [i.targets for i in items],
                             [i.objects for i in items], {**config, "arms": True},
                             build_multiarm_unet, on_epoch)
    model.postprocess, model.extra["tuning"] = tuning.choose(
        task, lambda inputs: probabilities(task, model, inputs, config), held, config,
        config.get("tune") or {})
    return model


def probabilities(task, model, inputs, config):
    """Prediction maps by item (the raw material of ensembles)."""
    items = task.pixel_items(inputs, **(config.get("pixels") or {}))
    maps = segmentation.probability_maps(model, [i.image for i in items], track)
    return {item.key: m for item, m in zip(items, maps, strict=True)}


def predictions_from_maps(task, model, maps, config):
    """Instances from maps already predicted, with the watershed settings chosen in fit."""
    return task.predictions_from_maps(maps, {**config, **model.postprocess})


def predict(task, model, inputs, config):
    return predictions_from_maps(task, model, probabilities(task, model, inputs, config),
                                 config)


def save(model, folder):
    """The fitted model as `load` reads it (`competition run` keeps it in runs/.../model/)."""
    segmentation.save_trained(model, folder)


def load(task, folder, config):
    """A model saved by `save`: a code submission carries it as `model/` instead of fitting."""
    return segmentation.load_trained(folder)
