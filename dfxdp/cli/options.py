"""Option parsing shared by commands: HOST:PORT addresses, config files."""
from __future__ import annotations

import configparser
import ipaddress

import click


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:9696")
    host = host.strip("[]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise click.BadParameter(f"{value!r}: {host!r} is not an IP address") from None
    return host, int(port)


def read_config(path: str | None) -> configparser.ConfigParser:
    """An INI config file (e.g. /etc/dfxdp/dfxdp.conf); a broken one is a clear error."""
    config = configparser.ConfigParser()
    if path:
        try:
            with open(path) as f:
                config.read_file(f)
        except OSError as exc:
            raise click.ClickException(f"cannot read config file {path}: {exc.strerror}") from None
        except configparser.Error as exc:
            raise click.ClickException(f"config file {path} is malformed: {exc}".splitlines()[0]) from None
    return config
