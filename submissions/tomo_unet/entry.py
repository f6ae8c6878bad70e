"""U-Net baseline for the tomography task (matrix, fibre, pore), in the dimensionality its
configuration sets: `dims: 2` (slices, config.yaml), `2.5` (neighbouring slices as channels,
unet25d.yaml) or `3` (blocks, unet3d.yaml). Run it with `competition run DIR
submissions/tomo_unet [--config submissions/tomo_unet/unet3d.yaml]`; the networks, patch
sampling and the block-wise whole-volume prediction (dask, overlapping halos) are in
`models/volumetric.py`.

Training reads the training volume (`train.volume`, `train.labels`: zarr arrays, z y x) into
memory as stored (uint8), at most `max_train_voxels` of it. Test volumes are predicted block by
block; maps (class probabilities per slice, for ensembles and validation pictures) are kept
only for volumes up to `max_map_voxels`, beyond which the labels are computed without them."""

import numpy as np

from models import volumetric


def fit(task, train, config, on_epoch=None):
    return volumetric.fit(train.volume, train.labels, config, len(task.map_channels), on_epoch)


def probabilities(task, model, inputs, config):
    """Class maps by slice id ((H, W, 3) each), or none for volumes over max_map_voxels."""
    if np.prod(inputs.volume.shape) > config["max_map_voxels"]:
        return {}
    import dask

    with dask.config.set(scheduler="threads", num_workers=1):  # Keras uses the cores itself
        probs = volumetric.probabilities(model, inputs.volume).compute()
    model.memo[id(inputs)] = probs.argmax(axis=-1).astype(np.uint8)  # predict() reuses it
    return {key: probs[z] for z, key in enumerate(inputs.ids)}


def predict(task, model, inputs, config):
    """The (z, y, x) uint8 label volume."""
    if id(inputs) in model.memo:
        return model.memo.pop(id(inputs))
    return volumetric.labels(model, inputs.volume)
