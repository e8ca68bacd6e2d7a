"""stderr lines in the format oned parses: ``SEVERITY: <action>: message`` (reference §1.3)."""

import sys


class Log:
    def __init__(self, action, stream=None):
        self.action = action
        self.stream = stream or sys.stderr

    def _write(self, severity, message):
        # lines end at "\n" only (as oned reads them), not at the other breaks
        # str.splitlines() knows (U+0085, U+2028…), which user input may carry
        for line in str(message).rstrip("\n").split("\n"):
            self.stream.write(f"{severity}: {self.action}: {_printable(line)}\n")
        self.stream.flush()

    def info(self, message):
        self._write("INFO", message)

    def error(self, message):
        # one line, always: oned and admins' scripts read the ERROR line (a
        # library's message may carry line breaks)
        self._write("ERROR", " ".join(str(message).split("\n")))

    def warning(self, message):
        # "WARN", not the Ruby logger's "WARNING": oned's driver layer logs only
        # lines matching ^(ERROR|INFO|WARN|DEBUG): and would keep a WARNING line
        # as failure text; one line, as an ERROR line
        self._write("WARN", " ".join(str(message).split("\n")))

    def failed(self, message):
        """The action's failure: the ERROR line for oned's log, then the same reason
        once as a plain line. OpenNebula's driver layer logs every prefixed line
        and keeps only the others as the failure text oned stores in the VM's
        ERROR attribute (``onevm show``, Sunstone), so the operator sees why
        there, not only in the host's log (SPEC §1)."""
        reason = " ".join(str(message).split("\n"))
        self.error(reason)
        self.stream.write(_printable(reason) + "\n")
        self.stream.flush()


def _printable(text):
    """Control and separator characters (from names in the VM, say) as escapes."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else " " if ch in "\t\r" else
                   ch.encode("unicode_escape").decode("ascii") for ch in text)
