"""`dfxdp server`: the Neutron-compatible API on an NB database."""
from __future__ import annotations

import click

from dfxdp.nb.db import DEFAULT_URL

from .options import parse_listen, read_config


def build_app(db_url: str, auth_token: str | None):
    """The ASGI app on the NB store at db_url (raises StoreError on a bad URL)."""
    from dfxdp.api.app import create_app
    from dfxdp.nb.db import open_store
    from dfxdp.nb.service import NBService

    return create_app(NBService(open_store(db_url)), auth_token=auth_token)


def register(group: click.Group) -> None:
    @group.command("server")
    @click.option("--db", "db_url", default=None, help=f"NB database URL (default {DEFAULT_URL}).")
    @click.option("--listen", default=None, help="HOST:PORT to serve on (default 127.0.0.1:9696).")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                  help="INI file: [api] listen, auth_token; [db] url.")
    @click.option("--auth-token", envvar="DFXDP_AUTH_TOKEN", default=None,
                  help="Require this X-Auth-Token on every request (env DFXDP_AUTH_TOKEN).")
    def server(db_url, listen, config_path, auth_token) -> None:
        """Serve the Neutron API v2.0 (and Octavia v2) on the NB database."""
        import uvicorn

        from dfxdp.nb.db import StoreError

        config = read_config(config_path)
        db_url = db_url or config.get("db", "url", fallback=DEFAULT_URL)
        host, port = parse_listen(listen or config.get("api", "listen", fallback="127.0.0.1:9696"))
        auth_token = auth_token or config.get("api", "auth_token", fallback=None) or None
        try:
            app = build_app(db_url, auth_token)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"dfxdp server: Neutron API on http://{host}:{port} (db {db_url})", err=True)
        uvicorn.run(app, host=host, port=port, log_level="warning")
