"""A running domain's interfaces: through ``virsh`` (QoS), or libvirt's live status file (taps).

``virsh`` runs as the action's caller (oneadmin, in the libvirt group, as the
reference runs it), never through root's sudo helper: libvirt decides what
oneadmin may do to its domains. The connection is the conf's ``:libvirt_uri:``
(:func:`vnmlib.model.qos.parse_uri`); argv lists, every run bounded.

The privileged parts of post, clean, update_sg and update_nic learn the taps
without a process (:func:`live_taps`): libvirt keeps each running domain's
live XML in ``<run dir>/qemu/<domain>.xml``, root's only (0.1 ms to read and
parse, against ~18 ms for a ``virsh domiflist``; bench/bench_libvirt_qos.py).
"""

import os
import re
import stat

from vnmlib.errors import InputError, VnmError, shown
from vnmlib.host import process
from vnmlib.model.naming import check_ifname
from vnmlib.model.qos import DEFAULT_URI, domain_name, parse_uri

# libvirt's run directory for qemu:///system; a socket= URI's is the socket's directory
SYSTEM_RUN_DIR = "/run/libvirt"
MAX_STATUS_BYTES = 4 * 1024 * 1024  # a domain's status XML is tens of kB
# the actions that act on existing taps (pre runs before the domain has them)
LIVE_TAP_ACTIONS = ("post", "clean", "update_sg", "update_nic")

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def connection(conf):
    """The checked URI of ``:libvirt_uri:``.

    For a root caller a ``socket=`` path must be a socket root owns, in a
    directory only root may change: a symlink or a socket another user made
    would hand root's virsh to that user's server.
    """
    uri, socket_path = parse_uri(conf.get("libvirt_uri", DEFAULT_URI))
    if socket_path and os.geteuid() == 0:
        what = f":libvirt_uri: socket {socket_path}"
        try:
            info = os.lstat(socket_path)
            parent = os.stat(os.path.dirname(socket_path))
        except OSError as exc:
            raise InputError(f"{what}: {exc.strerror}") from None
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != 0:
            raise InputError(f"{what} is not a socket owned by root")
        if parent.st_uid != 0 or parent.st_mode & 0o022:
            raise InputError(f"{what} is in a directory another user may change")
    return uri


def _virsh(uri, *args):
    return process.run([process.which("virsh"), "-q", "-c", uri, *args])


def interfaces(uri, domain):
    """``{mac: interface name or ""}`` of the running ``domain``; None when libvirt has no such domain."""
    done = _virsh(uri, "domiflist", "--domain", domain)
    if not done.ok:
        if "failed to get domain" in done.stderr or "Domain not found" in done.stderr:
            return None
        done.check(f"domain {domain}")
    return parse_domiflist(done.stdout)


def parse_domiflist(text):
    """``virsh domiflist`` rows (Interface Type Source Model MAC) -> ``{mac: name}``.

    libvirt shows ``-`` for an interface without a host-side name.
    """
    found = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and _MAC.fullmatch(words[-1].lower()):
            found[words[-1].lower()] = "" if words[0] == "-" else words[0]
    return found


def libvirt_tap(nic, names):
    """The host-side name of ``nic`` in a domain whose interfaces are ``names`` (by MAC,
    else its TARGET when the domain has one so called); None when neither finds it."""
    mac = nic.mac_attr()
    name = names.get(mac) if mac else None
    if name:
        return check_ifname(name, f"{nic.label}: the domain's interface for MAC {mac}")
    target = nic.get("TARGET")
    return target if target and target in names.values() else None


def tune(uri, domain, interface, limits):
    """Set the live bandwidth of ``interface`` (0,0,0: no limit in that direction)."""
    argv = ["domiftune", "--domain", domain, "--interface", interface, "--live"]
    for direction in ("inbound", "outbound"):
        argv += [f"--{direction}", ",".join(str(value) for value in limits[direction])]
    done = _virsh(uri, *argv)
    if not done.ok:
        raise VnmError(f"setting the bandwidth of {interface} in {domain}: virsh domiftune "
                       f"failed: {done.error_line()}")


def status_path(conf, deploy_id):
    """Where libvirt keeps the live XML of domain ``deploy_id``; None for qemu:///session
    (the user's own daemon, whose files are not root's) or a deploy ID that is no domain name."""
    uri, socket_path = parse_uri(conf.get("libvirt_uri", DEFAULT_URI))
    if uri == "qemu:///session":
        return None
    try:
        domain = domain_name(deploy_id)
    except InputError:
        return None
    run_dir = os.path.dirname(socket_path) if socket_path else SYSTEM_RUN_DIR
    return os.path.join(run_dir, "qemu", f"{domain}.xml")


def live_taps(conf_of, vm, log):
    """``{mac: tap}`` of ``vm``'s running KVM domain from libvirt's status file ({} when none).

    ``conf_of()`` gives the configuration (read only when the VM is a KVM one
    and the caller root).

    Root only, through :mod:`vnmlib.safe_paths` (no link of another user's), and
    only from a regular file root owns in a directory only root may change:
    libvirtd writes it, so no other user can have put a name there. Each name still passes the kernel's naming rules;
    one that does not is left out (the NIC falls back to TARGET) with a warning.
    """
    if os.geteuid() != 0 or vm.vm_mad != "kvm" or not vm.deploy_id:
        return {}
    path = status_path(conf_of(), vm.deploy_id)
    if path is None:
        return {}
    from vnmlib.safe_paths import open_fd

    try:
        fd = open_fd(path)
    except FileNotFoundError:
        return {}  # the domain is not running here (yet, or any more)
    except (OSError, VnmError) as exc:
        log.warning(f"libvirt's status of {vm.deploy_id} ({path}) not read: "
                    f"{getattr(exc, 'strerror', None) or exc}; taps from TARGET")
        return {}
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        try:
            parent = os.stat(os.path.dirname(path))
        except OSError:
            parent = None
        # a socket= URI is the caller's choice: only root's own files in root's own
        # directory (where no one else can link one in) are libvirt's word
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or parent is None
                or parent.st_uid != 0 or parent.st_mode & 0o022):
            log.warning(f"{path} is not a file root owns in a directory only root may "
                        "change: taps from TARGET")
            return {}
        raw = handle.read(MAX_STATUS_BYTES + 1)
    return _taps_of(raw, path, log)


def _taps_of(raw, path, log):
    from vnmlib.model.template import parse_xml

    try:
        if len(raw) > MAX_STATUS_BYTES:
            raise InputError(f"larger than {MAX_STATUS_BYTES} bytes")
        root = parse_xml(raw, "domstatus")
    except InputError as exc:
        log.warning(f"{path} not used: {exc}; taps from TARGET")
        return {}
    taps = {}
    for interface in root.iterfind("domain/devices/interface"):
        mac, target = interface.find("mac"), interface.find("target")
        address = (mac.get("address") or "").lower() if mac is not None else ""
        dev = target.get("dev") or "" if target is not None else ""
        if not (_MAC.fullmatch(address) and dev):
            continue
        try:
            taps[address] = check_ifname(dev, f"libvirt's tap of MAC {address}")
        except InputError:
            log.warning(f"{path}: interface name {shown(dev)} of MAC {address} refused; "
                        "that NIC's tap from TARGET")
    return taps
