"""The insurer's contact details that every message carries: configuration, not template text."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from domain.models import Model

# Characters of the opaque token at the end of a payment link (base32: 80 bits).
PAYMENT_TOKEN_LENGTH = 16


class InsurerContact(Model):
    """How customers reach the insurer. Defaults describe the fictional insurer 安泰人寿."""

    short_name: str = Field("安泰人寿", min_length=2, max_length=12)
    legal_name: str = Field("安泰人寿保险股份有限公司", min_length=2, max_length=40)
    service_department: str = "客户服务中心"
    hotline: str = Field("400-800-1234", pattern=r"^\d{3,4}(-\d{3,4}){1,2}$|^\d{5}$")
    online_service_url: str = Field("https://service.example-insurer.cn", pattern=r"^https://\S+$")
    # Said instead of the URL on the phone, where an address cannot be spoken.
    online_service_spoken: str = "安泰人寿微信公众号、官方网站"
    branch_address: str = "上海市浦东新区世纪大道100号安泰大厦一楼客户服务中心"
    branch_hours: str = "周一至周五9:00-17:00，法定节假日除外"
    payment_link_base: str = Field("https://pay.example-insurer.cn/p/", pattern=r"^https://\S+/$")
    sms_signature: str = Field("【安泰人寿】", pattern=r"^【[^】]{2,12}】$")
    # The letterhead logo and the company seal on formal letters (PNG or JPEG files);
    # unset: the sample insurer's, shipped with the letters.
    logo: Path | None = None
    seal: Path | None = None
