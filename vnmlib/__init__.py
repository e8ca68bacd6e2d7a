"""vnm: OpenNebula virtual-network drivers in Python.

Importing this package costs nothing: every module imports only what its own
work needs, and pyroute2 is imported only when a link really has to change.
"""

__version__ = "0.1.0"
