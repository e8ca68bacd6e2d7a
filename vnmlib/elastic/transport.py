"""The front-end running the host side of an action (``remote_post``, ``remote_clean``).

As oned reaches its hosts: OpenSSH as the calling user (oneadmin), in batch
mode (no prompt can ever hang an action), running the action of the synced
tree (``/var/tmp/one/vnm`` unless ``transport: remote_dir`` says otherwise)
with the VM description on stdin. When the host is this machine (its own
host name, ``localhost``, or ``local: true`` in its settings) the action of
this tree runs directly. The host's INFO lines are passed on; its ERROR line
becomes this action's error.
"""

import os
import shlex
import socket
import subprocess
import sys

from vnmlib.errors import VnmError

DEFAULT_TIMEOUT = 120  # seconds; a remote action normally takes a fraction of one


def _is_local(settings):
    local = settings.transport.get("local")
    if local is not None:
        return local is True
    return settings.host in ("localhost", socket.gethostname())


def command(settings, tree, action, args):
    """The argv that runs ``action`` of the elastic driver on ``settings.host``."""
    if _is_local(settings):
        # this interpreter: the one the caller chose for the actions
        return [sys.executable, os.path.join(tree, "elastic", action), *args]
    transport = settings.transport
    remote_dir = str(transport.get("remote_dir") or "/var/tmp/one/vnm").rstrip("/")
    options = transport.get("ssh_options") or []
    if not isinstance(options, list):
        raise VnmError("elastic.yaml: transport: ssh_options must be a list of ssh arguments")
    user = transport.get("ssh_user")
    destination = f"{user}@{settings.host}" if user else settings.host
    remote = shlex.join([f"{remote_dir}/elastic/{action}", *args])
    # BatchMode: fail rather than ask for a password or a host key confirmation
    return ["ssh", "-o", "BatchMode=yes", *map(str, options), "--", destination, remote]


def run(settings, tree, action, args, stdin, log):
    """Run ``action`` on the host; relay its INFO lines; raise with its ERROR line."""
    argv = command(settings, tree, action, args)
    timeout = float(settings.transport.get("timeout") or DEFAULT_TIMEOUT)
    try:
        done = subprocess.run(argv, input=stdin, stdout=sys.stdout.buffer, stderr=subprocess.PIPE,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise VnmError(f"{action} on host {settings.host} did not finish within "
                       f"{timeout:g} s") from None
    except OSError as exc:
        raise VnmError(f"cannot run {argv[0]}: {exc.strerror}") from None
    errors = []
    for line in done.stderr.decode(errors="replace").splitlines():
        if line.startswith("ERROR: "):
            errors.append(line.split(": ", 2)[-1])
        elif line.strip():
            log.stream.write(line + "\n")
    log.stream.flush()
    if done.returncode == 0:
        return
    how = "over ssh" if argv[0] == "ssh" else "locally"
    if errors:
        raise VnmError(f"{action} on host {settings.host} failed: {'; '.join(errors)}")
    last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [
        f"exit code {done.returncode}"]
    raise VnmError(f"cannot run {action} on host {settings.host} {how}: {last[0]}")
