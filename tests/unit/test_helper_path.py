"""Which root helper an action runs through sudo (vnmlib.contract.privileged.helper_path)."""

from vnmlib.contract import privileged


def exists_only(*paths):
    return lambda path: path in paths


def test_the_package_path_comes_first(monkeypatch):
    monkeypatch.delenv("VNM_SUDO_HELPER", raising=False)
    monkeypatch.setattr(privileged.os.path, "exists",
                        exists_only("/usr/sbin/vnm-action", "/usr/local/sbin/vnm-action"))
    assert privileged.helper_path() == "/usr/sbin/vnm-action"


def test_a_hand_install_is_found(monkeypatch):
    monkeypatch.delenv("VNM_SUDO_HELPER", raising=False)
    monkeypatch.setattr(privileged.os.path, "exists", exists_only("/usr/local/sbin/vnm-action"))
    assert privileged.helper_path() == "/usr/local/sbin/vnm-action"


def test_neither_names_the_package_path_for_the_error(monkeypatch):
    monkeypatch.delenv("VNM_SUDO_HELPER", raising=False)
    monkeypatch.setattr(privileged.os.path, "exists", exists_only())
    assert privileged.helper_path() == "/usr/sbin/vnm-action"


def test_the_variable_wins(monkeypatch):
    monkeypatch.setenv("VNM_SUDO_HELPER", "/opt/vnm/vnm-action")
    assert privileged.helper_path() == "/opt/vnm/vnm-action"
