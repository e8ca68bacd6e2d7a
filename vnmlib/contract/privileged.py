"""The privilege boundary: a non-root caller's host changes through the sudo helper.

oned runs the actions as ``oneadmin``, who owns the synced remotes tree and its
configuration, so nothing there may run as root (SPEC §7, README "Security").
An action whose handler is marked ``privileged`` (the host-side work of a
driver) runs, for a non-root caller, the *root-owned* helper ``vnm-action``
through ``sudo -n``. The vnm-node package installs it as
``/usr/sbin/vnm-action`` with its sudoers drop-in; a hand install (pip, README
"Security") puts it at ``/usr/local/sbin/vnm-action`` and needs one line:

    oneadmin ALL=(root) NOPASSWD: /usr/local/sbin/vnm-action

What crosses the boundary, and nothing else:

- argv: ``vnm-action DRIVER ACTION [ARGS…]``; the driver must be one vnm knows,
  the action one of its handlers marked ``privileged`` (never a front-end
  action such as elastic's ``post``/``clean``, which run programs and ssh);
- stdin: a frame ``vnm-action/1 <n> <n> <n>\\n`` followed by the VM's bytes (as
  oned sent them), the bytes of the caller's ``OpenNebulaNetwork.conf`` and of
  its ``elastic.yaml`` (for the elastic host side), each absent as ``-1``.

The helper imports its own root-owned vnmlib, parses those bytes as data
(``yaml.safe_load``, then type checks), opens no path of the caller's, and
runs no program, option list or path taken from them. The admins' hooks run
back in the caller's process, as the caller, as in the reference; so does a
handler's ``as_caller`` step (:func:`vnmlib.contract.action.run_driver_action`).
"""

import os
import sys

from vnmlib.errors import InputError, VnmError

# Where the helper is: the vnm-node package's path, then a hand install's.
HELPER_PATHS = ("/usr/sbin/vnm-action", "/usr/local/sbin/vnm-action")
MAGIC = b"vnm-action/1"
MAX_CONF_BYTES = 1024 * 1024  # a conf file is a few kB; bounds what root reads
# root's own PATH for the tools the helper runs (Debian's sudo secure_path)
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# what vnm reads from its environment that names a path root would write or use
_CALLERS_PATHS = ("VNM_RUN_DIR", "VNM_VHOST_DIR", "VNM_SUDO_HELPER")


class Sent:
    """The caller's configuration files, as bytes (None: the file does not exist)."""

    __slots__ = ("conf", "elastic")

    def __init__(self, conf, elastic):
        self.conf, self.elastic = conf, elastic


def helper_path():
    """The helper to run: ``VNM_SUDO_HELPER``, else the first of :data:`HELPER_PATHS`
    that exists (the package's when neither does, for the error to name)."""
    # sudoers decides what may run as root, so choosing another path here
    # cannot grant anything; the variable exists for tests and odd layouts.
    chosen = os.environ.get("VNM_SUDO_HELPER")
    if chosen:
        return chosen
    return next((path for path in HELPER_PATHS if os.path.exists(path)), HELPER_PATHS[0])


def _conf_bytes(ctx):
    from vnmlib.model.config import conf_path

    path = conf_path(ctx.tree)
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_CONF_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def frame(vm, conf, elastic):
    parts = (vm, conf, elastic)
    sizes = " ".join(str(-1 if part is None else len(part)) for part in parts)
    return b"".join([MAGIC, b" ", sizes.encode("ascii"), b"\n", *(p or b"" for p in parts)])


def unframe(data):
    """(vm, conf, elastic) bytes from :func:`frame`'s output; refused unless exact."""
    from vnmlib.model.limits import MAX_STDIN_BYTES

    header, newline, body = data.partition(b"\n")
    words = header.split(b" ")
    if not newline or len(words) != 4 or words[0] != MAGIC:
        raise VnmError("vnm-action: stdin is not a vnm-action/1 frame (run the actions, "
                       "not the helper)")
    sizes = []
    for word, limit in zip(words[1:], (MAX_STDIN_BYTES, MAX_CONF_BYTES, MAX_CONF_BYTES)):
        if not (word == b"-1" or word.isdigit() and int(word) <= limit):
            raise VnmError(f"vnm-action: bad frame size {word[:20]!r}")
        sizes.append(int(word))
    if sum(max(size, 0) for size in sizes) != len(body):
        raise VnmError("vnm-action: the frame's sizes do not match its body")
    parts, offset = [], 0
    for size in sizes:
        parts.append(None if size < 0 else body[offset:offset + size])
        offset += max(size, 0)
    return parts


def run_through_sudo(ctx, handler):
    """The caller's side: send the frame, relay the helper's lines and exit code."""
    import subprocess

    conf = _conf_bytes(ctx)
    if conf is not None and len(conf) > MAX_CONF_BYTES:
        raise InputError(f"OpenNebulaNetwork.conf is larger than {MAX_CONF_BYTES} bytes")
    elastic = None
    if getattr(handler, "elastic_settings", False):
        from vnmlib.elastic import settings

        elastic = settings.read_private(ctx.tree)
    helper = helper_path()
    command = ["sudo", "-n", helper, ctx.driver, ctx.action, *ctx.argv]
    try:
        done = subprocess.run(command, input=frame(ctx.stdin, conf, elastic),
                              stderr=subprocess.PIPE, check=False)
    except OSError as exc:
        raise VnmError(f"cannot run sudo: {exc.strerror}") from None
    lines = done.stderr.decode(errors="replace").splitlines()
    for line in lines:
        sys.stderr.write(line + "\n")
    if done.returncode != 0:
        if any(line.startswith("ERROR:") for line in lines):
            raise VnmError("", done.returncode)  # the helper already said why
        raise VnmError(f"cannot run {helper} through 'sudo -n' as root "
                       f"(exit {done.returncode}); see README 'Security'")


def privileged_handler(driver, action):
    """The handler the helper may run as root for ``driver``/``action``, or an error."""
    from vnmlib.contract.context import REQUIRED_ARGS, handler_of
    from vnmlib.drivers import DRIVER_MODULES

    if driver not in DRIVER_MODULES:
        raise VnmError(f"vnm-action: unknown driver {driver!r}")
    if action not in REQUIRED_ARGS:
        raise VnmError(f"vnm-action: unknown action {action!r}")
    handler = handler_of(driver, action)
    if not getattr(handler, "privileged", False):
        raise VnmError(f"vnm-action: {driver}/{action} has no privileged part; "
                       "it runs as its caller")
    return handler


def helper_main(argv=None):
    """``vnm-action DRIVER ACTION [ARGS…]`` (the frame on stdin): the root side of an action."""
    from vnmlib.contract.context import REQUIRED_ARGS, Context, check_argv, read_stdin, reporting_errors
    from vnmlib.log import Log

    argv = list(sys.argv[1:] if argv is None else argv)
    action = argv[1] if len(argv) > 1 else "vnm-action"
    # the caller's text goes into the line prefix only when it is an action vnm knows
    log = Log(action if action in REQUIRED_ARGS else "vnm-action")

    def work():
        if len(argv) < 2:
            raise VnmError("usage: vnm-action DRIVER ACTION [ARGS...] (a frame on stdin)")
        if os.geteuid() != 0:
            raise VnmError("vnm-action must run as root (through sudo)")
        # sudo's env_reset already leaves root's environment; a sudoers that keeps the
        # caller's (!env_reset, env_keep) must still not let it pick root's tools or paths
        os.environ["PATH"] = ROOT_PATH
        for name in _CALLERS_PATHS:
            os.environ.pop(name, None)
        driver, args = argv[0], argv[2:]
        handler = privileged_handler(driver, action)
        check_argv(action, args)
        vm, conf, elastic = unframe(read_stdin(extra=2 * MAX_CONF_BYTES + 64))
        handler(Context(driver, action, args, vm, None, log, sent=Sent(conf, elastic)))

    return reporting_errors(log, work)
