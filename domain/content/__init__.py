"""Message content: templates, masking, formats and the content rules every message obeys."""

from domain.content.config import InsurerContact
from domain.content.context import (
    DebitFailureDetail,
    MessageContext,
    Party,
    Recipient,
    ReinstatementQuote,
    Role,
    Variant,
    build_context,
    select_variant,
)
from domain.content.formats import format_amount, format_date
from domain.content.masking import (
    mask_card,
    mask_id_number,
    mask_policy_number,
    short_name,
    surname,
)
from domain.content.render import (
    RenderedMessage,
    TemplateSet,
    available_channels,
    check_message,
    default_templates,
    render_message,
    required_context,
)
from domain.content.rules import ContentRuleError, Violation, sms_segments
from domain.models import MessageKind

__all__ = [
    "ContentRuleError",
    "DebitFailureDetail",
    "InsurerContact",
    "MessageContext",
    "MessageKind",
    "Party",
    "Recipient",
    "ReinstatementQuote",
    "RenderedMessage",
    "Role",
    "TemplateSet",
    "Variant",
    "Violation",
    "available_channels",
    "build_context",
    "check_message",
    "default_templates",
    "format_amount",
    "format_date",
    "mask_card",
    "mask_id_number",
    "mask_policy_number",
    "render_message",
    "required_context",
    "select_variant",
    "short_name",
    "sms_segments",
    "surname",
]
