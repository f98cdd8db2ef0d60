"""Seeing inside the models: filters, feature maps, Grad-CAM, activation maximisation,
adversarial examples, embeddings and a per-run HTML report.

Every tool takes a model from :func:`load_for_viz`: a run directory, a ``.keras`` classifier
trained by this toolkit, or a registry name; the model takes raw 0-255 RGB images of a fixed size.
"""

from transfer.viz.activations import feature_maps, plot_activations
from transfer.viz.adversarial import adversarial_example, fgsm, robustness
from transfer.viz.common import VizModel, load_for_viz
from transfer.viz.embed import build_index, load_index, similar
from transfer.viz.filters import conv_filters, plot_filters
from transfer.viz.gradcam import grad_cam, plot_gradcam
from transfer.viz.maximize import deep_dream, maximize
from transfer.viz.report import write_report
from transfer.viz.taps import tap_model

__all__ = [
    "VizModel",
    "adversarial_example",
    "build_index",
    "conv_filters",
    "deep_dream",
    "feature_maps",
    "fgsm",
    "grad_cam",
    "load_for_viz",
    "load_index",
    "maximize",
    "plot_activations",
    "plot_filters",
    "plot_gradcam",
    "robustness",
    "similar",
    "tap_model",
    "write_report",
]
