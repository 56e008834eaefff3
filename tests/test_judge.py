"""Judging on the transformers backend: faithful to a plain forward pass and to
``model.generate``, no token computed twice, long prompts shortened and counted,
resumable jobs, and logprob verdicts that agree with generated ones."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import judge_settings
from genrm import protocol
from genrm.evaluate import score_predictions
from genrm.io import read_jsonl, write_jsonl
from genrm.judge import examples as J
from genrm.judge.job import judge
from genrm.judge.shards import ShardStore

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    from genrm.judge.backends.transformers import load_causal_lm

    return load_causal_lm(str(tiny_model_dir), threads=2, dtype="float32")


@pytest.fixture(scope="module")
def rb_rows(rewardbench_file):
    return read_jsonl(rewardbench_file)


def to_examples(rows):
    return [J.Example(r["id"], r["subset"], r["prompt"], r["chosen"], r["rejected"]) for r in rows]


@pytest.fixture(scope="module")
def real_examples(rb_rows):
    """Ten real RewardBench examples of varied length (some longer than a 512-token context)."""
    return to_examples(random.Random(0).sample(rb_rows, 10))


def engine_for(lm, prepared, **kw):
    from genrm.judge.backends.transformers import PrefixCachedEngine, eos_token_ids, pad_token_id

    tok, model = lm
    return PrefixCachedEngine(model, prepared.ids[0][0][:prepared.shared_prefix_len()], mode=prepared.mode,
                              verdict=prepared.verdict, max_new_tokens=kw.pop("max_new_tokens", 6),
                              eos_ids=eos_token_ids(tok, model), pad_id=pad_token_id(tok), **kw)


# --- verdict tokens ---------------------------------------------------------------------


def test_verdict_tokens_of_the_demo_tokenizer(lm):
    tok, _ = lm
    v = J.verdict_tokens(tok)
    assert [tok.decode([t]) for t in v.prefix] == ["[", "["]
    assert tok.decode([v.a]) == "A" and tok.decode([v.b]) == "B"


@pytest.mark.parametrize("added, prefix, a, b", [
    (["[["], ["[["], "A", "B"),  # the prefix is one token
    (["[[A", "[[B"], [], "[[A", "[[B"),  # no common prefix: the first tokens differ
])
def test_verdict_tokens_are_found_from_the_tokenizer(tiny_model_dir, added, prefix, a, b):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens(added)
    v = J.verdict_tokens(tok)
    assert [tok.decode([t]) for t in v.prefix] == prefix
    assert (tok.decode([v.a]), tok.decode([v.b])) == (a, b)


def test_verdict_tokens_refuse_a_tokenizer_that_merges_into_the_generation_prompt(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens(["\n[["])  # "<|assistant|>\n" + "[[" would tokenize across the boundary
    with pytest.raises(ValueError, match="use mode generate"):
        J.verdict_tokens(tok)


# --- the engine against plain transformers ------------------------------------------------


def expected_tokens(prepared, g):
    """Tokens a run must compute when no token is computed twice."""
    total = g
    for a, b in prepared.ids:
        c = max(g, min(J.common_prefix_len(a, b), len(a) - 1, len(b) - 1))
        total += (c - g) + (len(a) - c) + (len(b) - c)
    return total


@pytest.mark.parametrize("max_batch", [1, 4])
def test_logprob_engine_equals_full_forward_and_computes_no_token_twice(lm, real_examples, max_batch):
    import torch

    tok, model = lm
    prepared = J.prepare(tok, real_examples, judge_settings(max_model_len=512, max_new_tokens=8), "logprob")
    assert prepared.shortened > 0
    engine = engine_for(lm, prepared, token_budget=2000, max_batch=max_batch, max_padding=0.5)
    results = engine.run(prepared.ids)
    with torch.inference_mode():
        for pair, result in zip(prepared.ids, results):
            for ids, (la, lb) in zip(pair, result):
                assert ids[-len(prepared.verdict.prefix):] == list(prepared.verdict.prefix)
                ref = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), -1)
                assert la == pytest.approx(ref[prepared.verdict.a].item(), abs=1e-4)
                assert lb == pytest.approx(ref[prepared.verdict.b].item(), abs=1e-4)
    g = prepared.shared_prefix_len()
    assert g > 0
    assert engine.stats.tokens == expected_tokens(prepared, g)
    assert engine.stats.tokens < sum(len(a) + len(b) for a, b in prepared.ids)
    assert engine.stats.logit_rows < engine.stats.tokens / 10  # logits of a few positions, not of every token
    if max_batch > 1:
        assert engine.stats.batches < len(real_examples) and engine.stats.padded > 0


def test_generate_engine_equals_model_generate(lm, real_examples):
    import torch

    tok, model = lm
    prepared = J.prepare(tok, real_examples, judge_settings(max_model_len=512, max_new_tokens=6), "generate")
    engine = engine_for(lm, prepared, token_budget=2000, max_batch=4, max_padding=0.5, max_new_tokens=6)
    results = engine.run(prepared.ids)
    with torch.inference_mode():
        for pair, result in zip(prepared.ids, results):
            for ids, generated in zip(pair, result):
                x = torch.tensor([ids])
                ref = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=6, do_sample=False,
                                     pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
                assert generated == ref[:len(generated)]
                assert len(generated) == 6 or generated[-1] in engine.eos_ids


def test_engine_batches_respect_budget_size_and_padding(lm):
    from genrm.judge.backends.transformers import PrefixCachedEngine

    engine = PrefixCachedEngine(lm[1], [1], mode="generate", token_budget=100, max_batch=3, max_padding=0.2)
    parts = [([0] * q, [0] * s, [0] * s) for q, s in [(1, 10), (1, 10), (1, 10), (1, 10), (10, 10), (1, 40), (1, 12)]]
    batches = engine.batches(parts)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert batches[0] == [0, 1, 2]  # identical shapes: up to max_batch
    for b in batches:
        mq, ms = max(len(parts[i][0]) for i in b), max(len(parts[i][1]) for i in b)
        padded = len(b) * (mq + 2 * ms)
        real = sum(len(parts[i][0]) + 2 * len(parts[i][1]) for i in b)
        assert len(b) == 1 or (padded <= 100 and padded - real <= 0.2 * padded)


def test_token_batches_respect_the_budget():
    assert J.token_batches([10, 10, 10, 30, 30, 100], 60, 8) == [[0, 1, 2], [3, 4], [5]]
    assert J.token_batches([1] * 5, 1000, 2) == [[0, 1], [2, 3], [4]]
    assert J.token_batches([500], 100, 4) == [[0]]  # over budget alone: its own batch


# --- long inputs ----------------------------------------------------------------------------


def test_long_example_is_shortened_deterministically_and_fairly(lm, rb_rows):
    tok, _ = lm
    long = max(rb_rows, key=lambda r: len(r["chosen"]) + len(r["rejected"]))
    ex = to_examples([long])[0]
    budget = 400
    assert J.judge_prompt_length(tok, ex) > budget
    short = J.shorten_example(tok, ex, budget)
    again = J.shorten_example(tok, to_examples([long])[0], budget)
    assert short == again and short.shortened and not ex.shortened
    for order in (True, False):
        assert J.prompt_length(tok, short.messages(order)) <= budget
    # water-filling: texts over the cap keep head and tail with a visible marker; short ones are untouched
    lengths = {f: len(tok.encode(getattr(ex, f), add_special_tokens=False)) for f in J.FIELDS}
    for f in J.FIELDS:
        text = getattr(short, f)
        if "tokens omitted" in text:
            head = text.split("\n[... ")[0]
            assert getattr(ex, f).startswith(head[:20])
        else:
            assert text == getattr(ex, f)
    assert "tokens omitted" in short.chosen or "tokens omitted" in short.rejected
    shortest = min(lengths, key=lengths.get)
    if lengths[shortest] < 50:
        assert getattr(short, shortest) == getattr(ex, shortest)


def test_template_too_long_for_the_context_is_an_error(lm, real_examples):
    tok, _ = lm
    with pytest.raises(ValueError, match="template alone"):
        J.shorten_example(tok, real_examples[0], 3)


def test_max_new_tokens_must_leave_room_for_the_prompt(lm, real_examples):
    tok, _ = lm
    with pytest.raises(ValueError, match="leaves no room"):
        J.prepare(tok, real_examples, judge_settings(max_model_len=64, max_new_tokens=64), "generate")


# --- jobs -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def job_data(rb_rows, tmp_path_factory):
    """Twelve real examples, among them the longest of RewardBench."""
    rows = random.Random(1).sample(rb_rows, 11) + [max(rb_rows, key=lambda r: len(r["chosen"]))]
    path = tmp_path_factory.mktemp("jobdata") / "rb.jsonl"
    write_jsonl(path, rows)
    return path, rows


@pytest.mark.parametrize("mode", ["logprob", "generate"])
def test_judge_job_shortens_and_counts_long_examples_and_keeps_every_row(tiny_model_dir, job_data, tmp_path, mode):
    path, rows = job_data
    out = tmp_path / "eval" / "predictions.jsonl"
    settings = judge_settings(mode, max_model_len=384, max_new_tokens=4, shard_size=5, token_budget=2048)
    judge(str(tiny_model_dir), str(path), str(out), settings)
    preds = read_jsonl(out)
    assert [p["id"] for p in preds] == [r["id"] for r in rows]  # nothing dropped, order kept
    assert preds[-1]["shortened"] is True
    assert not (tmp_path / "eval" / "predictions.jsonl.shards").exists()
    scores = score_predictions(preds)
    assert scores["diagnostics"]["shortened"] == sum(p["shortened"] for p in preds) > 0
    for p in preds:
        assert p["mode"] == mode and p["correct"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        if mode == "logprob":
            assert p["verdict_chosen_a"] in ("A", "B") and p["verdict_chosen_b"] in ("A", "B")
            assert 0.0 <= p["p_a_chosen_a"] <= 1.0 and 0.0 <= p["p_a_chosen_b"] <= 1.0
            assert (p["p_a_chosen_a"] > 0.5) == (p["verdict_chosen_a"] == "A")
        else:
            assert isinstance(p["output_chosen_a"], str) and isinstance(p["output_chosen_b"], str)


@pytest.mark.parametrize("mode", ["classifier", "bt"])
def test_classifier_job_shortens_and_counts(tiny_classifier_dir, job_data, tmp_path, mode):
    from genrm.io import read_json

    path, rows = job_data
    out, record = tmp_path / "predictions.jsonl", tmp_path / "judging.json"
    # on vLLM: tests/test_vllm_engine.py (vLLM's CPU attention needs heads of 32 dimensions or more)
    judge(str(tiny_classifier_dir), str(path), str(out),
          judge_settings(mode, max_model_len=256, shard_size=7, batch_size=4), judging=str(record))
    preds = read_jsonl(out)
    assert [p["id"] for p in preds] == [r["id"] for r in rows]
    assert preds[-1]["shortened"] is True
    assert all(p["correct"] in (0.0, 0.5, 1.0) and isinstance(p["reward_chosen"], float) for p in preds)
    assert all(p["mode"] == "classifier" and "verdict_chosen_a" not in p for p in preds)
    got = read_json(record)
    assert (got["mode"], got["backend"]) == (mode, "transformers")
    assert got["shortened"] == sum(p["shortened"] for p in preds)


def test_judge_job_records_the_context_it_used_and_what_it_shortened(tiny_model_dir, job_data, tmp_path):
    """judging.json says how the predictions were produced: the context after fit_context lowered the
    configured one to the model's 4096 positions, and exactly the shortened rows."""
    from genrm.io import read_json

    path, rows = job_data
    out, record = tmp_path / "predictions.jsonl", tmp_path / "judging.json"
    settings = judge_settings("logprob", max_model_len=32768, shard_size=6, token_budget=8192)
    judge(str(tiny_model_dir), str(path), str(out), settings, judging=str(record))
    preds, got = read_jsonl(out), read_json(record)
    assert got["mode"] == "logprob" and got["backend"] == "transformers" and got["dtype"] == "float32"
    assert (got["max_model_len"], got["configured_max_model_len"]) == (4096, 32768)
    assert got["max_new_tokens"] is None and got["tensor_parallel_size"] is None and got["sample"] is None
    assert got["examples"] == len(preds) == len(rows)
    assert got["shortened"] == sum(p["shortened"] for p in preds)
    short = tmp_path / "short"
    judge(str(tiny_model_dir), str(path), str(short / "p.jsonl"),
          judge_settings("generate", max_model_len=384, max_new_tokens=4, shard_size=6), judging=str(short / "j.json"))
    got = read_json(short / "j.json")
    assert (got["mode"], got["max_model_len"], got["configured_max_model_len"], got["max_new_tokens"]) == (
        "generate", 384, 384, 4)
    assert got["shortened"] == sum(p["shortened"] for p in read_jsonl(short / "p.jsonl")) > 0


def test_judge_job_on_a_seeded_sample(tiny_model_dir, job_data, tmp_path):
    from genrm.io import read_json
    from genrm.judge.job import sample_indices

    path, rows = job_data
    settings = judge_settings("generate", max_model_len=384, max_new_tokens=4, shard_size=2)
    out, record = tmp_path / "greedy_sample.jsonl", tmp_path / "greedy_sample.judging.json"
    judge(str(tiny_model_dir), str(path), str(out), settings, judging=str(record), sample=5)
    ids = [p["id"] for p in read_jsonl(out)]
    chosen = sample_indices(len(rows), 5, settings.seed)
    assert ids == [rows[i]["id"] for i in chosen] and len(set(ids)) == 5  # in data order
    assert read_json(record)["sample"] == {"size": 5, "of": len(rows), "seed": settings.seed}
    assert sample_indices(len(rows), 5, settings.seed + 1) != chosen
    assert sample_indices(len(rows), 50, 0) == list(range(len(rows)))  # larger than the data: all of it


def classifier_judge(model_dir, mode, examples=(), **settings):
    from genrm.judge.backends.classifier import ClassifierJudge

    return ClassifierJudge(str(model_dir), list(examples), judge_settings(mode, **settings), "float32")


def test_classifier_modes_score_their_own_texts(tiny_classifier_dir):
    """classifier (external models): the chat template's text as it is; bt (the Bradley-Terry models
    trained here): the text they were trained on, ending with EOS (genrm.protocol.reward_text)."""
    external, ours = classifier_judge(tiny_classifier_dir, "classifier"), classifier_judge(tiny_classifier_dir, "bt")
    tok = ours.tokenizer
    messages = J.classifier_messages("Tell me about the river.", "The river answer: clear.")
    assert external.text("Tell me about the river.", "The river answer: clear.") == \
        tok.apply_chat_template(messages, tokenize=False) == "<|user|>\nTell me about the river.<|end|>\n" \
        "<|assistant|>\nThe river answer: clear.<|end|>\n"
    assert ours.text("Tell me about the river.", "The river answer: clear.") == protocol.reward_text(tok, messages) \
        == "<|user|>\nTell me about the river.<|end|>\n<|assistant|>\nThe river answer: clear.<|end|>"


def test_reward_text_ends_with_eos_as_openrlhf_makes_it():
    class Tok:  # a template that does not end with the EOS token: OpenRLHF appends " " + EOS
        eos_token = "</s>"

        def apply_chat_template(self, messages, tokenize=False):
            return "".join(f"{m['role']}: {m['content']}\n" for m in messages)

    assert protocol.reward_text(Tok(), [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) \
        == "user: q\nassistant: a </s>"


def test_rewards_are_read_at_the_final_eos_when_padding_is_eos(tiny_classifier_dir, tmp_path):
    """OpenRLHF saves a Llama tokenizer with padding = EOS. The reward of a batched, padded text is the
    reward of that text alone, read at its last token, the EOS (transformers' own pooling would read
    the token before it)."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoTokenizer

    model_dir = tmp_path / "rm"
    shutil.copytree(tiny_classifier_dir, model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    config.pad_token_id = tok.eos_token_id  # as OpenRLHF's get_tokenizer sets it on the model
    config.save_pretrained(model_dir)
    judge_ = classifier_judge(model_dir, "bt", batch_size=8, token_budget=4096)
    assert judge_.tokenizer.pad_token_id == judge_.tokenizer.eos_token_id == judge_.model.config.pad_token_id
    texts = [judge_.text(f"Question {'long ' * k}?", f"Answer {'word ' * (3 * k)}.") for k in range(5)]
    batched = judge_.rewards(tok(texts, add_special_tokens=False)["input_ids"])
    model = judge_.model
    model.config.pad_token_id = None  # one sequence, no padding: the reward at its last token
    with torch.inference_mode():
        alone = [model(input_ids=torch.tensor([tok(t, add_special_tokens=False)["input_ids"]])).logits[0, 0].item()
                 for t in texts]
        model.config.pad_token_id = tok.pad_token_id
        enc = judge_.tokenizer.pad({"input_ids": tok(texts, add_special_tokens=False)["input_ids"]},
                                   return_tensors="pt")
        pooled = model(**enc).logits[:, 0].tolist()  # transformers' pooling: the last token that is not EOS
    assert batched == pytest.approx(alone, abs=1e-5)
    assert pooled != pytest.approx(alone, abs=1e-3)  # the check above can fail


def test_logprob_rows_from_logprobs():
    import math

    row = protocol.logprob_row(7, "hep-go", ((-0.1, -2.0), (-3.0, -0.2)), shortened=False)
    assert row["verdict_chosen_a"] == "A" and row["verdict_chosen_b"] == "B" and row["correct"] == 1.0
    assert row["mode"] == "logprob" and row["shortened"] is False
    assert row["p_a_chosen_a"] == pytest.approx(1 / (1 + math.exp(-1.9)))
    assert protocol.logprob_verdict(-1.0, -1.0)[0] is None  # an exact tie is no verdict
    assert protocol.logprob_verdict(0.0, -1e6)[1] == 1.0 and protocol.logprob_verdict(-1e6, 0.0)[1] == 0.0


# --- resumable jobs -------------------------------------------------------------------------------


def test_shard_store_restarts_on_other_inputs_and_cleans_partial_files(tmp_path):
    store = ShardStore(tmp_path / "s", {"model": "m1"}, n_items=5, shard_size=2)
    assert store.n_shards == 3 and store.pending() == [0, 1, 2]
    store.write(0, [{"i": 0}, {"i": 1}])
    with pytest.raises(ValueError):
        store.write(1, [{"i": 2}])
    (tmp_path / "s" / ".shard-00001.jsonl.x.partial").write_text("half a shard")
    with pytest.raises(RuntimeError):
        list(store.rows())
    again = ShardStore(tmp_path / "s", {"model": "m1"}, n_items=5, shard_size=2)
    assert again.pending() == [1, 2] and not list((tmp_path / "s").glob(".*.partial"))
    other = ShardStore(tmp_path / "s", {"model": "m2"}, n_items=5, shard_size=2)
    assert other.pending() == [0, 1, 2]


def test_killed_judge_job_resumes_without_recomputing_finished_shards(tiny_model_dir, rb_rows, tmp_path):
    rows = random.Random(2).sample(rb_rows, 48)
    data = tmp_path / "rb.jsonl"
    write_jsonl(data, rows)
    out = tmp_path / "eval" / "predictions.jsonl"
    shards = Path(str(out) + ".shards")
    settings = judge_settings("logprob", max_model_len=512, shard_size=2, token_budget=2048, threads=1)
    cmd = [sys.executable, "-m", "genrm", "judge", "--model", str(tiny_model_dir),
           "--data", str(data), "--settings", json.dumps(dataclasses.asdict(settings)), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None and len(list(shards.glob("shard-*.jsonl"))) < 2:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    done = sorted(p.name for p in shards.glob("shard-*.jsonl"))
    assert 2 <= len(done) < 24, "the job was not killed halfway"
    assert not out.exists(), "a killed job left a final file"

    second = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{len(done)} done, {24 - len(done)} to judge" in second.stderr
    assert second.stderr.count("written") == 24 - len(done)
    assert not shards.exists()
    resumed = read_jsonl(out)
    assert [r["id"] for r in resumed] == [r["id"] for r in rows]

    # the same job uninterrupted gives the same rows
    ref = tmp_path / "ref" / "predictions.jsonl"
    judge(str(tiny_model_dir), str(data), str(ref), settings)
    for a, b in zip(resumed, read_jsonl(ref)):
        assert a["verdict_chosen_a"] == b["verdict_chosen_a"] and a["verdict_chosen_b"] == b["verdict_chosen_b"]
        assert a["p_a_chosen_a"] == pytest.approx(b["p_a_chosen_a"], abs=1e-6)


# --- the demo's trained GenRM --------------------------------------------------------------------


def test_logprob_verdicts_agree_with_generated_verdicts_on_the_demo_genrm(demo_run):
    """Where greedy generation gives a verdict, the likelier verdict token is the same one."""
    from genrm.judge.backends.transformers import TransformersJudge

    model = demo_run / "results" / "models" / "tiny-instruct" / "verify"
    examples = J.load_examples(demo_run / "resources" / "data" / "rewardbench.jsonl")
    indices = list(range(len(examples)))
    generated = TransformersJudge(str(model), examples, judge_settings("generate"), "float32")(indices)
    scored = TransformersJudge(str(model), examples, judge_settings("logprob"), "float32")(indices)
    pairs = [(g[k], s[k]) for g, s in zip(generated, scored) for k in ("verdict_chosen_a", "verdict_chosen_b")]
    parsed = [(g, s) for g, s in pairs if g is not None]
    assert len(parsed) >= 0.5 * len(pairs), "the demo GenRM rarely writes a verdict"
    agree = sum(g == s for g, s in parsed)
    assert agree >= 0.99 * len(parsed), f"{agree}/{len(parsed)} verdicts agree"
