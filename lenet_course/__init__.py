"""lenet_course: the helper package behind the LeNet course notebooks.

One idea per module, read in this order:

- ``arithmetic``: output sizes, receptive fields, parameter and multiply-add counts.
- ``models``: three equivalent LeNets, the classic variants, and LeNet-5 as published in 1998.
- ``data``: where the data lives, and Fashion-MNIST / MNIST as whole tensors.
- ``train``: a fast, device-resident training loop with history and checkpoints.
- ``predict`` and ``inspect_model``: a trained model on image files; feature maps and mistakes.
- ``paper``: the 1998 paper's schedule and published figures.
- ``plots`` and ``widgets``: pictures and ipywidgets explorers over pure functions.
- ``notebook``: ``record()``, the values a notebook reports for its tests.
- ``cli``: ``python -m lenet_course ...``.

Modules are imported on demand, so ``import lenet_course`` is cheap and does not need torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
