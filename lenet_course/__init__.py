"""lenet_course: the helper package behind the LeNet course notebooks.

One idea per module; :data:`LAYERS` lists them in the order data flows (the README's table says
what each holds), and a module imports only modules before it.
"""

__version__ = "0.1.0"

LAYERS = (
    "notebook", "check", "paper", "arithmetic", "data", "lenet1998", "models", "counting", "sdlm",
    "config", "checkpoint", "distributed", "graphs", "train", "predict", "inspect_model", "plots",
    "widgets", "cli",
)

__all__ = ["LAYERS", "__version__"]
