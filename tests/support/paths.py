"""Where the tests find the checkout, the shared fixtures and golden traces, and the
interpreter the action scripts run with."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TREE = os.path.join(REPO, "vnm")
SHARED = os.environ.get("VNM_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
FIXTURES = os.path.join(SHARED, "fixtures", "opennebula")
GOLDEN = os.path.join(SHARED, "golden")
# The interpreter the action scripts run with: the test's own (venv with PyPI
# versions) unless VNM_TEST_PYTHON names another (Debian's /usr/bin/python3).
PYTHON = os.environ.get("VNM_TEST_PYTHON") or sys.executable


def fixture_bytes(name):
    with open(os.path.join(FIXTURES, name), "rb") as handle:
        return handle.read()
