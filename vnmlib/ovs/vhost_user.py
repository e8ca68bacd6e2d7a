"""DPDK vhost-user ports of ``BRIDGE_TYPE=openvswitch_dpdk`` NICs (OpenNebula #7511, #7673).

Such a NIC has no tap. oned's KVM deployment file gives the domain an
``<interface type='vhostuser'>`` whose socket QEMU serves (``mode='server'``)
at ``/var/run/one/vhost-socks/<TARGET>``, and libvirt adds nothing to Open
vSwitch. So vnm adds the port, as the reference does: a ``dpdkvhostuserclient``
interface named as the tap would be, whose ``options:vhost-server-path`` is
that socket, on the NIC's bridge (``datapath_type=netdev``,
:func:`vnmlib.ovs.need.bridge_options`). Open vSwitch is the socket's client:
it connects when QEMU has made the socket and again after QEMU restarts, so
the port can exist before the domain starts (``pre``, which libvirt needs:
it names the domain's interface after the OVS interface using its socket).
``post`` adds it too when it is missing (the reference adds it in both), then
configures it as any VM port; ``clean`` deletes it as any VM port.

The port carries vnm's mark from the transaction that makes it
(:func:`vnmlib.host.port_owner.mark`): vnm made it for that NIC.
"""

import json
import os
import re
import stat

from vnmlib.errors import InputError, VnmError
from vnmlib.host import port_owner
from vnmlib.host.steps import Step
from vnmlib.ovs import tools as ovs

# oned's and the KVM driver's (include/VirtualNetwork.h VHOST_DIR): the domain's socket is there
SOCKET_DIR = "/var/run/one/vhost-socks"
INTERFACE_TYPE = "dpdkvhostuserclient"
DIR_MODE = 0o755  # what the reference's mkdir_p gives it under oneadmin's usual umask 022


def uses_vhost_user(nic):
    return nic.get("BRIDGE_TYPE") == "openvswitch_dpdk"


def socket_dir():
    """The sockets' directory: ``VNM_VHOST_DIR`` (the tests' private one), else oned's."""
    path = os.environ.get("VNM_VHOST_DIR") or SOCKET_DIR
    if not os.path.isabs(path) or not re.fullmatch(r"[A-Za-z0-9_./@+-]+", path):
        raise InputError(f"VNM_VHOST_DIR {path!r} is not an absolute path of plain characters")
    return os.path.normpath(path)


def socket_path(vm, nic):
    """The domain's socket: ``<dir>/<tap name>`` (the name is checked as a link name: no ``/``)."""
    return os.path.join(socket_dir(), vm.tap_name(nic))


def _port_problem(state, need, tap, path):
    """Why the existing port ``tap`` is not the NIC's vhost-user port; None when it is."""
    bridge = state.bridge_of(tap)
    if bridge != need.bridge:
        return f"is a port of Open vSwitch bridge {bridge}, not of {need.bridge}"
    interface = state.interfaces.get(tap) or {}
    kind = interface.get("type") or "system"
    if kind != INTERFACE_TYPE:
        return f"is an Open vSwitch {kind} interface, not {INTERFACE_TYPE}"
    have = (interface.get("options") or {}).get("vhost-server-path")
    if have != path:
        return f"has vhost-server-path {have or '(none)'}, not {path}"
    return None


def plan_ports(state, vm, needs):
    """Steps adding the vhost-user ports the ``openvswitch_dpdk`` needs lack, after the
    sockets' directory; [] when there is no such need. A port of that name that is
    something else: one error, nothing changed."""
    needs = [need for need in needs if uses_vhost_user(need.nic)]
    if not needs:
        return []
    commands, undo, shown = [], [], []
    for need in needs:
        nic = need.nic
        tap, path = vm.tap_name(nic), socket_path(vm, nic)
        if state.bridge_of(tap) is not None:
            problem = _port_problem(state, need, tap, path)
            if problem:
                raise VnmError(f"{nic.label}: {port_owner.target_text(vm, nic, tap)} {problem}: "
                               "refusing to use it as the NIC's vhost-user port")
            continue
        marks = [f"external_ids:{k}={v}" for k, v in port_owner.mark(nic).items()]
        commands += [["--may-exist", "add-port", need.bridge, tap],
                     # quoted: the path is one OVSDB string whatever characters it has
                     ["set", "Interface", tap, f"type={INTERFACE_TYPE}",
                      f"options:vhost-server-path={json.dumps(path)}"],
                     ["set", "Port", tap, *marks]]
        undo.insert(0, ["--if-exists", "del-port", need.bridge, tap])
        shown.append(f"add vhost-user port {tap} ({path}) to {need.bridge}")
    directory = socket_dir()
    planned = [] if os.path.isdir(directory) else [SocketDir(directory)]
    if commands:
        planned.append(ovs.Transaction(commands, "; ".join(shown), undo))
    return planned


class SocketDir(Step):
    """The sockets' directory, made if missing as the reference does (``mkdir_p`` as
    oneadmin): here as root, so it is given the owner of its parent (oneadmin's
    ``/var/run/one``), in which QEMU, running as oneadmin, makes the sockets."""

    def __init__(self, path):
        self.path = path
        self.made = False

    def describe(self):
        return f"make directory {self.path} for vhost-user sockets"

    def undo(self):
        return _RemoveSocketDir(self.path) if self.made else None

    def apply(self, nl):
        from vnmlib.safe_paths import open_fd

        parent, name = os.path.split(self.path)
        try:
            # the parent as root reaches it: through root's links only (/var/run -> /run)
            parent_fd = open_fd(parent, os.O_RDONLY | os.O_DIRECTORY)
        except (OSError, VnmError) as exc:
            raise VnmError(f"vhost-user socket directory {self.path}: its parent cannot be "
                           f"opened ({getattr(exc, 'strerror', None) or exc})") from None
        try:
            self._make(parent_fd, name)
        finally:
            os.close(parent_fd)

    def _make(self, parent_fd, name):
        try:
            os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
        except FileExistsError:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode):
                raise VnmError(f"vhost-user socket directory {self.path} exists and is not a "
                               "directory") from None
            return  # there already: left as it is, as the reference leaves it
        except OSError as exc:
            raise VnmError(f"vhost-user socket directory {self.path}: {exc.strerror}") from None
        # O_NOFOLLOW: what the parent's owner may have swapped in since is not followed
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=parent_fd)
        try:
            owner = os.fstat(parent_fd)
            os.fchown(fd, owner.st_uid, owner.st_gid)
            os.fchmod(fd, DIR_MODE)  # whatever root's umask is
        finally:
            os.close(fd)
        self.made = True


class _RemoveSocketDir(Step):
    """Undo of :class:`SocketDir`: the directory it made, while still empty."""

    def __init__(self, path):
        self.path = path

    def describe(self):
        return f"remove directory {self.path} (undo)"

    def apply(self, nl):
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
