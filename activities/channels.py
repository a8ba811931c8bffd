"""What a channel sender must do, the errors it raises, the thread pool of the senders on a
provider's synchronous client, and the local outbox sender."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from activities.lookup import Lookup
from domain.models import Channel


class SendError(Exception):
    """A provider refused a message. `code` is the provider's error code, never personal data."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class PermanentSendError(SendError):
    """The message can never go this way (invalid number, unsubscribed, bounced address)."""


class TransientSendError(SendError):
    """Try again later: the provider did not take the message (rate limited, down, refused
    the connection), so sending it again cannot make a duplicate."""

    def __init__(self, code: str, message: str = "", retry_after: float | None = None):
        super().__init__(code, message)
        self.retry_after = retry_after


class UncertainSendError(SendError):
    """The request went out and no answer came back (read timeout, connection dropped):
    the provider may have the message. The record becomes 'unknown'; it is sent again
    only where the provider proves it never got it or drops a repeat (activities/delivery.py),
    otherwise a provider callback or an operator settles it."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "application/pdf"


@dataclass(frozen=True)
class Outgoing:
    notification_id: str
    channel: Channel
    address: str  # phone number, e-mail, WeChat openid, postal address line, or phone to call
    subject: str | None
    body: str
    fields: dict[str, str] | None
    # What providers may see instead of the notification id, which names policy and person.
    reference: str = ""
    template_id: str | None = None
    link: str | None = None  # where a WeChat message opens
    attachment: Attachment | None = None  # the PDF letter of a formal notice
    # For the senders that stay inside the company (agent tasks, print queue) only.
    policy_number: str = ""
    journey_id: str = ""
    recipient_id: str = ""
    addressee: str = ""  # the name on a paper letter's envelope


class Sender(Protocol):
    """`provider` names it in the records. What a sender may offer besides `send`, each
    used by the send path (activities/delivery.py) when present:
    - `idempotent = True`: sending the same notification id again cannot make a second
      message (our own queues), so an interrupted send is simply repeated;
    - `async def ready(message)`: awaited before the record says 'sending' (the rate
      limit; `message` is the message kind, which decides the priority);
    - `slot()`: an async context manager held around `send`, inside which the request
      leaves at once (a free client thread or connection): the record says 'sending'
      only inside it;
    - `async def lookup(message, *, since)`: whether the provider has a message whose send
      was interrupted (activities/lookup.py);
    - `safe_resend_within`: how long after a first attempt the provider drops a repeat."""

    provider: str

    async def send(self, message: Outgoing) -> str:
        """Hand the message to the provider and return the provider's message id."""
        ...


class ClientThreads:
    """For a sender on a provider's synchronous client: its requests run on `threads`
    threads, one `slot` per thread. A subclass gives `_send_blocking(message)` and
    `_lookup_blocking(message, since)`, run on those threads."""

    def __init__(self, threads: int, name: str):
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
        # One per thread: who holds one has a thread ready for its request (see `slot`).
        self._threads = asyncio.Semaphore(threads)

    def _send_blocking(self, message: Outgoing) -> str:
        raise NotImplementedError

    def _lookup_blocking(self, message: Outgoing, since: datetime | None) -> Lookup:
        raise NotImplementedError

    def slot(self) -> asyncio.Semaphore:
        """Held around `send`: once inside, a client thread is free, so the request leaves
        at once (the send activity records `sending` only then)."""
        return self._threads

    async def send(self, message: Outgoing) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._send_blocking, message)

    async def lookup(self, message: Outgoing, *, since: datetime | None = None) -> Lookup:
        """Whether the provider has `message`, asked after an interrupted send (see the
        subclass's `_lookup_blocking`). `since`: when our record said it was about to
        leave. Raises TransientSendError when the provider cannot be asked now."""
        loop = asyncio.get_running_loop()
        async with self._threads:  # never takes the thread of a send that holds a slot
            return await loop.run_in_executor(self._executor, self._lookup_blocking,
                                              message, since)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False)


class LocalOutbox:
    """Accepts every message and keeps it only in the notification records.

    The journey works end to end with it; the provider senders replace it per channel.
    """

    provider = "local-outbox"
    idempotent = True

    async def send(self, message: Outgoing) -> str:
        return f"local-{uuid.uuid5(uuid.NAMESPACE_URL, message.notification_id).hex[:20]}"
