"""``python -m lenet_course``: see :mod:`lenet_course.cli`."""

import sys

try:  # importing torch takes seconds: a Ctrl-C then is one line too, as everywhere after
    from lenet_course.cli import main
except KeyboardInterrupt:
    print("interrupted while starting; nothing was done", file=sys.stderr)
    raise SystemExit(130) from None

if __name__ == "__main__":
    raise SystemExit(main())
