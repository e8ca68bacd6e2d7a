import os
import sys

import pytest

# tests/ for the support package, the checkout for the vnmlib under test
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from support.namespaces import Namespace  # noqa: E402
from support.paths import FIXTURES  # noqa: E402


def pytest_configure(config):
    # The fixtures are the reference's input format: without them the suite
    # would silently test less. Fail, never skip.
    if not os.path.isdir(FIXTURES):
        raise pytest.UsageError(f"{FIXTURES} not found: clone with ../shared beside the repo "
                                "or set VNM_SHARED")


def pytest_collection_modifyitems(config, items):
    """full_kernel tests run only where the kernel has what they need (Debian's kernel).

    test.sh boots it under QEMU (tools/qemu/run.sh) with VNM_FULL_KERNEL=1; on
    the host they are deselected (not skipped), and in there everything else is.
    """
    full = os.environ.get("VNM_FULL_KERNEL") == "1"
    keep, drop = [], []
    for item in items:
        wants_full = item.get_closest_marker("full_kernel") is not None
        (keep if wants_full == full else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def run_dir(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    return str(path)


@pytest.fixture
def ns(run_dir):
    if os.geteuid() != 0:
        pytest.fail("functional tests need root (network namespaces)")
    namespace = Namespace(run_dir)
    yield namespace
    namespace.delete()


def pytest_terminal_summary(terminalreporter):
    """The figures tests recorded (record_property: libvirt boot and migration times,
    packets lost during a live migration), so every run reports them."""
    for report in terminalreporter.stats.get("passed", []):
        if report.when == "call" and report.user_properties:
            figures = ", ".join(f"{name}={value}" for name, value in report.user_properties)
            terminalreporter.write_line(f"{report.nodeid}: {figures}")


def pytest_sessionfinish(session, exitstatus):
    """In CI a skipped test is a defect: it hides a missing dependency."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        session.exitstatus = 1
        reporter.write_line(f"CI: {len(skipped)} skipped test(s) count as failures", red=True)
