"""`dfxdp agent --bridge-mappings PHYSNET:IFACE` and its shorthand `--external-interface IFACE`."""
import click
import pytest

from dfxdp.cli.agent import agent_config, parse_bridge_mappings


@pytest.mark.parametrize("mappings,external,expected", [
    (None, None, {}),
    ("public:eth1", None, {"public": "eth1"}),
    (None, "eth1", {"provider": "eth1"}),
    ("provider:eth1", "eth1", {"provider": "eth1"}),
    ("a:eth1,b:eth2", "eth3", {"a": "eth1", "b": "eth2", "provider": "eth3"}),
    ("a:eth1,b:eth1", None, {"a": "eth1", "b": "eth1"}),
])
def test_mappings(mappings, external, expected):
    assert parse_bridge_mappings(mappings, external) == expected


@pytest.mark.parametrize("mappings,external,words", [
    ("public", None, "PHYSNET:IFACE"),
    ("public:eth1,public:eth2", None, "each physical network once"),
    (":eth1", None, "PHYSNET:IFACE"),
    ("provider:eth1", "eth2", "another NIC"),
])
def test_bad_mappings_are_clear_errors(mappings, external, words):
    with pytest.raises(click.BadParameter, match=words):
        parse_bridge_mappings(mappings, external)


def test_the_mappings_reach_the_agent():
    config = agent_config("memory://", "c1", "198.18.0.1", "eth0", "public:eth1", None, None, "127.0.0.1:9870",
                          "native", "none")
    assert config.bridge_mappings == {"public": "eth1"}
