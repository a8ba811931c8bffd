"""E-mail on SendGrid's own client, with the formal notice attached as a PDF letter."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import urllib.error
from datetime import UTC, datetime, timedelta

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Attachment,
    Category,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    From,
    HtmlContent,
    Mail,
    PlainTextContent,
    Subject,
    To,
)

from activities.channels import (
    ClientThreads,
    Outgoing,
    PermanentSendError,
    SendError,
    TransientSendError,
    UncertainSendError,
)
from activities.lookup import CANNOT_TELL, NOT_FOUND, Lookup

# python_http_client logs the payload and the Authorization header at DEBUG.
logging.getLogger("python_http_client").setLevel(logging.WARNING)

REFERENCE_ARG = "ref"  # the custom argument that comes back in every Event Webhook event
_REFERENCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# How long the Email Activity feed may take to show an accepted message.
ACTIVITY_DELAY = timedelta(minutes=15)


def classify_sendgrid_error(err: HTTPError) -> SendError:
    status = int(err.status_code)
    headers = err.headers or {}
    if status == 429:
        retry = headers.get("Retry-After") or headers.get("X-RateLimit-Reset-After")
        try:
            seconds = float(retry) if retry else None
        except ValueError:
            seconds = None
        return TransientSendError("429", "rate limited", seconds)
    if status >= 500:
        return TransientSendError(str(status), "provider error")
    if status in (401, 403):
        return TransientSendError(str(status), "authentication failed: check SENDGRID_* settings")
    # A malformed request stays malformed: the body names the field, never echoed here.
    return PermanentSendError(str(status), "request refused")


def _html(text: str) -> str:
    from html import escape

    paragraphs = text.strip().split("\n\n")
    return "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)


class SendGridEmail(ClientThreads):
    provider = "sendgrid"

    def __init__(self, api_key: str, from_email: str, *, host: str | None = None,
                 from_name: str | None = None, timeout: float = 10.0, threads: int = 8):
        self._api_key = api_key
        self._from = From(from_email, from_name)
        self._host = host
        self._timeout = timeout
        super().__init__(threads, "sendgrid")

    def mail(self, message: Outgoing) -> Mail:
        mail = Mail(from_email=self._from, to_emails=To(message.address),
                    subject=Subject(message.subject or ""),
                    plain_text_content=PlainTextContent(message.body),
                    html_content=HtmlContent(_html(message.body)))
        # Metadata SendGrid keeps: the opaque reference and the template, nothing personal.
        mail.custom_arg = CustomArg(REFERENCE_ARG, message.reference)
        if message.template_id:
            mail.category = Category(message.template_id)
        if message.attachment is not None:
            a = message.attachment
            mail.attachment = Attachment(
                FileContent(base64.b64encode(a.content).decode()), FileName(a.filename),
                FileType(a.mime_type), Disposition("attachment"))
        return mail

    def _api(self) -> SendGridAPIClient:
        client = SendGridAPIClient(self._api_key, **({"host": self._host} if self._host else {}))
        client.client.timeout = self._timeout
        return client

    def _send_blocking(self, message: Outgoing) -> str:
        client = self._api()
        try:
            response = client.send(self.mail(message))
        except HTTPError as err:
            raise classify_sendgrid_error(err) from None
        except urllib.error.URLError:
            # Raised while connecting: nothing went out.
            raise TransientSendError("connect_failed", "provider not reachable") from None
        except (TimeoutError, ConnectionError, http.client.HTTPException):
            raise UncertainSendError("timeout", "no answer after the request went out") from None
        message_id = response.headers.get("X-Message-Id")
        if not message_id:
            raise UncertainSendError("no_message_id", f"accepted ({response.status_code}) "
                                                      "without a message id")
        return message_id

    def _lookup_blocking(self, message: Outgoing, since: datetime | None) -> Lookup:
        """Whether SendGrid has `message`, by its reference in the Email Activity API (a
        paid add-on; without it SendGrid cannot tell). A message not found is proven
        missing only once the feed has had ACTIVITY_DELAY since `since` to show it."""
        if not _REFERENCE.match(message.reference):
            return CANNOT_TELL  # nothing we could have given SendGrid to find it by
        query = f"unique_args['{REFERENCE_ARG}']=\"{message.reference}\""
        try:
            response = self._api().client.messages.get(
                query_params={"query": query, "limit": 10})
            found = json.loads(response.body or b"{}").get("messages") or []
        except HTTPError as err:
            if int(err.status_code) in (401, 403, 404):
                # No Email Activity add-on, or the key lacks its scope: SendGrid cannot tell.
                return CANNOT_TELL
            raise classify_sendgrid_error(err) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException,
                ValueError, AttributeError):
            raise TransientSendError("lookup_failed", "no answer to the look-up") from None
        if found:
            # Email Activity's msg_id is the X-Message-Id we keep, then SendGrid's suffix.
            return Lookup(found=True, provider_id=str(found[0].get("msg_id", "")).split(".")[0])
        settled = since is not None and datetime.now(UTC) - since > ACTIVITY_DELAY
        return NOT_FOUND if settled else CANNOT_TELL
