"""U-Net baseline for the nuclei (foreground + boundary, watershed) and EM (cell probability)
competitions. Run it with `competition run DIR submissions/unet`; copy the folder to start
your own entry."""

from models.segmentation import fit as fit_model
from models.segmentation import predict as predict_model
from models.segmentation import probability_maps
from models.unet import build_unet


def fit(task, train, config, on_epoch=None):
    return fit_model(task, train, {**config, "arms": False}, build_unet, on_epoch)


def predict(task, model, inputs, config):
    return predict_model(task, model, inputs)


def probabilities(task, model, inputs, config):
    """Probability maps (the raw material of ensembles): nuclei foreground + boundary, EM
    cell probability."""
    return probability_maps(task, model, inputs)
