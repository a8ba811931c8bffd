"""The words for a policy's state, one meaning each, used by every template and checked.

中止 and 终止 differ by one character and mean opposite things to a customer: a suspended
policy can come back, an ended one cannot. Templates take the state words from `words()`
and the `glossary` rule refuses a message that uses a word outside its meaning.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Term(NamedTuple):
    word: str
    meaning: str


GLOSSARY: dict[str, Term] = {
    "suspended": Term("中止", "a long-term policy's cover is suspended after its lapse; "
                              "reinstatement can restore it"),
    "lapsed": Term("失效", "a long-term policy lapsed at the end of grace: its effect is "
                           "suspended (中止), not ended"),
    "reinstate": Term("复效", "restoring a lapsed long-term policy within the reinstatement "
                              "period"),
    "ended": Term("终止", "ended for good: a short-term product not renewed, or a lapsed "
                          "policy whose reinstatement period is over"),
    "rescinded": Term("解除", "the insurer rescinds the contract (Insurance Law art. 16)"),
}

_SENTENCE = re.compile(r"[^。；！？\n]+")
# 终止 in a long-term message is only ever about the reinstatement period running out.
_WINDOW_OVER = ("复效期限", "复效期内", "复效截止")


def words(short_term: bool) -> dict[str, str]:
    """The state words a template prints: `stop` is what happens to the cover when the
    premium stays unpaid (suspended for long-term products, ended for short-term ones)."""
    g = {key: term.word for key, term in GLOSSARY.items()}
    return {**g, "stop": g["ended"] if short_term else g["suspended"]}


def misused_terms(text: str, *, short_term: bool, rescission: bool) -> list[str]:
    """The glossary words `text` uses against their meaning, for the kind of policy."""
    g = GLOSSARY
    if rescission or short_term:
        # Nothing to reinstate: the cover ended (short-term) or the contract was rescinded.
        wrong = [g["suspended"].word, g["lapsed"].word, g["reinstate"].word]
        return [w for w in wrong if w in text]
    ended = g["ended"].word
    return [ended for sentence in _SENTENCE.findall(text)
            if ended in sentence and not any(p in sentence for p in _WINDOW_OVER)][:1]
