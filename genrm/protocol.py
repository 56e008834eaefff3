"""The evaluation protocol: judge prompt, question rendering, verdict parsing.

Everything here is a pure function or a named constant. The prompt file is a
byte-for-byte copy of the published Skywork-Critic pairwise prompt; a test
compares it with ``shared/protocol/pairwise_critic_prompt.txt``.
"""

from __future__ import annotations

import re
from importlib import resources

PROMPT_TEMPLATE: str = (
    resources.files("genrm").joinpath("resources/pairwise_critic_prompt.txt").read_text(encoding="utf-8")
)
VERDICT_A = "[[A]]"
VERDICT_B = "[[B]]"
_VERDICT_RE = re.compile(r"\[\[(A|B)\]\]")
_PLACEHOLDER_RE = re.compile(r"\{(question|response_a|response_b)\}")


def render_question(messages: list[dict]) -> str:
    """Render the conversation before the final answer as the judge's question.

    One message renders as its content; longer conversations render every
    message as ``<turn>{role}\\n{content}\\n``, concatenated.
    """
    if len(messages) == 1:
        return messages[0]["content"]
    return "".join(f"<turn>{m['role']}\n{m['content']}\n" for m in messages)


def render_judge_prompt(question: str, response_a: str, response_b: str) -> str:
    """Fill the judge template in one pass over the template: inserted text is never
    scanned again, so answers may contain braces or even the placeholder names."""
    values = {"question": question, "response_a": response_a, "response_b": response_b}
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], PROMPT_TEMPLATE)


def judge_messages(question: str, response_a: str, response_b: str) -> list[dict]:
    """The judge prompt as the single user message the protocol sends."""
    return [{"role": "user", "content": render_judge_prompt(question, response_a, response_b)}]


def parse_verdict(text: str) -> str | None:
    """The last ``[[A]]`` or ``[[B]]`` in ``text`` ("A" or "B"), or None if there is none.

    The last one wins: a judge that restates the format line before deciding
    must not be read as choosing A.
    """
    matches = _VERDICT_RE.findall(text)
    return matches[-1] if matches else None


def order_score(verdict: str | None, chosen_position: str) -> float:
    """1 if the verdict picks the chosen answer, 0 if the rejected one, 0.5 if unparsed."""
    if verdict is None:
        return 0.5
    return 1.0 if verdict == chosen_position else 0.0


def example_score(verdict_chosen_a: str | None, verdict_chosen_b: str | None) -> float:
    """Mean of the two orders: chosen shown as A, then chosen shown as B."""
    return (order_score(verdict_chosen_a, "A") + order_score(verdict_chosen_b, "B")) / 2


def bradley_terry_score(reward_chosen: float, reward_rejected: float) -> float:
    """Classifier rows: chosen wins when its reward is higher; equal rewards count 0.5."""
    if reward_chosen > reward_rejected:
        return 1.0
    if reward_chosen < reward_rejected:
        return 0.0
    return 0.5
