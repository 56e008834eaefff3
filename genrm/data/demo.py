"""The embedded demo's data: generated deterministically, small, and learnable.

The rule a tiny transformer can learn in minutes: a good answer uses words of
quality ("clear", "correct", ...), a bad one words of the opposite kind.
Length, position and topic carry no signal. The preference set mixes in
multi-turn conversations and a few malformed rows of every kind, so the
demo exercises the validity filter and its counts. The evaluation set uses
all 23 RewardBench subset names, so every section exists.
"""

from __future__ import annotations

import random

from genrm.protocol import SUBSETS

NOUNS = ("garden", "river", "engine", "recipe", "budget", "poem", "bridge", "planet", "song", "market",
         "lesson", "castle", "forest", "robot", "letter", "island", "camera", "puzzle", "kitchen", "rocket")
VERBS = ("build", "clean", "explain", "plan", "draw", "fix", "describe", "improve", "measure", "paint")
GOOD = ("clear", "correct", "helpful", "precise", "accurate", "thorough", "honest", "useful", "careful", "relevant")
BAD = ("wrong", "vague", "rude", "sloppy", "false", "useless", "confusing", "careless", "lazy", "misleading")
FILLER = ("the", "a", "it", "is", "and", "so", "this", "very", "quite", "with", "for", "of", "here", "step")
QUESTIONS = ("Tell me about the {n}.", "How do I {v} a {n}?", "Can you {v} the {n} for me?",
             "What should I know about the {n}?", "Please {v} my {n}.")


def _question(rng: random.Random) -> str:
    return rng.choice(QUESTIONS).format(n=rng.choice(NOUNS), v=rng.choice(VERBS))


def _answer(rng: random.Random, quality: tuple[str, ...], noun: str) -> str:
    """Two to four quality words among a few filler words, and always one at the end."""
    filler = [rng.choice(FILLER) for _ in range(rng.randint(0, 3))]
    words = filler + [rng.choice(quality) for _ in range(rng.randint(1, 3))]
    rng.shuffle(words)
    return f"The {noun} answer: " + " ".join(words) + " " + rng.choice(quality) + "."


def _pair(rng: random.Random) -> tuple[str, str, str]:
    q = _question(rng)
    noun = next((n for n in NOUNS if n in q), "topic")
    return q, _answer(rng, GOOD, noun), _answer(rng, BAD, noun)


def preferences(n: int = 4000, seed: int = 0) -> list[dict]:
    """Skywork-style rows: ``chosen``/``rejected`` message lists, plus ``source``."""
    rng = random.Random(f"preferences-{seed}")
    rows = []
    for _ in range(n):
        q, good, bad = _pair(rng)
        context = [{"role": "user", "content": q}]
        if rng.random() < 0.2:  # multi-turn: an earlier exchange shared by both sides
            q2, good2, _ = _pair(rng)
            context = [{"role": "user", "content": q2}, {"role": "assistant", "content": good2}] + context
        rows.append({
            "chosen": context + [{"role": "assistant", "content": good}],
            "rejected": context + [{"role": "assistant", "content": bad}],
            "source": "demo",
        })
    rows.extend(malformed_preferences(rng))
    rng.shuffle(rows)
    return rows


def malformed_preferences(rng: random.Random) -> list[dict]:
    """One or two rows of every kind the validity filter must drop."""
    q, good, bad = _pair(rng)
    user = {"role": "user", "content": q}
    ok = [user, {"role": "assistant", "content": good}]
    return [
        {"chosen": ok},  # missing key
        {"chosen": [], "rejected": [user, {"role": "assistant", "content": bad}]},  # empty messages
        {"chosen": "not a list", "rejected": ok},  # not a list
        {"chosen": [user, {"role": "assistant"}], "rejected": ok},  # message without content
        {"chosen": ok, "rejected": [user, {"role": "assistant", "content": good}]},  # identical answers
        {"chosen": ok, "rejected": [{"role": "user", "content": q + " (edited)"},
                                    {"role": "assistant", "content": bad}]},  # mismatched contexts
        {"chosen": ok, "rejected": [user, {"role": "assistant", "content": bad}, user]},  # length mismatch
    ]


def rewardbench(per_subset: int = 12, seed: int = 0) -> list[dict]:
    """RewardBench-shaped rows (``id, subset, prompt, chosen, rejected, ...``) for all 23 subsets."""
    rng = random.Random(f"rewardbench-{seed}")
    rows = []
    for subset in SUBSETS:
        for _ in range(per_subset):
            q, good, bad = _pair(rng)
            rows.append({"id": len(rows), "subset": subset, "prompt": q, "chosen": good, "rejected": bad,
                         "chosen_model": "demo-good", "rejected_model": "demo-bad"})
    return rows


GENERATORS = {"preferences": preferences, "rewardbench": rewardbench}


def generate(kind: str, seed: int = 0) -> list[dict]:
    if kind not in GENERATORS:
        raise ValueError(f"unknown demo source 'demo:{kind}'; allowed: {', '.join('demo:' + k for k in GENERATORS)}")
    return GENERATORS[kind](seed=seed)
