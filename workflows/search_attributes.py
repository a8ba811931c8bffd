"""The search attributes of CONTRACT.md, typed, for the workflow and for registration."""

from temporalio.common import SearchAttributeKey

POLICY_NUMBER = SearchAttributeKey.for_keyword("PolicyNumber")
LAPSE_STAGE = SearchAttributeKey.for_keyword("LapseStage")
LAPSE_TRIGGER = SearchAttributeKey.for_keyword("LapseTrigger")
PRODUCT_KIND = SearchAttributeKey.for_keyword("ProductKind")
CUSTOMER_SEGMENT = SearchAttributeKey.for_keyword_list("CustomerSegment")
GRACE_ENDS_AT = SearchAttributeKey.for_datetime("GraceEndsAt")
NEXT_REMINDER_AT = SearchAttributeKey.for_datetime("NextReminderAt")
OUTSTANDING_AMOUNT = SearchAttributeKey.for_float("OutstandingAmount")
# The outcome of a closed journey (CONTRACT.md, Additions): paid, reinstated, ...
LAPSE_OUTCOME = SearchAttributeKey.for_keyword("LapseOutcome")

ALL = (POLICY_NUMBER, LAPSE_STAGE, LAPSE_TRIGGER, PRODUCT_KIND, CUSTOMER_SEGMENT,
       GRACE_ENDS_AT, NEXT_REMINDER_AT, OUTSTANDING_AMOUNT, LAPSE_OUTCOME)
