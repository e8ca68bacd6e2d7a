"""vnm's Debian packages built from a copy of the checkout, a stand-in for OpenNebula's
package, and a throwaway Debian 12 root to install them in — never this machine's own
system.

The root is unpacked from a tarball that mmdebstrap makes once from the Debian mirror
this machine's apt uses, with what the packages depend on already installed (so
``dpkg -i`` needs no network), cached in ``.cache/debian-root/``. A command runs in
the root through chroot, with /proc and /sys mounted inside a private mount
namespace that ends with the command: no mount outlives it.
"""

import glob
import hashlib
import os
import re
import shutil
import subprocess

from support.paths import REPO

SUITE = "bookworm"
# The packages' dependencies (debian/control) and useradd for the stand-in's oneadmin
ROOT_PACKAGES = ("python3", "python3-pyroute2", "python3-click", "python3-yaml",
                 "iptables", "ipset", "iproute2", "nftables", "sudo", "passwd")
MMDEBSTRAP_OPTIONS = ("--variant=apt", "--format=tar",
                      # the mirror may be a dated snapshot whose Release files have expired
                      "--aptopt=Acquire::Check-Valid-Until \"false\"")
CACHE = os.path.join(REPO, ".cache", "debian-root")
# What the build and the root's commands see instead of the test's environment (a venv's
# python3 first on PATH would build against the wrong interpreter)
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}


def _run(argv, timeout, **kwargs):
    done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, **kwargs)
    if done.returncode != 0:
        raise AssertionError(f"{argv[:4]}… failed ({done.returncode}):\n"
                             f"{done.stdout.decode()[-3000:]}\n{done.stderr.decode()[-3000:]}")
    return done.stdout.decode()


# -- building ------------------------------------------------------------------------------

def copy_checkout(target):
    """The checkout's files (tracked, and new ones git does not ignore) copied to ``target``:
    the build never writes into the repository."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in names)):
        source = os.path.join(REPO, name)
        if not os.path.lexists(source):  # deleted in the work tree, not yet in the index
            continue
        os.makedirs(os.path.join(target, os.path.dirname(name)), exist_ok=True)
        shutil.copy2(source, os.path.join(target, name), follow_symlinks=False)
    return target


def changelog_version():
    """The version debian/changelog gives the packages."""
    with open(os.path.join(REPO, "debian", "changelog"), encoding="utf-8") as handle:
        return re.match(r"vnm \(([^)]+)\)", handle.readline()).group(1)


def set_version(source, version):
    """A changelog entry for ``version`` on top of ``source``'s debian/changelog (a rebuild)."""
    path = os.path.join(source, "debian", "changelog")
    with open(path, encoding="utf-8") as handle:
        old = handle.read()
    trailer = re.search(r"^ -- .*$", old, re.M).group(0)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"vnm ({version}) {SUITE}; urgency=medium\n\n  * Rebuild.\n\n{trailer}\n\n{old}")


def build_packages(source):
    """``dpkg-source -b`` and ``dpkg-buildpackage -b -us -uc`` in ``source``; the .dsc, the
    .changes and {package: .deb path}, all in ``source``'s parent."""
    out = os.path.dirname(source)
    env = dict(CLEAN_ENV, HOME=out)
    _run(["dpkg-source", "-b", os.path.basename(source)], 120, cwd=out, env=env)
    _run(["dpkg-buildpackage", "-b", "-us", "-uc"], 300, cwd=source, env=env)
    debs = {os.path.basename(p).split("_")[0]: p for p in glob.glob(os.path.join(out, "*.deb"))}
    return glob.glob(os.path.join(out, "*.dsc"))[0], glob.glob(os.path.join(out, "*.changes"))[0], debs


def start_lintian(*paths):
    """lintian over the given .dsc/.changes, started in the background (it takes a while):
    call ``.communicate()`` for its output; its exit code is non-zero on an error or
    warning that no override in debian/ justifies."""
    return subprocess.Popen(["lintian", "--fail-on", "error,warning", *paths],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=CLEAN_ENV)


def fake_package(workdir, name, version, files, conffiles=(), postinst=None):
    """A .deb named ``name`` holding ``files`` ({path without leading /: bytes}, executable)."""
    tree = os.path.join(workdir, f"{name}-{version}")
    control = os.path.join(tree, "DEBIAN")
    os.makedirs(control)
    for path, data in files.items():
        os.makedirs(os.path.join(tree, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(tree, path), "wb") as handle:
            handle.write(data)
        os.chmod(os.path.join(tree, path), 0o755)
    with open(os.path.join(control, "control"), "w", encoding="utf-8") as handle:
        handle.write(f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
                     "Maintainer: vnm tests <tests@invalid>\n"
                     f"Description: stand-in for the {name} package in vnm's packaging test\n")
    if conffiles:
        with open(os.path.join(control, "conffiles"), "w", encoding="utf-8") as handle:
            handle.write("".join(f"/{path}\n" for path in conffiles))
    if postinst:
        with open(os.path.join(control, "postinst"), "w", encoding="utf-8") as handle:
            handle.write(postinst)
        os.chmod(os.path.join(control, "postinst"), 0o755)
    deb = os.path.join(workdir, f"{name}_{version}_all.deb")
    _run(["dpkg-deb", "--root-owner-group", "--build", tree, deb], 60)
    return deb


# -- the throwaway root --------------------------------------------------------------------

def debian_sources():
    """This machine's apt sources for SUITE: (deb822 stanzas, one-line entries), as text."""
    stanzas, lines = [], []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path, encoding="utf-8") as handle:
            for stanza in re.split(r"\n\s*\n", handle.read()):
                body = "\n".join(l for l in stanza.splitlines() if not l.startswith("#"))
                suites = re.search(r"^Suites:(.*)$", body, re.M | re.I)
                enabled = re.search(r"^Enabled:\s*no\s*$", body, re.M | re.I)
                if suites and not enabled and re.search(rf"\b{SUITE}\b", suites.group(1)):
                    stanzas.append(body.strip() + "\n")
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                lines += [l.strip() + "\n" for l in handle
                          if l.startswith("deb ") and re.search(rf"\s{SUITE}(\s|-)", l)]
    return "\n".join(stanzas), "".join(lines)


def root_tarball():
    """The cached tarball of the Debian 12 root; made with mmdebstrap when missing.

    Its name carries a hash of the sources and the package list, so a change of
    either makes a new one (and the old one is removed)."""
    stanzas, lines = debian_sources()
    if not stanzas and not lines:
        raise AssertionError(f"no apt source for {SUITE} in /etc/apt/sources.list*")
    key = hashlib.sha256(repr((stanzas, lines, ROOT_PACKAGES, MMDEBSTRAP_OPTIONS))
                         .encode()).hexdigest()[:16]
    tarball = os.path.join(CACHE, f"{SUITE}-{key}.tar")
    if os.path.exists(tarball):
        return tarball
    os.makedirs(CACHE, exist_ok=True)
    mirrors = []
    for suffix, text in ((".sources", stanzas), (".list", lines)):
        if text:
            mirrors.append(os.path.join(CACHE, f"mirror{suffix}"))
            with open(mirrors[-1], "w", encoding="utf-8") as handle:
                handle.write(text)
    partial = tarball + ".partial"
    _run(["mmdebstrap", "--quiet", *MMDEBSTRAP_OPTIONS, "--include=" + ",".join(ROOT_PACKAGES),
          SUITE, partial, *mirrors], 900, env=CLEAN_ENV)
    for old in glob.glob(os.path.join(CACHE, f"{SUITE}-*.tar")):
        os.unlink(old)
    os.replace(partial, tarball)
    for mirror in mirrors:
        os.unlink(mirror)
    return tarball


class DebianRoot:
    """A Debian 12 root unpacked under ``path``; removed by :meth:`delete`."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path)
        _run(["tar", "-C", path, "--numeric-owner", "-xpf", root_tarball()], 300)

    def run(self, *argv, netns=None, user=None, input=None, check=True, timeout=300):
        """``argv`` in the root (as ``user``, in network namespace ``netns``); the result."""
        # the root bound onto itself is a mount point, as / is for programs that remount
        # it (ip netns exec makes / a slave mount)
        mount = ('mount --bind "$0" "$0" && mount -t proc proc "$0/proc" && '
                 'mount -t sysfs sysfs "$0/sys" && exec chroot "$@"')
        chroot = ([f"--userspec={user}:{user}"] if user else []) + [self.path, *argv]
        command = ["unshare", "--mount", "--propagation", "private",
                   "sh", "-c", mount, self.path, *chroot]
        if netns:
            command = ["ip", "netns", "exec", netns, *command]
        env = dict(CLEAN_ENV, HOME="/root" if user is None else "/", DEBIAN_FRONTEND="noninteractive")
        done = subprocess.run(command, input=input, capture_output=True, env=env,
                              timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} in the root failed ({done.returncode}):\n"
                                 f"{done.stdout.decode()}\n{done.stderr.decode()}")
        return done

    def file(self, path):
        """The host's path of ``path`` inside the root."""
        return os.path.join(self.path, path.lstrip("/"))

    def read(self, path):
        with open(self.file(path), "rb") as handle:
            return handle.read()

    def files(self, skip=("proc", "sys", "dev", "run", "tmp", "var/lib/dpkg", "var/lib/apt",
                          "var/cache", "var/log")):
        """Every path in the root (runtime state and package bookkeeping under ``skip`` aside)."""
        found = set()
        for top, dirs, names in os.walk(self.path):
            relative = os.path.relpath(top, self.path)
            dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(relative, d)) not in skip]
            found.update(os.path.normpath(os.path.join(relative, n)) for n in dirs + names)
        return found

    def delete(self):
        # the mounts lived in namespaces that ended with each command; never remove
        # through one that somehow remained
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            mounted = [line.split()[4] for line in handle]
        inside = [m for m in mounted if m == self.path or m.startswith(self.path + "/")]
        if inside:
            raise AssertionError(f"mounts left in the root, not removed: {inside}")
        shutil.rmtree(self.path)
