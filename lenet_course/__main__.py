"""``python -m lenet_course``: see :mod:`lenet_course.cli`."""

from lenet_course.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
