"""Sandbox providers: Twilio, SendGrid and WeChat as one local HTTP server (CONTRACT.md)."""

from sandbox.faults import DEFAULT_FAULTS, Fault, Faults
from sandbox.server import (
    SENDGRID_API_KEY,
    SENDGRID_FROM,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_FROM_NUMBER,
    WECHAT_APP_ID,
    WECHAT_APP_SECRET,
    Sandbox,
)

__all__ = [
    "DEFAULT_FAULTS",
    "SENDGRID_API_KEY",
    "SENDGRID_FROM",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM_NUMBER",
    "WECHAT_APP_ID",
    "WECHAT_APP_SECRET",
    "Fault",
    "Faults",
    "Sandbox",
]
