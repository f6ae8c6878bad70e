"""Multi-arm U-Net baseline: three encoders see the raw image, its CLAHE-preprocessed version
and that version's adaptive threshold; their features meet at every skip connection."""

from models.segmentation import fit as fit_model
from models.segmentation import predict as predict_model
from models.segmentation import probability_maps
from models.unet import build_multiarm_unet


def fit(task, train, config, on_epoch=None):
    return fit_model(task, train, {**config, "arms": True}, build_multiarm_unet, on_epoch)


def predict(task, model, inputs, config):
    return predict_model(task, model, inputs)


def probabilities(task, model, inputs, config):
    """Probability maps (the raw material of ensembles): nuclei foreground + boundary, EM
    cell probability."""
    return probability_maps(task, model, inputs)
