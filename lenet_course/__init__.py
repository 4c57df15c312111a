"""lenet_course: the helper package behind the LeNet course notebooks.

One idea per module; :data:`LAYERS` lists them in the order data flows (the README's table says
what each holds), and a module imports only modules before it.
"""

__version__ = "0.1.0"

LAYERS = tuple(
    "notebook check paper arguments arithmetic data sdlm lenet1998 models counting config "
    "checkpoint distributed graphs run_state train predict inspect_model plots widgets run_folder "
    "cli draw".split()
)

__all__ = ["LAYERS", "__version__"]
