"""What the tests share: where things are, the input oned sends, namespaces and the
daemons tests start in them, the reference traces, and how results are checked.

conftest.py puts tests/ on sys.path, so tests import ``support.<module>``.
netprobe.py and wire_frames.py are scripts run inside namespaces, not imported.
"""
