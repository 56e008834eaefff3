"""The evaluation protocol of DESIGN.md section 2, checked piece by piece."""

import random

import pytest

from conftest import EXAMPLE_COUNTS, SUBSET_MAPPING
from genrm import protocol
from genrm.evaluate import overall_score, score_predictions, section_scores
from genrm.protocol import SECTION_WEIGHTS, pair_problem
from genrm.train.rows import correct_copies, judge_row, sft_rows


def test_prompt_template_is_the_published_one_byte_for_byte(shared_dir):
    published = (shared_dir / "protocol" / "pairwise_critic_prompt.txt").read_bytes()
    assert protocol.PROMPT_TEMPLATE.encode("utf-8") == published
    # The two lines with a trailing space are part of the protocol.
    assert protocol.PROMPT_TEMPLATE.count(" \n") == 2


def test_judge_prompt_fills_placeholders_and_keeps_braces():
    text = protocol.render_judge_prompt("Q {x}", "ans {response_b} A", "ans B {}")
    assert "[User Question]\nQ {x}\n\n[The Start of Assistant A's Answer]\nans {response_b} A\n" in text
    assert text.endswith("[The Start of Assistant B's Answer]\nans B {}\n[The End of Assistant B's Answer]")
    assert text.startswith("Please act as an impartial judge")


def test_single_message_question_is_its_content():
    assert protocol.render_question([{"role": "user", "content": "hi"}]) == "hi"


def test_multi_turn_question_renders_turn_markers():
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert protocol.render_question(msgs) == "<turn>user\na\n<turn>assistant\nb\n<turn>user\nc\n"


@pytest.mark.parametrize(
    "text, verdict",
    [
        ("[[A]]", "A"),
        ("[[B]]", "B"),
        ('Output "[[A]]" if A is better, "[[B]]" if B is. My verdict: [[B]]', "B"),
        ("I pick [[B]] ... on reflection [[A]]", "A"),
        ("no verdict here [[C]] [A] [[ A ]]", None),
        ("", None),
    ],
)
def test_last_verdict_wins(text, verdict):
    assert protocol.parse_verdict(text) == verdict


def test_example_score_both_orders():
    assert protocol.example_score("A", "B") == 1.0
    assert protocol.example_score("B", "A") == 0.0
    assert protocol.example_score("A", "A") == 0.5  # position bias: one right, one wrong
    assert protocol.example_score(None, "B") == 0.75
    assert protocol.example_score(None, None) == 0.5


def test_bradley_terry_ties_count_half():
    assert protocol.bradley_terry_score(1.0, 0.5) == 1.0
    assert protocol.bradley_terry_score(0.5, 1.0) == 0.0
    assert protocol.bradley_terry_score(0.3, 0.3) == 0.5


def _pair(chosen_answer="good", rejected_answer="bad", context=None):
    context = context or [{"role": "user", "content": "q"}]
    return {"chosen": context + [{"role": "assistant", "content": chosen_answer}],
            "rejected": [dict(m) for m in context] + [{"role": "assistant", "content": rejected_answer}]}


@pytest.mark.parametrize(
    "row, reason",
    [
        (_pair(), None),
        ({"chosen": _pair()["chosen"]}, "missing_key"),
        ({"chosen": [], "rejected": _pair()["rejected"]}, "empty_messages"),
        ({"chosen": "text", "rejected": _pair()["rejected"]}, "messages_not_a_list"),
        ({"chosen": [{"role": "user"}, {"role": "assistant", "content": "x"}], "rejected": _pair()["rejected"]},
         "malformed_message"),
        (_pair("same", "same"), "identical_answers"),
        ({"chosen": _pair()["chosen"], "rejected": [{"role": "user", "content": "other"},
                                                    {"role": "assistant", "content": "bad"}]}, "context_mismatch"),
        ({"chosen": _pair()["chosen"], "rejected": _pair()["rejected"] + [{"role": "user", "content": "q"}]},
         "length_mismatch"),
        ({"chosen": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}],
          "rejected": [{"role": "user", "content": "q"}, {"role": "user", "content": "b"}]},
         "not_ending_with_assistant"),
    ],
)
def test_validity_filter_reasons(row, reason):
    assert pair_problem(row) == reason


def test_judge_row_places_chosen_and_matches_verdict():
    pair = _pair("GOOD", "BAD")
    row_a = judge_row(pair["chosen"], pair["rejected"], chosen_at_a=True)
    row_b = judge_row(pair["chosen"], pair["rejected"], chosen_at_a=False)
    assert row_a["response"] == [{"role": "assistant", "content": "[[A]]"}]
    assert row_b["response"] == [{"role": "assistant", "content": "[[B]]"}]
    text_a, text_b = row_a["prompt"][0]["content"], row_b["prompt"][0]["content"]
    assert text_a.index("GOOD") < text_a.index("BAD") and text_b.index("BAD") < text_b.index("GOOD")
    assert row_a["prompt"][0]["role"] == "user" and len(row_a["prompt"]) == 1


def test_placement_is_seeded_reproducible_and_balanced():
    pairs = [_pair(f"good {i}", f"bad {i}") for i in range(2000)]
    from collections import Counter

    def verdicts(seed):
        return [r["response"][0]["content"] for r in sft_rows(pairs, 0.0, seed, Counter())]

    first, again, other = verdicts(7), verdicts(7), verdicts(8)
    assert first == again
    assert first != other
    assert 0.45 < first.count("[[A]]") / len(first) < 0.55


def test_correct_rows_follow_the_ratio():
    rng = random.Random(0)
    assert sum(correct_copies(rng, 0.25) for _ in range(20000)) == pytest.approx(5000, rel=0.05)
    assert {correct_copies(rng, 2.0) for _ in range(100)} == {2}
    from collections import Counter

    stats = Counter()
    rows = list(sft_rows([_pair()], 1.0, 0, stats))
    assert rows[1] == {"prompt": [{"role": "user", "content": "q"}],
                       "response": [{"role": "assistant", "content": "good"}]}


def _predictions(acc_by_subset):
    """Generate-mode rows whose accuracy per subset is ``acc_by_subset`` (20 examples each)."""
    rows = []
    for subset, acc in acc_by_subset.items():
        n = 20
        k = round(acc * n)
        rows += [protocol.generate_row(len(rows) + i, subset, ("[[A]]", "[[B]]") if i < k else ("[[B]]", "[[A]]"),
                                       shortened=False) for i in range(n)]
    return rows


def test_section_weights_equal_the_official_constants_for_all_four_sections():
    assert {sec: set(w) for sec, w in SECTION_WEIGHTS.items()} == {sec: set(s) for sec, s in SUBSET_MAPPING.items()}
    assert {s: w for weights in SECTION_WEIGHTS.values() for s, w in weights.items()} == EXAMPLE_COUNTS
    rng = random.Random(7)
    accs = {s: rng.random() for s in EXAMPLE_COUNTS}
    ours = section_scores(accs)
    for section, subsets in SUBSET_MAPPING.items():
        official = sum(accs[s] * EXAMPLE_COUNTS[s] for s in subsets) / sum(EXAMPLE_COUNTS[s] for s in subsets)
        assert ours[section] == pytest.approx(official, abs=1e-12), section
    assert overall_score(ours) == pytest.approx(sum(ours.values()) / 4)


def test_section_weighting_is_official():
    accs = {s: 0.0 for weights in SECTION_WEIGHTS.values() for s in weights}
    accs["math-prm"] = 1.0  # weighs 984, the six code subsets 164 each
    sections = section_scores(accs)
    assert sections["reasoning"] == pytest.approx(984 / (984 + 6 * 164)) == pytest.approx(0.5)
    accs["alpacaeval-easy"] = 1.0
    assert section_scores(accs)["chat"] == pytest.approx(100 / 358)


def test_score_is_mean_of_sections_and_counts_unparsed():
    accs = {s: (0.5 if sec == "chat" else 1.0) for sec, w in SECTION_WEIGHTS.items() for s in w}
    rows = _predictions(accs)
    rows[0] = {**rows[0], "verdict_chosen_a": None}  # counted; the example's score is left as it was
    out = score_predictions(rows)
    assert out["score"] == pytest.approx((0.5 + 3) / 4)
    assert out["counts"]["unparsed_verdicts"] == 1
    assert out["counts"]["examples"] == len(rows)
    assert overall_score({"chat": 1, "chat_hard": None, "safety": 1, "reasoning": 1}) is None


def test_unknown_subset_is_an_error():
    with pytest.raises(ValueError, match="outside RewardBench"):
        score_predictions([protocol.generate_row(0, "made-up", ("[[A]]", "[[B]]"), shortened=False)])
