"""Resource commands (`dfxdp network create …`) talking to the Neutron/Octavia API.

Every NB kind with a CLI name (dfxdp/nb/kinds.py) gets list / show / delete / set;
`create` takes the options CREATE_OPTIONS gives the kind, else `--name` and
`--property FIELD=VALUE`. Objects may be named by id or by unique name.
Output: rich tables, or JSON with -f json. User mistakes and API errors are one
line on stderr and a non-zero exit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import click

from dfxdp.nb import kinds

DEFAULT_URL = "http://127.0.0.1:9696"


class Api:
    def __init__(self, url: str, token: str | None):
        self.url = url.rstrip("/")
        self.headers = {"X-Auth-Token": token} if token else {}

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        import httpx  # here: every `dfxdp` command (an agent's start too) loads this module, few call the API

        try:
            resp = httpx.request(method, self.url + path, json=body, headers=self.headers, timeout=30)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the dfxdp API at {self.url}: {exc}") from None
        if resp.status_code >= 400:
            try:
                err = resp.json().get("NeutronError", {})
                message = f"{err.get('type', 'Error')}: {err.get('message', resp.text)}"
            except ValueError:
                message = resp.text.strip() or resp.reason_phrase
            raise click.ClickException(f"{method} {path} failed ({resp.status_code}) — {message}")
        return resp.json() if resp.content else None


def _drop_unset(opts: dict) -> dict:
    return {k: v for k, v in opts.items() if v not in (None, (), [])}


@dataclass
class Resource:
    name: str        # CLI group name
    path: str        # API collection path
    singular: str    # JSON envelope
    columns: list[str]
    create_options: list[click.Option] = field(default_factory=list)
    to_body: Callable[[dict], dict] = _drop_unset

    @property
    def plural(self) -> str:
        return self.singular + "s"


def _output(ctx: click.Context, data: Any, columns: list[str]) -> None:
    if ctx.obj["format"] == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    rows = data if isinstance(data, list) else None
    table = Table(show_lines=False)
    if rows is not None:
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
    else:
        table.add_column("Field")
        table.add_column("Value")
        for key in sorted(data):
            table.add_row(key, _cell(data[key]))
    Console(width=200).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _resolve(api: Api, res: Resource, ref: str) -> str:
    """An id for `ref`, which may be an id or a unique name."""
    items = api.call("GET", f"{res.path}?name={ref}")[res.plural]
    if len(items) > 1:
        raise click.ClickException(f"more than one {res.singular} is named {ref!r}: use its id")
    if items:
        return items[0]["id"]
    api.call("GET", f"{res.path}/{ref}")  # 404 → a clear error
    return ref


def resolve(api: Api, kind: str, ref: str) -> str:
    """An id for `ref` (an id or a unique name) of the NB kind `kind`."""
    return _resolve(api, _resource(kinds.BY_NAME[kind]), ref)


def _key_value(values: tuple[str, ...], what: str) -> dict:
    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=what)
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _fixed_ips(values: tuple[str, ...]) -> list[dict]:
    """--fixed-ip 10.0.0.5 | ip_address=10.0.0.5,subnet_id=ID | subnet_id=ID"""
    out = []
    for v in values:
        if "=" not in v:
            out.append({"ip_address": v})
            continue
        entry = {}
        for part in v.split(","):
            k, _, val = part.partition("=")
            k = {"ip-address": "ip_address", "ip": "ip_address", "subnet": "subnet_id"}.get(k, k)
            if k not in ("ip_address", "subnet_id"):
                raise click.BadParameter(f"{v!r}: keys are ip_address and subnet_id", param_hint="--fixed-ip")
            entry[k] = val
        out.append(entry)
    return out


def _port_range(value: str | None) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    lo, _, hi = value.partition(":")
    try:
        return int(lo), int(hi or lo)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected PORT or MIN:MAX", param_hint="--port-range") from None


def _opt(*decls: str, **kw) -> click.Option:
    return click.Option(list(decls), **kw)


def _ip_version() -> click.Option:
    return _opt("--ip-version", type=click.Choice(["4", "6"]), default="4", callback=lambda c, p, v: int(v))


def _network_body(o: dict) -> dict:
    body = {"name": o["name"], "router:external": o["external"], "port_security_enabled": not o["no_port_security"]}
    if o["mtu"]:
        body["mtu"] = o["mtu"]
    return body


def _subnet_body(o: dict) -> dict:
    body = {"name": o["name"], "network_id": o["network"], "cidr": o["cidr"], "ip_version": o["ip_version"],
            "dns_nameservers": list(o["dns"])}
    if o["no_gateway"]:
        body["gateway_ip"] = None
    elif o["gateway"]:
        body["gateway_ip"] = o["gateway"]
    return body


def _port_body(o: dict) -> dict:
    body = {"name": o["name"], "network_id": o["network"], "binding:host_id": o["host"] or ""}
    if o["fixed_ip"]:
        body["fixed_ips"] = _fixed_ips(o["fixed_ip"])
    if o["mac"]:
        body["mac_address"] = o["mac"]
    if o["security_group"]:
        body["security_groups"] = list(o["security_group"])
    if o["no_port_security"]:
        body.update(port_security_enabled=False, security_groups=[])
    return body


def _router_body(o: dict) -> dict:
    body = {"name": o["name"]}
    if o["external_gateway"]:
        body["external_gateway_info"] = {"network_id": o["external_gateway"]}
    return body


def _rule_body(o: dict) -> dict:
    lo, hi = o["port_range"]
    return {"security_group_id": o["group"], "direction": o["direction"], "ethertype": o["ethertype"],
            "protocol": o["protocol"], "port_range_min": lo, "port_range_max": hi,
            "remote_ip_prefix": o["remote_ip"], "remote_group_id": o["remote_group"]}


def _generic_body(o: dict) -> dict:
    return {**_key_value(o.pop("props"), "--property"), **_drop_unset(o)}


GENERIC_CREATE = ([_opt("--name", default=""), _opt("--property", "props", multiple=True,
                                                     help="FIELD=VALUE (VALUE parsed as JSON when it is)")],
                  _generic_body)
# kind -> the create options its command takes and how they make the request body
CREATE_OPTIONS: dict[str, tuple[list[click.Option], Callable[[dict], dict]]] = {
    "network": ([_opt("--name", default=""), _opt("--external", is_flag=True, help="A flat router:external network."),
                 _opt("--mtu", type=int), _opt("--no-port-security", is_flag=True)], _network_body),
    "subnet": ([_opt("--network", required=True), _opt("--cidr", required=True), _opt("--name", default=""),
                _ip_version(), _opt("--gateway"), _opt("--no-gateway", is_flag=True), _opt("--dns", multiple=True)], _subnet_body),
    "port": ([_opt("--network", required=True), _opt("--name", default=""),
              _opt("--fixed-ip", multiple=True, help="IP, or ip_address=IP,subnet_id=ID"), _opt("--mac"),
              _opt("--host", help="binding:host_id: the chassis that hosts it"),
              _opt("--security-group", multiple=True), _opt("--no-port-security", is_flag=True)], _port_body),
    "router": ([_opt("--name", default=""), _opt("--external-gateway", help="external network id")], _router_body),
    "security_group": ([_opt("--name", required=True), _opt("--description", default="")], _drop_unset),
    "security_group_rule": ([_opt("--group", required=True), _opt("--direction", type=click.Choice(
        ["ingress", "egress"]), default="ingress"), _opt("--ethertype", type=click.Choice(["IPv4", "IPv6"]),
                                                         default="IPv4"), _opt("--protocol"),
        _opt("--port-range", help="PORT or MIN:MAX (ICMP: TYPE:CODE)", callback=lambda c, p, v: _port_range(v)),
        _opt("--remote-ip"), _opt("--remote-group")], _rule_body),
    "floatingip": ([_opt("--network", "floating_network_id", required=True), _opt("--port", "port_id"),
                    _opt("--address", "floating_ip_address")], _drop_unset),
    "address_scope": ([_opt("--name", required=True), _ip_version(),
                       # unset unless asked: a member may not set `shared` at all (policy)
                       _opt("--share", "shared", is_flag=True, callback=lambda c, p, v: v or None,
                            help="Seen by every project (admins).")], _drop_unset),
    "loadbalancer": ([_opt("--name", default=""), _opt("--subnet", "vip_subnet_id", required=True),
                      _opt("--vip", "vip_address")], _drop_unset),
    "listener": ([_opt("--name", default=""), _opt("--loadbalancer", "loadbalancer_id", required=True),
                  _opt("--protocol", required=True), _opt("--port", "protocol_port", type=int, required=True)],
                 _drop_unset),
    "pool": ([_opt("--name", default=""), _opt("--listener", "listener_id"), _opt("--loadbalancer", "loadbalancer_id"),
              _opt("--protocol", required=True), _opt("--algorithm", "lb_algorithm", default="ROUND_ROBIN")],
             _drop_unset),
}


def _resource(kind: kinds.Kind) -> Resource:
    options, to_body = CREATE_OPTIONS.get(kind.name, GENERIC_CREATE)
    # a copy of the options: each command adds the common ones to its own list
    return Resource(kind.cli, kind.path, kind.name, list(kind.columns), list(options), to_body)


# create options that name another object: accepted as id or unique name
REFERENCES = {"network": "network", "floating_network_id": "network", "external_gateway": "network",
              "port_id": "port", "vip_subnet_id": "subnet", "loadbalancer_id": "loadbalancer",
              "listener_id": "listener", "group": "security-group", "remote_group": "security-group",
              "security_group": "security-group"}


def _resource_group(res: Resource, by_name: dict[str, Resource]) -> click.Group:
    @click.group(res.name, help=f"Manage {res.plural.replace('_', ' ')}.")
    def group() -> None:
        pass

    @group.command("list")
    @click.option("--filter", "filters", multiple=True, help="FIELD=VALUE (repeatable)")
    @click.pass_context
    def list_(ctx, filters):
        query = "&".join(f"{k}={v}" for k, v in _key_value(filters, "--filter").items())
        data = ctx.obj["api"].call("GET", f"{res.path}{'?' + query if query else ''}")[res.plural]
        _output(ctx, data, res.columns)

    @group.command("show")
    @click.argument("ref")
    @click.pass_context
    def show(ctx, ref):
        api = ctx.obj["api"]
        _output(ctx, api.call("GET", f"{res.path}/{_resolve(api, res, ref)}")[res.singular], res.columns)

    @group.command("delete")
    @click.argument("refs", nargs=-1, required=True)
    @click.pass_context
    def delete(ctx, refs):
        api = ctx.obj["api"]
        for ref in refs:
            api.call("DELETE", f"{res.path}/{_resolve(api, res, ref)}")

    @group.command("set")
    @click.argument("ref")
    @click.option("--name")
    @click.option("--property", "props", multiple=True, help="FIELD=VALUE (VALUE parsed as JSON when it is)")
    @click.pass_context
    def set_(ctx, ref, name, props):
        api = ctx.obj["api"]
        body = _key_value(props, "--property")
        if name is not None:
            body["name"] = name
        if not body:
            raise click.UsageError("nothing to set: give --name or --property")
        obj = api.call("PUT", f"{res.path}/{_resolve(api, res, ref)}", {res.singular: body})[res.singular]
        _output(ctx, obj, res.columns)

    @click.pass_context
    def create(ctx, **opts):
        api = ctx.obj["api"]
        for option, target in REFERENCES.items():
            if isinstance(opts.get(option), str):
                opts[option] = _resolve(api, by_name[target], opts[option])
            elif isinstance(opts.get(option), tuple):
                opts[option] = tuple(_resolve(api, by_name[target], v) for v in opts[option])
        body = res.to_body(opts)
        obj = ctx.obj["api"].call("POST", res.path, {res.singular: body})[res.singular]
        _output(ctx, obj, res.columns)

    group.add_command(click.Command("create", callback=create, params=res.create_options,
                                    help=f"Create a {res.singular.replace('_', ' ')}."))
    return group


def _router_interface_commands(router: click.Group, by_name: dict[str, Resource]) -> None:
    for action in ("add", "remove"):
        def make(action=action):
            @router.command(f"{action}-interface", help=f"{action.capitalize()} a router interface (subnet or port).")
            @click.argument("router_ref")
            @click.option("--subnet")
            @click.option("--port")
            @click.pass_context
            def command(ctx, router_ref, subnet, port):
                if bool(subnet) == bool(port):
                    raise click.UsageError("give exactly one of --subnet or --port")
                api = ctx.obj["api"]
                rid = _resolve(api, by_name["router"], router_ref)
                body = ({"subnet_id": _resolve(api, by_name["subnet"], subnet)} if subnet
                        else {"port_id": _resolve(api, by_name["port"], port)})
                _output(ctx, api.call("PUT", f"/v2.0/routers/{rid}/{action}_router_interface", body),
                        ["id", "port_id", "subnet_id"])
        make()


def _member_commands(pool: click.Group) -> None:
    @pool.command("add-member", help="Add a member to a pool.")
    @click.argument("pool_id")
    @click.option("--address", required=True)
    @click.option("--port", "protocol_port", type=int, required=True)
    @click.option("--subnet", "subnet_id")
    @click.pass_context
    def add_member(ctx, pool_id, **body):
        member = ctx.obj["api"].call("POST", f"/v2/lbaas/pools/{pool_id}/members",
                                     {"member": {k: v for k, v in body.items() if v is not None}})["member"]
        _output(ctx, member, ["id", "address", "protocol_port"])


COMMON_OPTIONS = [
    click.Option(["--url"], envvar="DFXDP_URL", default=DEFAULT_URL, show_default=True,
                 help="dfxdp API endpoint (env DFXDP_URL)."),
    click.Option(["--token"], envvar="DFXDP_AUTH_TOKEN", default=None, help="X-Auth-Token to send."),
    click.Option(["-f", "--format", "fmt"], type=click.Choice(["table", "json"]), default="table",
                 help="Output format."),
]


def _with_common_options(cmd: click.Command) -> None:
    """Every leaf command takes --url/--token/-f and finds the API client in ctx.obj."""
    inner = cmd.callback

    def callback(url, token, fmt, **kw):
        ctx = click.get_current_context()
        ctx.obj = {"api": Api(url, token), "format": fmt}
        return inner(**kw)

    cmd.callback = callback
    cmd.params.extend(COMMON_OPTIONS)


def register(group: click.Group) -> None:
    """A command group for every kind with a CLI name (those registered by now)."""
    by_name = {kind.cli: _resource(kind) for kind in kinds.KINDS if kind.cli}
    for res in by_name.values():
        sub = _resource_group(res, by_name)
        if res.name == "router":
            _router_interface_commands(sub, by_name)
        if res.name == "pool":
            _member_commands(sub)
        for cmd in sub.commands.values():
            _with_common_options(cmd)
        group.add_command(sub)
