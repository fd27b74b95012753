"""`dfxdp` imports a command's module only when the command runs; `dfxdp --help` still lists
every command, and each one listed resolves and answers --help."""
import subprocess
import sys

import click
from click.testing import CliRunner

from dfxdp.cli.main import COMMANDS, main

EXPECTED = {*COMMANDS, "network", "subnet", "port", "router", "security-group", "security-group-rule",
            "floatingip", "address-scope", "loadbalancer", "listener", "pool", "healthmonitor"}


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_help_lists_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == EXPECTED


def test_every_listed_command_resolves_and_answers_help():
    names = main.list_commands(click.Context(main))
    assert set(names) == EXPECTED
    for name in names:
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output


def test_each_fixed_command_is_registered_by_its_module():
    """A module named in COMMANDS registers that command (else the name would fall through to
    the resource commands and be unknown)."""
    for name, module in COMMANDS.items():
        group = type(main)(name="probe")
        __import__(module, fromlist=["register"]).register(group)
        assert name in group.commands, (name, module)


def test_a_command_imports_its_module_alone():
    loaded = _modules_after("import click\nfrom dfxdp.cli.main import main\n"
                            "main.get_command(click.Context(main), 'build')")
    assert "dfxdp.cli.build_cmd" in loaded
    assert not loaded & {"dfxdp.cli.resources", "dfxdp.cli.bench", "dfxdp.cli.agent", "dfxdp.nb.model", "pydantic"}


def test_an_unknown_command_is_refused():
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output
