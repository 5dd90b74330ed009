"""Email templates: a subject, a plain-text part and an HTML part for each kind."""

from __future__ import annotations

import dataclasses
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import jinja2

from payhook_shared.addresses import header_text
from payhook_shared.logs import mask_phone
from payhook_shared.money import format_amount


def _money(minor: int | None, currency: str | None) -> str:
    if minor is None or not currency:
        return "-"
    return f"{currency} {format_amount(minor, currency):,}"


def environment() -> jinja2.Environment:
    """The template environment, HTML-escaping everything by default."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("payhook_mail", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["money"] = _money
    env.filters["mask_phone"] = lambda v: mask_phone(v) if v else ""
    return env


@dataclasses.dataclass
class Rendered:
    subject: str
    text: str
    html: str


def render(env: jinja2.Environment, template: str, context: dict[str, Any]) -> Rendered:
    """Render one kind of email; the subject on one clean line, whatever the context's values hold."""
    # Callback fields (a receipt number, a merchant's name) reach the subject: CR/LF there would be a header.
    subject = header_text(env.get_template(f"{template}.subject.txt").render(context))
    text = env.get_template(f"{template}.txt").render(context)
    html = env.get_template(f"{template}.html").render({**context, "subject": subject})
    return Rendered(subject, text, html)


def build(rendered: Rendered, *, sender: str, recipients: list[str], message_id: str) -> EmailMessage:
    """A MIME message with both parts; ``message_id`` is stable across retries."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message
