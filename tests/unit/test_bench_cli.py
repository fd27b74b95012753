"""`dfxdp bench --parts/--ports`: the values it takes, and one-line errors that
start nothing for the ones it does not."""
import pytest
from click.testing import CliRunner

from dfxdp.cli.bench import PARTS, parse_parts, parse_ports
from dfxdp.cli.main import main


def test_parts_are_taken_in_bench_order_without_repeats():
    assert parse_parts("control,datapath") == ("datapath", "control")
    assert parse_parts(" throughput , throughput") == ("throughput",)
    assert parse_parts(",".join(PARTS)) == PARTS


def test_ports_are_sorted_and_deduplicated():
    assert parse_ports("100000,10000") == (10000, 100000)
    assert parse_ports("10_000, 10000 ,5") == (5, 10000)


@pytest.mark.parametrize("args, message", [
    (["--parts", "datapath,bogus"], "--parts: unknown part 'bogus'; choose from datapath, lb, dns, throughput, punt, fallback, control, api"),
    (["--parts", "datapath,"], "--parts: unknown part ''"),
    (["--ports", "10,ten"], "--ports: 'ten' is not a whole number of ports"),
    (["--ports", "-5"], "--ports: '-5' is not a whole number of ports"),
    (["--ports", "0"], "--ports: 0 ports is outside 1..1,000,000"),
    (["--ports", "2000000"], "--ports: 2,000,000 ports is outside 1..1,000,000"),
    (["--parts", "datapath", "--ports", "10000"], "--ports and --large size the control and api parts"),
    (["--parts", "throughput", "--large"], "--ports and --large size the control and api parts"),
])
def test_bad_values_are_one_line_errors_and_nothing_runs(tmp_path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["bench", *args, "--out", str(out)])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not out.exists()
