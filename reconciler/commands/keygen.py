"""`dsr keygen`: print a new random key for `identity.key` or `audit.key` (32 random bytes,
URL-safe base64). Only the key goes to stdout, so it can be piped into a secret store; the
README's "Keys" section says how to rotate one."""

from __future__ import annotations

import secrets

import click


@click.command("keygen")
def command() -> None:
    """Print a new random key (32 bytes, URL-safe base64) for dsr.yaml's identity or audit key."""
    click.echo(secrets.token_urlsafe(32))
