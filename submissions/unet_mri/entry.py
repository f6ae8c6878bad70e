"""2D U-Net baseline for the MRI task (brain FLAIR abnormality, LGG): slices of each
patient's volume, FLAIR alone or all three channels, optionally 2.5D (neighbouring slices as
channels), trained with Dice + BCE or with Kervadec's boundary loss added. Run it with
`competition run DIR submissions/unet_mri` (variants: `--config
submissions/unet_mri/boundary.yaml`, `--set mri.context=1`, `--set
mri.largest_component=true`).

The network lives in `models.slices`; the task turns slice maps into per-case masks
(threshold, optional largest connected component) and writes the NIfTI submission."""

from competition.progress import track
from models import slices


def fit(task, train, config, on_epoch=None):
    return slices.fit(train.volumes, train.masks, [s[:2] for s in train.spacing], config,
                      on_epoch)


def probabilities(task, model, inputs, config):
    """Maps by slice id (`<case>_<n>`), (H, W, 1) abnormality probability."""
    maps = {}
    for k in track(range(len(inputs.cases)), "Predicting patients"):
        probability = slices.predict(model, inputs.volumes[k])
        for z, slice_id in enumerate(inputs.slice_ids(k)):
            maps[slice_id] = probability[z][..., None]
    return maps


def predict(task, model, inputs, config):
    return task.predictions_from_maps(probabilities(task, model, inputs, config), config)
