"""U-Net baseline for the dense tasks (nuclei: foreground + boundary split by a watershed;
EM: cell probability). Run it with `competition run DIR submissions/unet`; copy the folder to
start your own entry.

The task gives the images and targets (`task.pixel_items`) and turns maps into a submission
(`task.predictions_from_maps`): this entry trains and applies the network. Steps that make
it hold on images unlike the training set's, each a key of config.yaml (see
`models.segmentation`):

- `pixels: {view: ...}`: the task's grey image (`grey`, the default: nuclei bright, bright
  backgrounds inverted) or its per-modality one (`stain`: bright-field as optical density,
  stained tissue as its hematoxylin density);
- `diameter_range`: images whose nuclei look smaller or larger than the training set's are
  zoomed into that range for prediction; `canonical_diameter` (with `scale_refine`, `zoom`)
  brings every image, in training too, to one nucleus size;
- `tta`: maps averaged over flips and rotations;
- `tune` on `tune_images` training images held out of training: the watershed's thresholds
  and smallest object, chosen on them by the competition's metric (validation only).
"""

from competition.progress import track
from models import segmentation, tuning
from models.unet import build_unet


def fit(task, train, config, on_epoch=None):
    train, held = tuning.hold_out(task, train, config.get("tune_images", 0), config["seed"])
    items = task.pixel_items(train, **(config.get("pixels") or {}))
    model = segmentation.fit([i.image for i in items], [i.targets for i in items],
                             [i.objects for i in items], {**config, "arms": False}, build_unet,
                             on_epoch)
    model.postprocess, model.extra["tuning"] = tuning.choose(
        task, lambda inputs: probabilities(task, model, inputs, config), held, config,
        config.get("tune") or {})
    return model


def probabilities(task, model, inputs, config):
    """Prediction maps by item (the raw material of ensembles), channels as the task's
    `map_channels`."""
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
