"""``podium secrets``: provider credentials in the encrypted store (``access.secrets.path``).

Values are read from standard input or a hidden prompt, never from the command line, where
they would land in shell history and in every process listing.
"""

from __future__ import annotations

import os
import sys

import click

from podium.commands._access import CONFIG_OPTION, audit_log, load
from podium.config import PodiumConfig
from podium.policy.audit import cli_actor
from podium.policy.secrets import (
    EncryptedSecrets,
    SecretStoreError,
    check_name,
    generate_master_key,
)


def _store(config: PodiumConfig) -> EncryptedSecrets:
    settings = config.access.secrets
    master = os.environ.get(settings.master_key_env)
    if not master:
        raise click.ClickException(
            f"${settings.master_key_env} is not set: the secret store is encrypted with it. "
            "Make a master key with `podium secrets generate-key` and export it."
        )
    try:
        return EncryptedSecrets(config.access.secrets_path(config.resolved_data_dir()), master)
    except SecretStoreError as error:
        raise click.ClickException(str(error)) from None


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value: str = click.prompt(f"value for {name}", hide_input=True, confirmation_prompt=True)
        return value
    return sys.stdin.read().rstrip("\r\n")


def register(main: click.Group) -> None:
    @main.group()
    def secrets() -> None:
        """Provider keys, encrypted at rest with $PODIUM_MASTER_KEY.

        Workers name a credential by variable (api_key_env: OPENAI_API_KEY); the gateway looks
        in its environment first, then in this store.
        """

    @secrets.command("set")
    @CONFIG_OPTION
    @click.argument("name")
    def set_secret(config_path: str | None, name: str) -> None:
        """Store NAME; its value comes from stdin (or a hidden prompt)."""
        config = load(config_path)
        try:
            check_name(name)
            store = _store(config)
            existed = name in store.names()
            store.set(name, _read_value(name))
        except SecretStoreError as error:
            raise click.ClickException(str(error)) from None
        audit_log(config).append(
            cli_actor(), "secrets.set", f"secret:{name}", {"replaced": existed}
        )
        click.echo(f"{'replaced' if existed else 'stored'} {name} in {store.path}", err=True)

    @secrets.command("ls")
    @CONFIG_OPTION
    def list_secrets(config_path: str | None) -> None:
        """The names in the store (never the values)."""
        try:
            names = _store(load(config_path)).names()
        except SecretStoreError as error:
            raise click.ClickException(str(error)) from None
        for name in names:
            click.echo(name)

    @secrets.command("rm")
    @CONFIG_OPTION
    @click.argument("name")
    def remove_secret(config_path: str | None, name: str) -> None:
        """Remove NAME from the store."""
        config = load(config_path)
        try:
            removed = _store(config).remove(name)
        except SecretStoreError as error:
            raise click.ClickException(str(error)) from None
        if not removed:
            raise click.ClickException(f"no secret named {name!r} in the store")
        audit_log(config).append(cli_actor(), "secrets.rm", f"secret:{name}", {})
        click.echo(f"removed {name}", err=True)

    @secrets.command("generate-key")
    def generate_key() -> None:
        """Print a new random master key (export it as $PODIUM_MASTER_KEY)."""
        click.echo(generate_master_key())
