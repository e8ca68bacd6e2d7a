import os

from vnmlib.contract.hooks import hook_programs


def test_hook_selection_and_byte_order(tmp_path):
    for name, mode in [("b", 0o755), ("B", 0o755), ("10_x", 0o755), ("2_y", 0o755),
                       ("noexec", 0o644), (".hidden", 0o755)]:
        path = tmp_path / name
        path.write_text("#!/bin/sh\n")
        os.chmod(path, mode)
    (tmp_path / "dir").mkdir()
    assert [os.path.basename(p) for p in hook_programs(str(tmp_path))] == ["10_x", "2_y", "B", "b"]


def test_missing_hook_dir_is_empty(tmp_path):
    assert hook_programs(str(tmp_path / "nope")) == []
