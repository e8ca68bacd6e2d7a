"""vnm's Debian packages (debian/), built from a copy of the checkout and installed into a
throwaway Debian 12 root over a stand-in for OpenNebula's own package: lintian, the
diverted reference files, the sudoers drop-in, an upgrade that keeps an admin's edit, a
VM's lifecycle run by the installed files, and a purge that gives OpenNebula its files
back and leaves nothing of vnm behind."""

import json
import os
import shutil
import time

import pytest

from support.debian_root import (DebianRoot, build_packages, changelog_version, copy_checkout,
                                 fake_package, set_version, start_lintian)
from support.namespaces import Namespace
from support.paths import fixture_bytes

VERSION = changelog_version()
UPGRADE = VERSION + "+rebuild1"  # a rebuild, higher than VERSION
REMOTES = "/var/lib/one/remotes"
DRIVERS = ("bridge", "fw", "802.1Q", "vxlan", "ovswitch", "ovswitch_vxlan", "elastic", "nodeport",
           "dummy")
ACTIONS = ("pre", "post", "clean", "update_sg", "update_nic", "vnet_create", "vnet_delete")
CONF = "var/lib/one/remotes/etc/vnm/OpenNebulaNetwork.conf"
# The stand-in opennebula package: the reference's driver scripts and conf file at the
# paths vnm-frontend takes over, and files of the reference vnm does not replace
REPLACED = {f"var/lib/one/remotes/vnm/{d}/{a}": f"#!/usr/bin/env ruby\n# OpenNebula {d}/{a}\n"
            .encode() for d in DRIVERS for a in ACTIONS}
REPLACED[CONF] = b"# OpenNebula's OpenNebulaNetwork.conf\n:validate_vlan_id: false\n"
UNTOUCHED = {"var/lib/one/remotes/vnm/vnmmad.rb": b"# OpenNebula's loader\n",
             "var/lib/one/remotes/vnm/nodeport/nodeport.rb": b"# OpenNebula's NodePortDriver\n"}
OPENNEBULA_POSTINST = """#!/bin/sh
set -e
getent passwd oneadmin > /dev/null || useradd --system --user-group --home-dir /var/lib/one oneadmin
# as OpenNebula's package: the remotes tree is oneadmin's (vnm's maintainer scripts must
# not act as root in it)
chown -R oneadmin:oneadmin /var/lib/one
"""
# An admin's hook: kept through install and purge, run by the installed post
HOOK = "var/lib/one/remotes/vnm/bridge/post.d/10-admin"
HOOK_BYTES = b'#!/bin/sh\necho "$@" > /tmp/post-hook-ran\n'
VM7 = fixture_bytes("vm7_vnm_reduced.b64")  # its bridge NIC: br0 with PHYDEV uplink0, tap one-7-0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Both versions built (each in its own copy of the checkout), lintian started on the
    first, and the stand-in opennebula package."""
    work = tmp_path_factory.mktemp("debian")
    started = time.monotonic()
    releases = {}
    for version in (VERSION, UPGRADE):
        source = copy_checkout(str(work / version / "vnm"))
        if version != VERSION:
            set_version(source, version)
        releases[version] = build_packages(source)
    dsc, changes, _ = releases[VERSION]
    lintian = start_lintian(dsc, changes)
    opennebula = fake_package(str(work), "opennebula", "7.4.0-1", {**REPLACED, **UNTOUCHED},
                              conffiles=[CONF], postinst=OPENNEBULA_POSTINST)
    yield {"debs": {v: r[2] for v, r in releases.items()}, "lintian": lintian,
           "opennebula": opennebula, "build_seconds": round(time.monotonic() - started, 1)}
    if lintian.poll() is None:
        lintian.kill()
        lintian.wait()


@pytest.fixture
def root(tmp_path):
    started = time.monotonic()
    debian = DebianRoot(str(tmp_path / "root"))
    debian.made_in = round(time.monotonic() - started, 1)
    yield debian
    debian.delete()


def copy_in(root, *debs):
    """The .debs into the root's /tmp; their paths there."""
    inside = []
    for deb in debs:
        shutil.copy(deb, root.file("/tmp"))
        inside.append("/tmp/" + os.path.basename(deb))
    return inside


def diversions(root):
    """{path: diverted-to} of vnm-frontend's diversions."""
    out = root.run("dpkg-divert", "--list").stdout.decode()
    found = {}
    for line in out.splitlines():
        words = line.split()
        if words[-1] == "vnm-frontend":
            found[words[2]] = words[4]
    return found


def lifecycle(root, ns):
    """pre, the hypervisor's tap, post, clean, with the installed bridge scripts run as
    oneadmin in the test's network namespace: the privileged part through sudo and
    /usr/sbin/vnm-action, all of it on the root's python3 and packages."""
    def action(name, *args):
        done = root.run(f"{REMOTES}/vnm/bridge/{name}", *args, netns=ns.name, user="oneadmin",
                        input=VM7, check=False)
        assert done.returncode == 0, done.stderr.decode()
        return done

    assert "INFO: pre: create bridge br0" in action("pre").stderr.decode()
    links = ns.links()
    assert links["br0"]["kind"] == "bridge" and links["br0"]["up"]
    assert links["uplink0"]["master"] == "br0"
    ns.add_tap("one-7-0", "br0")
    action("post", "one-7", "node1")
    assert root.read("/tmp/post-hook-ran") == b"one-7 node1\n"
    ns.ip("link", "del", "one-7-0")  # libvirt removes the tap before clean
    action("clean", "node1")
    links = ns.links()
    assert "br0" not in links and links["uplink0"]["master"] is None


def test_install_upgrade_lifecycle_and_purge(built, root, tmp_path, record_property):
    started = time.monotonic()
    record_property("build_s", built["build_seconds"])
    record_property("root_s", root.made_in)
    root.run("dpkg", "-i", *copy_in(root, built["opennebula"]))
    os.makedirs(os.path.dirname(root.file(HOOK)))
    with open(root.file(HOOK), "wb") as handle:
        handle.write(HOOK_BYTES)
    os.chmod(root.file(HOOK), 0o755)
    before = root.files()

    root.run("dpkg", "-i", *copy_in(root, *built["debs"][VERSION].values()), input=b"")
    # OpenNebula's scripts and conf file stepped aside, untouched; vnm's are in their place
    diverted = diversions(root)
    for path, data in REPLACED.items():
        assert diverted["/" + path] == f"/{path}.opennebula"
        assert root.read(f"/{path}.opennebula") == data
    for path, data in UNTOUCHED.items():
        assert root.read("/" + path) == data
    assert os.readlink(root.file(f"{REMOTES}/vnm/bridge/pre")) == "../run-action"
    assert os.readlink(root.file(f"{REMOTES}/vnm/ovn/vnet_create")) == "../run-action"
    assert root.read(HOOK) == HOOK_BYTES
    # the package is what `vnm install` lays out: installing again would change nothing
    rows = json.loads(root.run("vnm", "install", "--dry-run", "--json", "--remotes", REMOTES)
                      .stdout)
    assert [r for r in rows if r["change"] != "keep"] == []
    # the root helper and its sudoers drop-in
    sudoers = os.stat(root.file("/etc/sudoers.d/vnm"))
    assert (sudoers.st_mode & 0o777, sudoers.st_uid, sudoers.st_gid) == (0o440, 0, 0)
    root.run("visudo", "-cf", "/etc/sudoers.d/vnm")
    assert os.stat(root.file("/usr/sbin/vnm-action")).st_uid == 0
    with open(root.file("/usr/lib/tmpfiles.d/vnm-node.conf"), encoding="utf-8") as handle:
        assert "d /run/vnm 0755 root root" in handle.read()

    ns = Namespace(str(tmp_path))
    try:
        done = root.run("vnm", "doctor", "--json", "--tree", f"{REMOTES}/vnm", netns=ns.name,
                        check=False)
        checks = {row["check"]: row["status"] for row in json.loads(done.stdout or b"[]")}
        # what the packages depend on is all there (a kernel without 8021q only warns)
        assert done.returncode == 0 and "FAIL" not in checks.values(), (checks, done.stderr)
        assert checks["OpenNebulaNetwork.conf"] == "ok", checks

        # an admin edits the conf file; the rebuilt higher version keeps it, without a question
        edited = root.read("/" + CONF) + b"# edited by the admin\n"
        with open(root.file("/" + CONF), "wb") as handle:
            handle.write(edited)
        root.run("dpkg", "-i", *copy_in(root, *built["debs"][UPGRADE].values()), input=b"")
        versions = root.run("dpkg-query", "-W", "-f", "${Version} ", "python3-vnm", "vnm-node",
                            "vnm-frontend").stdout.decode().split()
        assert versions == [UPGRADE] * 3
        assert root.read("/" + CONF) == edited
        assert not os.path.exists(root.file(f"/{CONF}.dpkg-dist"))
        assert diversions(root) == diverted

        lifecycle(root, ns)
    finally:
        ns.delete()

    root.run("apt-get", "purge", "-y", "python3-vnm", "vnm-node", "vnm-frontend")
    for path, data in REPLACED.items():
        assert root.read("/" + path) == data, path
    assert diversions(root) == {}
    # nothing of vnm left (the admin's hook is still there), nothing of OpenNebula's gone
    after = root.files()
    assert (sorted(after - before), sorted(before - after)) == ([], [])
    assert root.read(HOOK) == HOOK_BYTES
    record_property("install_to_purge_s", round(time.monotonic() - started, 1))


def test_lintian_finds_nothing_unjustified(built):
    # started by the fixture, it ran while the packages were tried
    output, _ = built["lintian"].communicate(timeout=300)
    assert built["lintian"].returncode == 0, output
