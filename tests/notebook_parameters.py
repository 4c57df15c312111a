"""The short parameters each notebook's test passes to ``run_notebook`` (tests/test_notebook*.py),
read from those files: for scripts that run the notebooks as the tests do (deploy/
measure_capacity.py, binder/measure_memory.py) without a copy that could drift from them."""

import ast
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent


def short() -> dict[str, dict[str, Any]]:
    """{notebook: parameters} from each ``run_notebook("name", ...)`` in tests/test_notebook*.py; a
    value that is not a literal (notebook 06's checkpoint_dir, a temporary path) is None."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(TESTS.glob("test_notebook*.py")):
        tree = ast.parse(path.read_text())
        constants = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name):
                    try:
                        constants[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "run_notebook"):
                continue
            if not (node.args and isinstance(node.args[0], ast.Constant)):
                continue
            parameters: dict[str, Any] = {}
            for keyword in node.keywords:
                if keyword.arg is None:  # **SHORT
                    parameters.update(constants[keyword.value.id])
                    continue
                try:
                    parameters[keyword.arg] = ast.literal_eval(keyword.value)
                except ValueError:
                    parameters[keyword.arg] = None
            found[node.args[0].value] = parameters
    return found
