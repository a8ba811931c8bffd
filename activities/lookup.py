"""What a provider says when asked whether it has a message whose send was interrupted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

# Provider clocks and ours differ: a message is looked for from this long before the
# moment our record says it was about to leave.
CLOCK_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class Lookup:
    """`found`: True, the provider has the message (`provider_id` is its id); False, the
    provider proves it never got it (safe to send again); None, the provider cannot tell
    (keep it `unknown`, ask again later or open a review)."""

    found: bool | None
    provider_id: str | None = None


CANNOT_TELL = Lookup(found=None)
NOT_FOUND = Lookup(found=False)
