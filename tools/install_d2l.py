"""Install d2l 1.0.3 without its stale pins, and record its real requirements.

d2l 1.0.3 pins ``numpy==1.23.5``, ``pandas==2.0.3``, ``matplotlib==3.7.2`` ... and the ``jupyter``
metapackage: installed with them, it downgrades a modern environment and breaks torch's numpy.
So we install it with ``--no-deps`` (requirements.txt already holds what ``d2l.torch`` really
imports: numpy, pandas, scipy, requests, matplotlib, matplotlib-inline, torch, torchvision) and
then rewrite the ``Requires-Dist`` lines of its installed metadata to those real, unpinned
imports, so that ``pip check`` checks something true instead of reporting stale pins.

Run with the environment's interpreter: ``.venv/bin/python tools/install_d2l.py``.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements-d2l.txt"
#: What ``d2l/torch.py`` imports from outside the standard library (checked against its source).
REAL_REQUIREMENTS = (
    "numpy", "pandas", "scipy", "requests", "matplotlib", "matplotlib-inline", "ipython",
    "torch", "torchvision", "pillow",
)  # fmt: skip


def relax_metadata() -> Path:
    """Replace d2l's pinned Requires-Dist lines by its real imports; return the METADATA path."""
    dist = metadata.distribution("d2l")
    path = Path(dist._path) / "METADATA"  # type: ignore[attr-defined]
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.startswith("Requires-Dist:")]
    header_end = next((i for i, line in enumerate(kept) if not line.strip()), len(kept))
    new = [f"Requires-Dist: {name}" for name in REAL_REQUIREMENTS]
    path.write_text("\n".join(kept[:header_end] + new + kept[header_end:]) + "\n", encoding="utf-8")
    return path


def main() -> int:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
         "--no-deps", "-r", str(REQUIREMENTS)],
        check=True,
    )  # fmt: skip
    path = relax_metadata()
    print(f"d2l {metadata.version('d2l')} installed without its stale pins ({path.name} relaxed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
