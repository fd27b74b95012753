"""`dfxdp server`: the Neutron-compatible API on an NB database."""
from __future__ import annotations

import click

from dfxdp.nb.db import DEFAULT_URL
from dfxdp.nb.dns import DEFAULT_DOMAIN as DEFAULT_DNS_DOMAIN

from .options import parse_listen, read_config


def quota_defaults(config) -> dict[str, int]:
    """[quotas] quota_<resource> = N (Neutron's option names; -1 unlimited)."""
    from dfxdp.nb.errors import NBError
    from dfxdp.nb.quotas import check_limits

    section = dict(config.items("quotas")) if config.has_section("quotas") else {}
    wanted = {key.removeprefix("quota_"): value for key, value in section.items()}
    try:
        return check_limits({"quota": wanted})
    except NBError as exc:
        raise click.ClickException(f"[quotas]: {exc.message}") from None


def authenticator(mode: str | None, token: str | None, config, oslo_conf):
    """`--auth`: none, token (the static token) or keystone ([keystone_authtoken] of the config
    file). Unset: keystone when the config file has that section, else token when one is given."""
    from dfxdp.api import auth

    if mode not in (None, *auth.MODES):
        raise click.UsageError(f"[api] auth: {mode!r} is not one of {', '.join(auth.MODES)}")
    if mode is None:
        mode = "keystone" if config.has_section("keystone_authtoken") else "token" if token else "none"
    if mode == "token":
        if not token:
            raise click.UsageError("--auth token needs --auth-token (or [api] auth_token)")
        return auth.StaticToken(token)
    if mode == "keystone":
        if not config.has_section("keystone_authtoken"):
            raise click.UsageError("--auth keystone needs a --config file with a [keystone_authtoken] section")
        return auth.Keystone(oslo_conf)
    return None


def build_app(store, auth, policy=None, dns_domain: str = DEFAULT_DNS_DOMAIN,
              quotas: dict[str, int] | None = None):
    """The ASGI app on an NB store; `auth` checks credentials (dfxdp/api/auth.py), `policy`
    what each may do (dfxdp/api/policy.py)."""
    from dfxdp.api.app import create_app
    from dfxdp.nb.errors import NBError
    from dfxdp.nb.service import NBService

    try:
        service = NBService(store, dns_domain=dns_domain, quota_defaults=quotas, mirror=True)
    except NBError as exc:
        raise click.ClickException(f"[dns] domain: {exc.message}") from None
    return create_app(service, auth=auth, policy=policy)


def start_local_agent(store, db_url: str, agent_args: tuple[str, ...]):
    """`--agent …`: an agent in this process on the same store (the all-in-one node)."""
    import threading

    from .agent import AGENT_OPTIONS, agent_config, start_agent_or_fail

    parser = click.Command("agent", params=AGENT_OPTIONS)
    try:
        ctx = parser.make_context("dfxdp server --agent", list(agent_args))
    except click.UsageError as exc:
        raise click.ClickException(f"--agent options: {exc.format_message()}") from None
    agent = start_agent_or_fail(agent_config(db_url, **ctx.params), store)
    threading.Thread(target=agent.run_forever, name="agent", daemon=True).start()
    return agent


def register(group: click.Group) -> None:
    @group.command("server", context_settings={"ignore_unknown_options": True})
    @click.option("--db", "db_url", default=None, help=f"NB database URL (default {DEFAULT_URL}).")
    @click.option("--listen", default=None, help="HOST:PORT to serve on (default 127.0.0.1:9696).")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                  help="INI file: [api] listen, auth, auth_token; [db] url; [dns] domain "
                       f"(networks' default dns_domain, {DEFAULT_DNS_DOMAIN}); [keystone_authtoken] "
                       "(keystonemiddleware's options); [oslo_policy] policy_file; [quotas] quota_<resource> "
                       "(default limits, -1 unlimited).")
    @click.option("--auth", "auth_mode", type=click.Choice(["none", "token", "keystone"]), default=None,
                  help="Who may call: anybody (none), holders of --auth-token (token), Keystone tokens "
                       "(keystone, configured by [keystone_authtoken]). Default: keystone if the config file "
                       "has that section, else token if a token is set, else none.")
    @click.option("--auth-token", envvar="DFXDP_AUTH_TOKEN", default=None,
                  help="Require this X-Auth-Token on every request (env DFXDP_AUTH_TOKEN).")
    @click.option("--agent", "with_agent", is_flag=True,
                  help="Also run a local agent in this process; the remaining arguments are its options "
                       "(e.g. --agent --chassis node1 --tunnel-ip 198.18.0.11 --underlay eth1).")
    @click.argument("agent_args", nargs=-1, type=click.UNPROCESSED)
    def server(db_url, listen, config_path, auth_mode, auth_token, with_agent, agent_args) -> None:
        """Serve the Neutron API v2.0 (and Octavia v2) on the NB database."""
        import uvicorn

        from dfxdp.api.auth import oslo_config
        from dfxdp.api.body import MAX_REQUEST_HEAD_BYTES
        from dfxdp.api.policy import Policy
        from dfxdp.nb.db import StoreError, open_store

        config = read_config(config_path)
        db_url = db_url or config.get("db", "url", fallback=DEFAULT_URL)
        host, port = parse_listen(listen or config.get("api", "listen", fallback="127.0.0.1:9696"))
        auth_token = auth_token or config.get("api", "auth_token", fallback=None) or None
        oslo_conf = oslo_config(config_path)  # the same file, as keystonemiddleware and oslo.policy read it
        auth = authenticator(auth_mode or config.get("api", "auth", fallback=None), auth_token, config, oslo_conf)
        if agent_args and not with_agent:
            raise click.UsageError(f"unexpected arguments {' '.join(agent_args)} (agent options follow --agent)")
        try:
            store = open_store(db_url)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
        app = build_app(store, auth, Policy(oslo_conf), config.get("dns", "domain", fallback=DEFAULT_DNS_DOMAIN),
                        quota_defaults(config))
        if with_agent:
            start_local_agent(store, db_url, agent_args)
        click.echo(f"dfxdp server: Neutron API on http://{host}:{port} (db {db_url})", err=True)
        # no access log (one record per request, dropped at level warning anyway, still built)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                    h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES)
