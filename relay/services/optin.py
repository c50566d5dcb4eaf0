"""Confirmed opt-in: one way in for admin, API and form; the confirmation mail; the confirmation."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from email.header import Header
from email.utils import format_datetime, formataddr, make_msgid
from functools import cache
from typing import TYPE_CHECKING

import jinja2

from filters.suppression import is_role_address
from relay.mail.addresses import AddressError, canonical_ip, normalize_address
from relay.mail.message import clean_line
from relay.crypto.tokens import Token, TokenError
from relay.base.windows import SlidingWindows, peer_key

if TYPE_CHECKING:
    from relay.config import ClientConfig, ListConfig
    from relay.runtime import Runtime

log = logging.getLogger("relay.optin")


API_FAILURES_PER_IP = 10     # wrong API tokens from one IP address ...
API_FAILURE_WINDOW = 600.0   # ... per this many seconds; then 429 until the oldest ages out


class SignupRefused(ValueError):
    """A sign-up the relay will not record; `field` names the input at fault (None: none is), `status` the HTTP code."""

    def __init__(self, reason: str, field: str | None = "email", status: int = 422):
        super().__init__(reason)
        self.field, self.status = field, status


@dataclass(frozen=True)
class SignupResult:
    address: str
    state: str              # pending / confirmed
    confirmation_mail: str  # sent / reminder / limit reached / not needed


def refuse_if_suspended(client: "ClientConfig", state: str | None = None) -> None:
    """A suspended client gets no new subscribers and no mail sent in its name, as SMTP refuses its mail.

    `state` is the client's current state (relay/accounts, from storage); without it, the config's."""
    state = state or client.state
    if state in ("suspended", "terminated"):
        raise SignupRefused(f"client {client.name} is {state}: it takes no sign-ups and sends no confirmation mail",
                            None, 403)


class Optin:
    """The opt-in side of one relay process."""

    def __init__(self, rt: "Runtime"):
        self.rt = rt
        self.by_ip = SlidingWindows(3600.0)
        self.by_client = SlidingWindows(3600.0)
        self.api_tokens: dict[bytes, str] = {}
        # each unknown API token costs one scrypt per client (~40 ms, 16 MiB) on the shared thread pool:
        # a peer that keeps sending wrong ones is refused before hashing, as SMTP AUTH throttles repeats
        self.api_failures = SlidingWindows(API_FAILURE_WINDOW)
        self.api_locks: dict[str, list] = {}  # peer → [lock, users]: locked-out peers' tokens, one at a time

    def check_rate(self, client: "ClientConfig", ip: str | None, channel: str = "form") -> None:
        """Sign-up budgets per address and per client, apart for the hosted form and the API: a visitor
        (or everyone behind one proxy) filling the form must not use up a client's API."""
        optin = self.rt.config.optin
        per_ip = optin.api_rate_per_ip_per_hour if channel == "api" else optin.rate_per_ip_per_hour
        if ip and not self.by_ip.allow(f"{channel} {peer_key(ip)}", per_ip):
            raise SignupRefused("too many sign-ups from this address; try again later", "ip", 429)
        if not self.by_client.allow(f"{channel} {client.name}", optin.rate_per_client_per_hour):
            raise SignupRefused("too many sign-ups for this sender; try again later", "list", 429)

    async def subscribe(self, client: "ClientConfig", mailing: "ListConfig", email: str, *, source: str,
                        ip: str | None, user_agent: str, channel: str, disclosure: str | None = None,
                        confirm_by_mail: bool = False) -> SignupResult:
        """Record a sign-up and, for a confirmed-opt-in list, send the confirmation request.

        Role and suppressed addresses are refused before anything is recorded or sent. A person who
        unsubscribed from this list must confirm by mail, whatever the list's setting, and so must
        every sign-up with `confirm_by_mail` (the hosted form: anyone can type anyone's address).
        """
        rt = self.rt
        refuse_if_suspended(client, rt.accounts.state_of(client))
        if mailing.transactional:
            raise SignupRefused(f"list {mailing.key} is transactional: nobody subscribes to it", "list")
        try:
            local, domain = normalize_address(email.strip())
        except AddressError as exc:
            raise SignupRefused(f"not a usable email address: {exc}") from None
        address = f"{local}@{domain}"
        if ip:
            try:
                ip = canonical_ip(ip)
            except ValueError:
                raise SignupRefused(f"ip {ip!r} is not an IP address", "ip") from None
        if is_role_address(local, rt.config.role_addresses):
            raise SignupRefused("role addresses (info@, sales@ ...) cannot subscribe")
        store = rt.store
        if await store.read(store.suppression_for, client.name, address, domain) is not None:
            raise SignupRefused("this address does not accept mail from this sender")
        unsubscribed = address in (await store.read(store.list_lookup, client.name, mailing.key, [address])).unsubscribed
        double = mailing.confirmed_opt_in or unsubscribed or confirm_by_mail
        now = rt.services.clock()
        outcome = await store.run(lambda: store.signup(
            client.name, mailing.key, address, source=clean_line(source)[:200], ip=ip,
            user_agent=clean_line(user_agent)[:300], disclosure=clean_line(disclosure or mailing.disclosure),
            channel=channel, at=now, double=double,
            window=timedelta(hours=rt.config.optin.resend_window_hours)))
        mail = "not needed"
        if double and outcome.state != "confirmed":  # (a confirmed record stays as it was: nothing to confirm)
            mail = "limit reached"
            if outcome.send_mail:
                fate = await self.send_confirmation(client, mailing, address, reminder=outcome.reminder)
                # "sent" only when the upstream took it: a deferred one is queued (issue 17)
                mail = fate if fate != "sent" else "reminder" if outcome.reminder else "sent"
        return SignupResult(address, outcome.state, mail)

    async def send_confirmation(self, client: "ClientConfig", mailing: "ListConfig", address: str,
                                reminder: bool = False, repermission: bool = False) -> str:
        rt = self.rt
        now = rt.services.clock()
        token = rt.tokens.issue("confirm", client.name, mailing.key, address, now)
        data = confirmation_mail(client, mailing, address, f"{rt.config.http.public_url}/c/{token}",
                                 now, reminder, repermission, rt.config.optin.pending_expiry_days)
        return await rt.deliver_notification(client, address, data, mail_from=client.confirm_from)

    def parse(self, token: str) -> tuple[Token, "ClientConfig", "ListConfig"]:
        parsed = self.rt.tokens.verify(token, "confirm", self.rt.services.clock())
        client = self.rt.config.clients.get(parsed.client)
        if client is None or parsed.list_key not in client.lists:
            raise TokenError("the list of this link no longer exists")
        return parsed, client, client.lists[parsed.list_key]

    async def confirm(self, token: str, ip: str | None, user_agent: str) -> tuple[str, "ClientConfig", "ListConfig"]:
        """Confirm from a /c/TOKEN POST; returns the store's outcome state."""
        parsed, client, mailing = self.parse(token)
        rt, store = self.rt, self.rt.store
        now = rt.services.clock()
        outcome = await store.run(lambda: store.confirm(
            client.name, mailing.key, parsed.recipient, token_issued_at=parsed.issued_at, at=now, ip=ip,
            user_agent=clean_line(user_agent)[:300], channel="confirm-link",
            expiry=timedelta(days=rt.config.optin.pending_expiry_days)))
        if outcome.state == "confirmed":
            # a confirmed re-subscription lifts the old list unsubscribe
            await store.run(store.suppress_remove, "list", client.name, mailing.key, parsed.recipient, "",
                            "confirm-link", now)
        return outcome.state, client, mailing


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("footer_templates", "."),
                              autoescape=jinja2.select_autoescape(["html", "html.j2"]))


def confirmation_mail(client: "ClientConfig", mailing: "ListConfig", address: str, link: str, now, reminder: bool,
                      repermission: bool, expiry_days: int) -> bytes:
    """The confirmation request as a complete multipart/alternative message (signed by the caller)."""
    values = {"company": clean_line(client.company), "list_name": clean_line(mailing.name), "link": link,
              "disclosure": clean_line(mailing.disclosure), "contact_email": client.contact_email,
              "postal_address": clean_line(client.postal_address), "reminder": reminder,
              "repermission": repermission, "expiry_days": expiry_days}
    env = _templates()
    text = env.get_template("confirm.txt.j2").render(values)
    html = env.get_template("confirm.html.j2").render(values)
    if repermission:
        subject = f"Do you still want {values['list_name']}?"
    elif reminder:
        subject = f"Reminder: please confirm your subscription to {values['list_name']}"
    else:
        subject = f"Please confirm your subscription to {values['list_name']}"
    if not subject.isascii():
        subject = Header(subject, "utf-8").encode()
    boundary = "=_confirm_" + make_msgid().strip("<>").split("@")[0].replace(".", "")
    domain = client.confirm_from.rpartition("@")[2]
    head = [
        f"From: {formataddr((values['company'], client.confirm_from), charset='utf-8')}",
        f"To: <{address}>",
        f"Subject: {subject}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid(domain=domain)}",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    parts = []
    for subtype, body in (("plain", text), ("html", html)):
        parts.append(f"--{boundary}\r\nContent-Type: text/{subtype}; charset=utf-8\r\n"
                     f"Content-Transfer-Encoding: 8bit\r\n\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n")
                     + "\r\n")
    return ("\r\n".join(head) + "\r\n\r\n" + "".join(parts) + f"--{boundary}--\r\n").encode("utf-8")
