"""Sandbox providers: Twilio, SendGrid, WeChat and WeCom as one local HTTP server
(CONTRACT.md)."""

from sandbox.callees import Callee
from sandbox.faults import DEFAULT_FAULTS, Fault, Faults
from sandbox.sendgrid_api import SENDGRID_API_KEY, SENDGRID_FROM
from sandbox.server import Sandbox
from sandbox.twilio_api import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER
from sandbox.wechat_api import WECHAT_APP_ID, WECHAT_APP_SECRET, WECHAT_TOKEN
from sandbox.wecom_api import WECOM_AGENT_ID, WECOM_CORP_ID, WECOM_SECRET

__all__ = [
    "Callee",
    "DEFAULT_FAULTS",
    "SENDGRID_API_KEY",
    "SENDGRID_FROM",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM_NUMBER",
    "WECHAT_APP_ID",
    "WECHAT_APP_SECRET",
    "WECHAT_TOKEN",
    "WECOM_AGENT_ID",
    "WECOM_CORP_ID",
    "WECOM_SECRET",
    "Fault",
    "Faults",
    "Sandbox",
]
