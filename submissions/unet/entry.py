"""U-Net baseline for the dense tasks (nuclei: foreground + boundary split by a watershed;
EM: cell probability). Run it with `competition run DIR submissions/unet`; copy the folder to
start your own entry.

The task gives the images and targets (`task.pixel_items`) and turns maps into a submission
(`task.predictions_from_maps`): this entry only trains and applies the network."""

from competition.progress import track
from models import segmentation
from models.unet import build_unet


def fit(task, train, config, on_epoch=None):
    items = task.pixel_items(train)
    return segmentation.fit([i.image for i in items], [i.targets for i in items],
                            [i.objects for i in items], {**config, "arms": False}, build_unet,
                            on_epoch)


def probabilities(task, model, inputs, config):
    """Prediction maps by item (the raw material of ensembles), channels as the task's
    `map_channels`."""
    items = task.pixel_items(inputs)
    maps = segmentation.probability_maps(model, [i.image for i in items], track)
    return {item.key: m for item, m in zip(items, maps, strict=True)}


def predict(task, model, inputs, config):
    return task.predictions_from_maps(probabilities(task, model, inputs, config), config)
