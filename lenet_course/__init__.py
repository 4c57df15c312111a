"""lenet_course: the helper package behind the LeNet course notebooks.

One idea per module; :data:`LAYERS` lists them in the order data flows, and a module imports only
modules before it (files -> data -> models -> train -> checkpoint -> predict / inspect / plots).
"""

__version__ = "0.2.0"

LAYERS = (
    "notebook",  # record(): values a notebook reports for its tests
    "paper",  # the 1998 paper's published figures and schedule, as plain data
    "arithmetic",  # output sizes, receptive fields, the explorers' pure functions
    "data",  # the data root, Fashion-MNIST / MNIST as tensors, input specs
    "lenet1998",  # LeNet-5 as published in 1998, and its variants
    "models",  # the three equivalent LeNets, build_model, eval_mode, class_scores
    "counting",  # parameters, multiply-adds and connections, by formula and on a model
    "sdlm",  # the paper's optimiser: stochastic diagonal Levenberg-Marquardt
    "config",  # TrainConfig and the named recipes
    "checkpoint",  # History, checkpoints and run folders
    "train",  # fit and evaluate
    "predict",  # image files -> predictions
    "inspect_model",  # feature maps, filters, confusion and mistakes
    "plots",  # figures
    "widgets",  # ipywidgets explorers over the pure functions
    "cli",  # python -m lenet_course ...
)

__all__ = ["LAYERS", "__version__"]
