"""The checkout's vnm/ tree is what ``vnm install`` lays out.

The tests and the README's demo run the checkout's ``vnm/<driver>/<action>``;
hosts run the installed tree, which install derives from vnmlib's drivers. A
driver, action or hook directory added to vnmlib but not to vnm/ (or left in
vnm/ after its removal) would work in one and not in the other.
"""

import os

from support.paths import TREE

from vnmlib.ops.install import install


def layout(tree):
    """{path under ``tree``: ("dir",) | ("link", target) | ("file", executable)}.

    The installed vnmlib/ is left out: it is the package itself, which the
    checkout keeps one level up (where run-action looks for it too).
    """
    entries = {}
    for root, dirs, files in os.walk(tree):
        relative = os.path.relpath(root, tree)
        if relative == ".":
            dirs[:] = [name for name in dirs if name != "vnmlib"]
        for name in dirs + files:
            path = os.path.join(root, name)
            key = os.path.normpath(os.path.join(relative, name))
            if os.path.islink(path):
                entries[key] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                entries[key] = ("dir",)
            else:
                entries[key] = ("file", os.access(path, os.X_OK))
    return entries


def test_the_checkout_tree_is_what_install_lays_out(tmp_path):
    install(str(tmp_path))
    installed_tree = os.path.join(tmp_path, "vnm")
    assert os.path.isdir(os.path.join(installed_tree, "vnmlib"))
    installed, committed = layout(installed_tree), layout(TREE)

    # the entry script: the checkout links to the package's copy, install copies it
    assert committed.pop("run-action") == ("link", "../vnmlib/shipped/run-action")
    assert installed.pop("run-action") == ("file", True)
    assert os.access(os.path.join(TREE, "run-action"), os.X_OK)
    with open(os.path.join(TREE, "run-action"), "rb") as ours, \
            open(os.path.join(installed_tree, "run-action"), "rb") as laid_out:
        assert ours.read() == laid_out.read()

    # git keeps no empty directory: each hook directory holds an empty .gitkeep, and no
    # other directory has one
    hook_dirs = {path for path, entry in installed.items() if entry == ("dir",)
                 and path.endswith(".d")}
    assert hook_dirs, "install laid out no hook directory"
    kept = {os.path.dirname(path) for path in committed if os.path.basename(path) == ".gitkeep"}
    assert kept == hook_dirs
    for directory in kept:
        keep = os.path.join(directory, ".gitkeep")
        assert committed.pop(keep) == ("file", False), keep
        assert os.path.getsize(os.path.join(TREE, keep)) == 0, keep

    # the rest: driver directories, one link to ../run-action per action, the hook directories
    assert {entry for entry in installed.values() if entry[0] == "link"} == \
        {("link", "../run-action")}
    only_in_checkout = sorted(set(committed.items()) - set(installed.items()))
    only_installed = sorted(set(installed.items()) - set(committed.items()))
    assert not only_in_checkout and not only_installed, \
        f"vnm/ has {only_in_checkout}, install lays out {only_installed} instead"
