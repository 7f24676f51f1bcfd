"""The PyTorch peer of bench/step.sh: one optimizer step of the same model shape in `transformers`
(LlamaForCausalLM, bf16 weights, SDPA attention, gradient checkpointing, fused AdamW), on the same
number of tokens, on the same GPU. The shape is read from our config's `model` section, so both
sides train the same transformer (MiniCPM's muP scalars change no cost and are left out).

Usage: python3 bench/step_peer.py CONFIG T [T...]
Prints one JSON line per T: {"T", "ms", "tokens_per_s", "peak_gib", "params"}; a T that does not
fit prints {"T", "error"}. Timing: 1 warm-up step, then the median of 3 (CUDA events), each step
= forward + backward + AdamW step + zero_grad on one sequence of T tokens.
"""
import json
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sdpa import median_ms  # bench/sdpa.py: 1 warm-up call, median of 3 timed by CUDA events


def model_of(cfg):
    m = cfg["model"]
    heads = m["num_attention_heads"]
    return LlamaConfig(
        vocab_size=m["vocab_size"],
        hidden_size=m["hidden_size"],
        intermediate_size=m["intermediate_size"],
        num_hidden_layers=m["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=m["num_key_value_heads"],
        head_dim=m.get("head_dim", m["hidden_size"] // heads),
        rope_theta=m.get("rope_theta", 10000.0),
        rms_norm_eps=m.get("rms_norm_eps", 1e-6),
        tie_word_embeddings=m.get("tie_word_embeddings", False),
        max_position_embeddings=1 << 20,
        attn_implementation="sdpa",
        torch_dtype=torch.bfloat16,
    )


def time_step(model, opt, T):
    ids = torch.randint(0, model.config.vocab_size, (1, T), device="cuda")

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return median_ms(step)


def main():
    cfg = json.load(open(sys.argv[1]))
    torch.manual_seed(0)
    with torch.device("cuda"):  # random init on the GPU, straight in bf16
        model = LlamaForCausalLM._from_config(model_of(cfg), torch_dtype=torch.bfloat16)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    params = sum(p.numel() for p in model.parameters())
    for T in map(int, sys.argv[2:]):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            ms = time_step(model, opt, T)
        except torch.OutOfMemoryError:
            opt.zero_grad(set_to_none=True)
            print(json.dumps({"T": T, "error": "out of memory"}), flush=True)
            continue
        peak = torch.cuda.max_memory_reserved() / 2**30
        print(json.dumps({"T": T, "ms": round(ms, 2), "tokens_per_s": round(T / ms * 1e3, 1),
                          "peak_gib": round(peak, 2), "params": params}), flush=True)


if __name__ == "__main__":
    main()
