"""tests/hub/: the class server's tests, run by `make test-hub` only (LENET_HUB_TESTS=1).

`pytest` at the repository root (its testpaths include tests/) and `make test` (tools/run_tests.py
takes tests/test_*.py only) leave this folder out: test_hub.py needs root, creates Unix users and
starts a JupyterHub from what deploy/install.sh installed.
"""

import os

if os.environ.get("LENET_HUB_TESTS") != "1":
    collect_ignore_glob = ["test_*.py"]
