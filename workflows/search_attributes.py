"""The search attributes as the workflow imports them: defined once in contract.py.

Kept so that `from workflows import search_attributes as sa` in the workflow keeps working;
new code imports the keys from `contract`.
"""

from temporalio import workflow

# contract.py imports the domain's pydantic models: pass them through the sandbox.
with workflow.unsafe.imports_passed_through():
    from contract import (
        CUSTOMER_SEGMENT,
        GRACE_ENDS_AT,
        LAPSE_OUTCOME,
        LAPSE_STAGE,
        LAPSE_TRIGGER,
        NEXT_REMINDER_AT,
        OUTSTANDING_AMOUNT,
        POLICY_NUMBER,
        PRODUCT_KIND,
    )
    from contract import SEARCH_ATTRIBUTES as ALL

__all__ = ["ALL", "CUSTOMER_SEGMENT", "GRACE_ENDS_AT", "LAPSE_OUTCOME", "LAPSE_STAGE",
           "LAPSE_TRIGGER", "NEXT_REMINDER_AT", "OUTSTANDING_AMOUNT", "POLICY_NUMBER",
           "PRODUCT_KIND"]
