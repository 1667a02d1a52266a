"""``snf login``, ``snf logout``, ``snf cloud`` (the profiles of the config
file) and ``snf completion`` (the shell's completion script).

A login stores into one profile (``snfd.client.config``): ``--cloud`` (or
``$SNF_CLOUD``), else the ``--os-cloud`` entry's name, else the current
profile (``default`` when there is none); the profile becomes the current
one only when none is (``snf cloud use`` switches).  It logs in with a
password, a token, a ``clouds.yaml`` entry (``snfd.client.clouds_yaml``),
or through the browser with one of the cloud's login providers
(``--provider``: ``snfd.client.loopback``, RFC 8252 with PKCE).
"""

from __future__ import annotations

import os
import sys
import webbrowser
from typing import Any

import click

from snfd.cli.output import Column, show
from snfd.cli.snf_app import App, SnfGroup, fail, login_entry, pass_app
from snfd.client import clouds_yaml
from snfd.client import config as cfg
from snfd.client.loopback import LoopbackLogin
from snfd.client.pithos import (
    Login,
    login_code,
    login_password,
    login_token,
)

#: The shells ``snf completion`` writes a script for (click's).
SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.option("--url", help="the cloud's base URL (identity at URL/identity/v3)")
@click.option("--token", help="log in with this token")
@click.option("--user", "email", help="log in with this user's email and a password")
@click.option("--password", envvar="SNF_PASSWORD", help="the password (else prompted;"
              " or $SNF_PASSWORD)")
@click.option("--provider", help="log in through the browser with this login provider"
              " of the cloud (shibboleth, an OpenID Connect one's name ...)")
@click.option("--os-cloud", "os_cloud", help="log in as this clouds.yaml entry says")
@click.option("--cloud", "cloud_name", help="the profile to store into (default: --cloud"
              " of snf, else the --os-cloud name, else the current one)")
@click.option("--container", help="default container of remote paths")
@click.option("--no-browser", is_flag=True, help="--provider: only print the address to"
              " open")
@click.option("--timeout", type=click.IntRange(1), default=600, show_default=True,
              help="--provider: seconds to wait for the browser's login")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="--provider: listen on this port of 127.0.0.1 (default: a free one;"
              " e.g. one `ssh -L PORT:127.0.0.1:PORT` forwards)")
@pass_app
def login(app: App, url: str | None, token: str | None, email: str | None,
          password: str | None, provider: str | None, os_cloud: str | None,
          cloud_name: str | None, container: str | None, no_browser: bool,
          timeout: int, port: int) -> None:
    """Log in and store the token, the storage URL and the catalog in a
    profile of the config file.

    \b
    Examples:
      snf login --url https://cloud.example.org --user ann@example.org
      snf login --cloud work --url https://other.example.org --token TOKEN
      snf login --provider shibboleth        # opens a browser
      snf login --os-cloud devstack          # from clouds.yaml
    """
    if not (os_cloud or token or email or provider):
        os_cloud = app.os_cloud
    if sum(map(bool, (token, email, provider, os_cloud))) != 1:
        fail("give one of --user, --token, --provider or --os-cloud")
    name = cfg.check_name(app.profiles.selected(cloud_name or app.cloud_name or os_cloud))
    old = app.profiles.clouds.get(name) or cfg.Settings()
    if os_cloud:
        if url:
            fail("--url comes from clouds.yaml with --os-cloud")
        entry = clouds_yaml.find(os_cloud)
        url, email = entry.url, entry.username
        given = password
        found = login_entry(app.transport, entry, lambda: given if given is not None else
                            click.prompt(f"Password of {email} ({os_cloud})", hide_input=True))
    else:
        url = (url or old.url).rstrip("/")
        if not url:
            fail("give the cloud's URL with --url")
        if email:
            if password is None:
                password = click.prompt("Password", hide_input=True)
            found = login_password(app.transport, url, email, password or "")
        elif provider:
            found = _provider_login(app, url, provider, not no_browser, timeout, port)
        else:
            found = login_token(app.transport, url, token or "")
    s = cfg.Settings(url=url, token=found.token, user=found.user,
                     email=found.email or email or "", storage_url=found.storage_url,
                     endpoints=dict(found.endpoints), container=container or old.container)

    def store(profiles: cfg.Profiles) -> str:
        profiles.clouds[name] = s
        if not profiles.current:
            profiles.current = name
        return profiles.current

    path = app.config_path or cfg.default_path()
    current = cfg.update(store, path)
    click.echo(f"logged in as {s.email or s.user} ({s.user})")
    click.echo(f"storage: {s.storage_url}")
    click.echo(f"settings: {path} (cloud {name})")
    if current != name:
        click.echo(f"the current cloud is {current}: `snf cloud use {name}` switches,"
                   f" `snf --cloud {name} ...` uses it once", err=True)


def _provider_login(app: App, url: str, name: str, browser: bool, timeout: int,
                    port: int) -> Login:
    """Log in through the browser with the cloud's login provider ``name``
    (``oidc:NAME`` may be given as ``NAME``): the provider's login URL
    with a loopback ``next`` and a PKCE challenge, a one-shot listener
    there, then the one-time code it hands over exchanged with the
    verifier for the token, which is checked as ``--token`` would be."""
    listed = app.transport.request("GET", url + "/ui/providers",
                                   headers={"Accept": "application/json"}).json()
    offered = [p for p in (listed or {}).get("providers") or []
               if isinstance(p, dict) and p.get("kind") == "redirect"
               and isinstance(p.get("url"), str) and str(p["url"]).startswith("/")]
    chosen = next((p for p in offered if p.get("name") in (name, f"oidc:{name}")), None)
    if chosen is None:
        names = ", ".join(str(p.get("name")) for p in offered) or "none"
        fail(f"the cloud has no browser login {name!r} (it offers: {names})")
    try:
        listener: LoopbackLogin[Login] = LoopbackLogin(port=port)
    except OSError as e:
        fail(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}")
    try:
        address = listener.url(url, chosen["url"])
        click.echo("Log in through your browser at this address (snf waits for it):",
                   err=True)
        click.echo(f"  {address}", err=True)
        if browser:
            _open(address)
        verifier = listener.verifier
        return listener.wait(lambda code: login_code(app.transport, url, code, verifier),
                             timeout)
    finally:
        listener.close()


def _open(address: str) -> None:
    """Open ``address`` in a graphical browser, if there seems to be one
    (never a text browser in this terminal: it would hold it)."""
    if sys.platform.startswith("linux") and not any(
            os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")):
        return
    try:
        webbrowser.open(address)
    except Exception:
        pass


@click.command()
@pass_app
def logout(app: App) -> None:
    """Forget the stored token of the current cloud (or --cloud's); the
    other clouds keep theirs.

    \b
    Examples:
      snf logout
      snf --cloud lab logout
    """
    if app.os_cloud:
        fail("nothing is stored for --os-cloud")
    name = app.profile
    if name not in app.profiles.clouds:
        if app.cloud_name:
            fail(f"no cloud named {name!r}")
        return

    def forget(profiles: cfg.Profiles) -> None:
        if name in profiles.clouds:
            profiles.clouds[name].token = ""

    cfg.update(forget, app.config_path)


# -- profiles ---------------------------------------------------------------------------


@click.group(cls=SnfGroup)
def cloud() -> None:
    """The clouds (profiles) of the config file: list, use, remove.

    `snf login --cloud NAME ...` makes one; `snf --cloud NAME ...` (or
    $SNF_CLOUD) uses one for a command; `snf --os-cloud NAME ...` (or
    $OS_CLOUD) uses a clouds.yaml entry instead, storing nothing.
    """


@cloud.command("list")
@pass_app
def cloud_list(app: App) -> None:
    """List the clouds; * marks the current one.

    Example: snf cloud list
    """
    profiles = app.profiles
    rows = [{"name": name, "current": name == profiles.current, "url": s.url,
             "user": s.user, "email": s.email, "logged_in": bool(s.token)}
            for name, s in sorted(profiles.clouds.items())]
    show(app.json, rows, [
        Column("", lambda r: "*" if r["current"] else ""),
        Column("Name", "name"), Column("URL", "url"),
        Column("User", lambda r: r["email"] or r["user"]),
        Column("Logged in", lambda r: "yes" if r["logged_in"] else "no")],
        empty="no clouds: `snf login --url URL --user EMAIL` makes one")


@cloud.command("use")
@click.argument("name")
@pass_app
def cloud_use(app: App, name: str) -> None:
    """Make NAME the current cloud.

    Example: snf cloud use work
    """
    def change(profiles: cfg.Profiles) -> None:
        if name not in profiles.clouds:
            fail(f"no cloud named {name!r} (see `snf cloud list`)")
        profiles.current = name

    cfg.update(change, app.config_path)


@cloud.command("remove")
@click.argument("name")
@pass_app
def cloud_remove(app: App, name: str) -> None:
    """Remove the cloud NAME and its token from the config file.

    Example: snf cloud remove old
    """
    def change(profiles: cfg.Profiles) -> bool:
        if profiles.clouds.pop(name, None) is None:
            fail(f"no cloud named {name!r} (see `snf cloud list`)")
        if profiles.current != name:
            return False
        profiles.current = ""
        return True

    if cfg.update(change, app.config_path):
        click.echo(f"{name} was the current cloud: `snf cloud use NAME` picks another",
                   err=True)


# -- completion -------------------------------------------------------------------------


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script of SHELL (commands, options, choices).

    \b
    Examples:
      eval "$(snf completion bash)"                     # in ~/.bashrc
      eval "$(snf completion zsh)"                      # in ~/.zshrc
      snf completion fish > ~/.config/fish/completions/snf.fish
    """
    from click.shell_completion import get_completion_class

    kind = get_completion_class(shell)
    assert kind is not None
    root: Any = ctx.find_root().command
    click.echo(kind(root, {}, "snf", "_SNF_COMPLETE").source())


def register(cli: click.Group) -> None:
    """Add login, logout, cloud and completion to ``snf``."""
    for command in (login, logout, cloud, completion):
        cli.add_command(command)


__all__ = ["SHELLS", "register"]
