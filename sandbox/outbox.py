"""What the sandbox providers accepted, kept in memory, and the pages a person opens to
read it: per recipient and per policy, letters downloadable, calls with their script."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

Describe = Callable[[list[str]], Awaitable[dict[str, str]]]
"""Maps provider references to policy numbers (from the notification records), if known."""


@dataclass
class StoredAttachment:
    filename: str
    content: bytes
    mime_type: str


@dataclass
class OutboxEntry:
    id: str  # the provider's message id (SM..., CA..., X-Message-Id, msgid)
    api: str  # sms, voice, email, wechat, wecom
    to: str
    sender: str
    body: str  # SMS text, the call's spoken script, the e-mail text, WeChat fields as lines
    subject: str | None = None
    fields: dict[str, str] | None = None
    link: str | None = None
    twiml: str | None = None
    attachments: list[StoredAttachment] = field(default_factory=list)
    ref: str | None = None  # the opaque reference from the callback URL or custom args
    args: dict[str, str] = field(default_factory=dict)  # an e-mail's custom arguments
    keys: list[tuple[str, str]] = field(default_factory=list)  # a call: key, what it got
    callback_url: str | None = None
    status: str = "accepted"
    error_code: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    history: list[tuple[datetime, str]] = field(default_factory=list)

    def set_status(self, status: str, error_code: str | None = None) -> None:
        self.status = status
        self.error_code = error_code or self.error_code
        self.history.append((datetime.now(UTC), status))

    def summary(self) -> dict:
        return {"id": self.id, "api": self.api, "to": self.to, "subject": self.subject,
                "body": self.body, "fields": self.fields, "status": self.status,
                "error_code": self.error_code, "ref": self.ref, "at": self.at.isoformat(),
                "keys": [{"key": k, "answer": a} for k, a in self.keys],
                "attachments": [a.filename for a in self.attachments]}


class Outbox:
    def __init__(self) -> None:
        self.entries: list[OutboxEntry] = []
        self._by_id: dict[str, OutboxEntry] = {}

    def add(self, entry: OutboxEntry) -> OutboxEntry:
        self.entries.append(entry)
        self._by_id[entry.id] = entry
        return entry

    def get(self, entry_id: str) -> OutboxEntry | None:
        return self._by_id.get(entry_id)

    def to(self, recipient: str) -> list[OutboxEntry]:
        return [e for e in self.entries if e.to == recipient]

    def clear(self) -> None:
        self.entries.clear()
        self._by_id.clear()


# --- pages --------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.3em .8em;
text-align:left;vertical-align:top}.msg{border:1px solid #ccc;border-radius:6px;padding:.8em;
margin:.8em 0}.meta{color:#666;font-size:.9em}.body{white-space:pre-wrap}.failed{color:#b00}
code{background:#f4f4f4;padding:0 .3em}
"""
_API_NAMES = {"sms": "SMS", "voice": "Voice call", "email": "E-mail", "wechat": "WeChat",
              "wecom": "WeCom"}
_FAILED = {"failed", "undelivered", "bounce", "busy", "no-answer", "refused"}


def page(title: str, content: str) -> str:
    return (f"<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<p class='meta'><a href='/outbox'>Sandbox outbox</a></p><h1>{escape(title)}</h1>"
            f"{content}</body></html>")


def index_page(outbox: Outbox, policies: dict[str, str]) -> str:
    """Every recipient, and every policy the records know, with counts per channel."""
    by_to: dict[str, list[OutboxEntry]] = {}
    by_policy: dict[str, list[OutboxEntry]] = {}
    for e in outbox.entries:
        by_to.setdefault(e.to, []).append(e)
        if e.ref and e.ref in policies:
            by_policy.setdefault(policies[e.ref], []).append(e)

    def rows(groups: dict[str, list[OutboxEntry]], href: str) -> str:
        out = []
        for key, entries in sorted(groups.items()):
            counts = ", ".join(f"{_API_NAMES[a]} {sum(1 for e in entries if e.api == a)}"
                               for a in _API_NAMES if any(e.api == a for e in entries))
            out.append(f"<tr><td><a href='{href}{quote(key, safe='')}'>{escape(key)}</a></td>"
                       f"<td>{counts}</td><td>{entries[-1].at:%Y-%m-%d %H:%M:%S}</td></tr>")
        return "".join(out) or "<tr><td colspan=3>nothing yet</td></tr>"

    head = "<tr><th>{}</th><th>messages</th><th>last</th></tr>"
    policy_part = (f"<h2>By policy</h2><table>{head.format('policy')}"
                   f"{rows(by_policy, '/outbox/policy/')}</table>" if policies else "")
    return page("Sandbox outbox", f"<p>{len(outbox.entries)} messages accepted. JSON: "
                f"<a href='/sandbox/messages'>/sandbox/messages</a>; failure injection: "
                f"<a href='/sandbox/faults'>/sandbox/faults</a>; keys callees press: "
                f"<a href='/sandbox/callees'>/sandbox/callees</a>.</p>{policy_part}"
                f"<h2>By recipient</h2><table>{head.format('recipient')}"
                f"{rows(by_to, '/outbox/to/')}</table>")


def messages_page(title: str, entries: list[OutboxEntry]) -> str:
    parts = []
    for e in reversed(entries):
        css = " failed" if e.status in _FAILED else ""
        extra = ""
        if e.subject:
            extra += f"<p><b>Subject:</b> {escape(e.subject)}</p>"
        if e.fields:
            extra += "<table>" + "".join(f"<tr><td><code>{escape(k)}</code></td>"
                                         f"<td>{escape(v)}</td></tr>"
                                         for k, v in e.fields.items()) + "</table>"
        for i, a in enumerate(e.attachments):
            extra += (f"<p>Attachment: <a href='/outbox/attachment/{quote(e.id, safe='')}/{i}'>"
                      f"{escape(a.filename)}</a> ({len(a.content):,} bytes)</p>")
        for key, answer in e.keys:
            extra += f"<p>Pressed <b>{escape(key)}</b>: {escape(answer)}</p>"
        label = "Script spoken" if e.api == "voice" else "Text"
        history = " → ".join(escape(s) for _, s in e.history)
        parts.append(
            f"<div class='msg'><p class='meta'>{_API_NAMES[e.api]} <code>{escape(e.id)}</code> "
            f"to {escape(e.to)} at {e.at:%Y-%m-%d %H:%M:%S} UTC · status "
            f"<b class='{css.strip()}'>{escape(e.status)}</b>"
            f"{' (' + escape(e.error_code) + ')' if e.error_code else ''} · {history}</p>"
            f"{extra}<p><b>{label}:</b></p><div class='body'>{escape(e.body)}</div></div>")
    return page(title, "".join(parts) or "<p>No messages.</p>")
