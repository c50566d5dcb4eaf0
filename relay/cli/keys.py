"""Key and credential commands: `relay dkim keygen` and `relay client hash-password`."""
from __future__ import annotations

from pathlib import Path

import click

from relay.cli.context import CheckedGroup
from relay.mail.dkim import dns_record_line, generate_ed25519_key, generate_rsa_key, validate_name
from relay.crypto.passwords import hash_password

__all__ = ["dkim", "client"]

dkim = CheckedGroup("dkim", help="DKIM signing keys.")
client = CheckedGroup("client", help="Client (SMTP submission) credentials.")


@dkim.command("keygen")
@click.argument("domain")
@click.option("--selector", "-s", required=True, help="DKIM selector (the s= tag), e.g. s1.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the private key [default: keys/DOMAIN.SELECTOR.pem, or .ed25519.pem].")
@click.option("--ed25519", "use_ed25519", is_flag=True, help="Make an Ed25519 key (RFC 8463) instead of RSA-2048.")
def keygen(domain: str, selector: str, out: Path | None, use_ed25519: bool) -> None:
    """Create a DKIM private key for DOMAIN and print the DNS TXT record to publish."""
    try:
        domain = validate_name(domain.rstrip(".").lower(), "domain")
        selector = validate_name(selector, "selector")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if out is None:
        out = Path("keys") / f"{domain}.{selector}{'.ed25519' if use_ed25519 else ''}.pem"
    if out.exists():
        raise click.ClickException(f"{out} already exists; refusing to overwrite it (remove it or use --out)")
    try:
        key = generate_ed25519_key(out) if use_ed25519 else generate_rsa_key(out)
    except FileExistsError:
        raise click.ClickException(f"{out} already exists; refusing to overwrite it (remove it or use --out)") from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from None
    kind = "Ed25519" if use_ed25519 else "RSA-2048"
    click.echo(f"Wrote {kind} DKIM private key to {out} (mode 0600).")
    click.echo("Publish this DNS TXT record:")
    click.echo(dns_record_line(domain, selector, key))
    if use_ed25519:
        # the relay's own default for the Ed25519 selector is "<RSA selector>-ed25519": naming
        # the one this record is for keeps the signatures and the record in step
        click.echo(f'In the client\'s dkim table: ed25519_key_file = "{out}", ed25519_selector = "{selector}"')


@dkim.command("record")
@click.argument("keyfile", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--domain", help="the signing domain [default: from the file name DOMAIN.SELECTOR.pem]")
@click.option("--selector", "-s", help="the selector [default: from the file name DOMAIN.SELECTOR.pem]")
def record(keyfile: Path, domain: str | None, selector: str | None) -> None:
    """Print the DNS TXT record of an existing private key (RSA or Ed25519)."""
    from relay.mail.dkim import load_private_key

    name = keyfile.name.removesuffix(".pem").removesuffix(".ed25519")
    guessed_domain, _, guessed_selector = name.rpartition(".")
    domain, selector = domain or guessed_domain, selector or guessed_selector
    if not domain or not selector or "." not in domain:
        raise click.ClickException(f"cannot tell the domain and selector from {keyfile.name}: "
                                   "give --domain and --selector")
    try:
        key = load_private_key(keyfile)
        line = dns_record_line(validate_name(domain.rstrip(".").lower(), "domain"), validate_name(selector, "selector"),
                               key)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(line)


@client.command("hash-password")
def hash_password_cmd() -> None:
    """Read a password (first line of stdin) and print its scrypt hash for the client config."""
    stdin = click.get_text_stream("stdin")
    if stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True,
                                default="", show_default=False)
    else:
        line = stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
    if not password:
        raise click.ClickException("empty password; refusing to hash it")
    click.echo(hash_password(password))

