"""Values a notebook reports for its tests, stored by :func:`record` as :data:`RECORD_MIME` JSON."""

import json
import math
from collections.abc import Mapping
from typing import Any

from IPython import get_ipython
from IPython.display import display

RECORD_MIME = "application/vnd.lenet-course.record+json"


def _plain(value: Any) -> Any:
    """Tensors, numpy scalars and tuples as JSON-ready Python values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity
    return value


def record(**values: Any) -> dict[str, Any]:
    """Display ``values`` and store them in the output for the tests; return them as plain data."""
    plain = {name: _plain(value) for name, value in values.items()}
    json.dumps(plain)  # fails here, in the notebook, if something cannot be stored
    text = "\n".join(f"{name} = {value!r}" for name, value in plain.items())
    display({"text/plain": text, RECORD_MIME: plain}, raw=True)
    return plain


def recorded_values(notebook: Mapping[str, Any]) -> dict[str, Any]:
    """Every value that :func:`record` stored in an executed notebook (a JSON dict)."""
    found: dict[str, Any] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            found.update(output.get("data", {}).get(RECORD_MIME, {}))
    return found


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (where a traceback is not one line)."""
    return type(get_ipython()).__name__ == "ZMQInteractiveShell"
