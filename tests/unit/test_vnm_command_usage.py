"""The vnm command: every subcommand's --help, usage errors as one line, install --dry-run."""

import os

import pytest
from click.testing import CliRunner

from vnmlib.cli import COMMANDS, cli, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {name}" in result.output or f"Usage: vnm {name}" in result.output


def test_top_level_help_lists_the_subcommands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name, summary in COMMANDS.items():
        assert name in result.output and summary in result.output


@pytest.mark.parametrize("argv, code, needle", [
    (["nope"], 2, "No such command 'nope'"),
    (["run", "bridge", "pre"], 2, "Missing option '--vm'"),
    (["plan", "bridge"], 2, "Missing argument 'ACTION'"),
    (["gc", "--live", "1,x"], 2, "is not a list of VM IDs"),
    (["install", "--bogus"], 2, "--bogus"),
])
def test_errors_are_one_line_with_an_exit_code(capsys, argv, code, needle):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_run_and_plan_name_a_missing_script_or_front_end_action(capsys, tmp_path):
    vm = tmp_path / "vm.xml"
    vm.write_text("<VM><ID>1</ID></VM>")
    assert main(["run", "nosuch", "pre", "--vm", str(vm)]) == 1
    assert "nosuch/pre does not exist" in capsys.readouterr().err
    assert main(["plan", "elastic", "post", "one-1", "h", "--vm", str(vm)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "elastic remote_post" in err


def test_install_dry_run_changes_nothing(tmp_path, capsys):
    assert main(["install", "--remotes", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would change" in out and "vnm/bridge/pre" in out and "OpenNebulaNetwork.conf" in out
    assert os.listdir(tmp_path) == []


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("vnm ")


def test_pip_install_gives_the_vnm_command():
    """test.sh installs the project into the venv: `vnm` is its console script."""
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(sys.executable), "vnm")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("vnm "), done.stderr
