"""lenet_course: the helper package behind the LeNet course notebooks.

One idea per module, read in this order:

- ``arithmetic``: output sizes, receptive fields, parameter and multiply-add counts.
- ``models``: three equivalent LeNets, the classic variants, and LeNet-5 as published in 1998.
- ``data``: where the data lives, and Fashion-MNIST / MNIST as whole tensors.
- ``train``: a fast, device-resident training loop with history and checkpoints.
- ``plots`` and ``widgets``: pictures and ipywidgets explorers over pure functions.
- ``cli``: ``python -m lenet_course ...``.

Modules are imported on demand, so ``import lenet_course`` is cheap and does not need torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
