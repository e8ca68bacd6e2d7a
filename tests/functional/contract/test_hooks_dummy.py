"""Hooks of <action>.d and the dummy driver, through the real scripts."""

import os
from pathlib import Path

import pytest

from support.assertions import assert_ok, assert_one_error
from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import fixture_bytes
from support.remotes import copy_tree


@pytest.fixture
def tree(tmp_path):
    """A private copy of the remotes tree, so hooks never land in the checkout."""
    return Path(copy_tree(tmp_path / "one"))


def hook(directory, name, body, mode=0o755):
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    os.chmod(path, mode)


def test_hooks_order_argv_stdin_and_skips(ns, tree, tmp_path):
    log = tmp_path / "log"
    d = tree / "bridge" / "post.d"
    for name in ("b", "B", "10_x", "2_y"):
        hook(d, name, f'echo "{name} $# [$1] [$2]" >> {log}; cat > {tmp_path}/stdin-{name}\n')
    hook(d, "noexec", f"echo noexec >> {log}\n", mode=0o644)
    hook(d, ".hidden", f"echo hidden >> {log}\n")
    stdin = fixture_bytes("vm7_vnm_reduced.b64")
    assert_ok(ns.run("bridge", "pre", stdin=stdin, tree=str(tree)))
    assert_ok(ns.run("bridge", "post", "one-7", "node one", stdin=stdin, tree=str(tree)))
    # byte order, argv as a list (a blank inside an argument survives), no re-split
    assert log.read_text().splitlines() == [f"{n} 2 [one-7] [node one]" for n in ("10_x", "2_y", "B", "b")]
    for name in ("b", "B", "10_x", "2_y"):
        assert (tmp_path / f"stdin-{name}").read_bytes() == stdin


def test_first_failing_hook_fails_the_action_with_its_stderr(ns, tree, tmp_path):
    log = tmp_path / "log"
    d = tree / "bridge" / "pre.d"
    hook(d, "01_log", f"echo 01 >> {log}\n")
    hook(d, "02_noexec", f"echo 02 >> {log}\n", mode=0o644)
    hook(d, "03_fail", "echo 'disk on fire' >&2; exit 3\n")
    hook(d, "04_after", f"echo 04 >> {log}\n")
    done = ns.run("bridge", "pre", stdin=fixture_bytes("vm7_vnm_reduced.b64"), tree=str(tree))
    assert_one_error(done, "03_fail", "exit code 3")
    assert "disk on fire" in done.stderr.decode()
    assert log.read_text() == "01\n"


def test_dummy_runs_hooks_past_non_executables(ns, tree, tmp_path):
    """Reference §2.1 stopped at the first non-executable; SPEC decision 8 does not."""
    d = tree / "dummy" / "pre.d"
    hook(d, "01_out", "echo attr=1\n")
    hook(d, "02_noexec", "exit 0\n", mode=0o644)
    hook(d, "03_fail", "exit 3\n")
    stdin = fixture_bytes("vm7_vnm_reduced.b64")
    done = ns.run("dummy", "pre", stdin=stdin, tree=str(tree))
    assert done.returncode == 1
    assert done.stdout == b"attr=1\n"  # dummy hooks' stdout goes to oned as is
    os.unlink(d / "03_fail")
    assert_ok(ns.run("dummy", "pre", stdin=stdin, tree=str(tree)))


@pytest.mark.parametrize("action, args", [("pre", []), ("post", ["one-7", "h"]), ("clean", ["h"]),
                                          ("update_sg", ["one-7"]), ("update_nic", ["one-7", "1"]),
                                          ("vnet_create", ["7"]), ("vnet_delete", ["7"])])
def test_dummy_actions_change_nothing(ns, action, args):
    before = ns.links()
    done = assert_ok(ns.run("dummy", action, *args, stdin=fixture_bytes("vm7_vnm_reduced.b64")))
    assert done.stderr == b"" and done.stdout == b""
    assert ns.links() == before


def test_missing_required_argument(ns):
    assert_one_error(ns.run("bridge", "update_nic", "one-7", stdin=b64(vm_xml(1, [bridge_nic(1, 0, "b")]))),
                     "usage: update_nic")
