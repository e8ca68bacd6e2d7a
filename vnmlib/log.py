"""stderr lines in the format oned parses: ``SEVERITY: <action>: message`` (reference §1.3)."""

import sys


class Log:
    def __init__(self, action, stream=None):
        self.action = action
        self.stream = stream or sys.stderr

    def _write(self, severity, message):
        for line in str(message).splitlines() or [""]:
            self.stream.write(f"{severity}: {self.action}: {line}\n")
        self.stream.flush()

    def info(self, message):
        self._write("INFO", message)

    def error(self, message):
        self._write("ERROR", message)
