"""The released InfLLM-V2 kernels, the sparse peer of bench/attention.c, timed on the same shapes
(causal, bf16, batch 1, Hq query and Hkv key/value heads, head dim 128, block 64, 96 selected
blocks, random inputs) and printed in the same table format.

It needs their `infllm_v2` Python package, built by the user from its public source (the
OpenBMB/infllmv2_cuda_impl repository; their build covers head dim 128 and G = 16 only). This
project does not ship or build it; without it (or without PyTorch) the script says so and exits 77.

Timed as a user of their kernels runs a training step:
  selection  compression of K (mean over windows of 32, stride 16, in PyTorch), their stage-1
             kernel (scores against the compressed keys, summed over the group's heads), their
             max_pooling_1d (forces the init and local blocks) and torch.topk of 96 blocks;
  stage 3    infllmv2_attn_varlen_func with that top-k, forward and backward.

Usage: python3 bench/infllmv2_peer.py [--hq 32] [--hkv 2] T...
"""
import argparse
import os
import sys


def row(T, what, ms, note=""):
    print(f"| {T // 1024:6d}k | {what} | {ms:10.2f} | | {note} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hq", type=int, default=32)
    ap.add_argument("--hkv", type=int, default=2)
    ap.add_argument("T", type=int, nargs="+")
    args = ap.parse_args()
    try:
        import torch
        from infllm_v2 import infllmv2_attn_stage1, infllmv2_attn_varlen_func, max_pooling_1d
    except ImportError as e:
        print(f"infllmv2_peer: PyTorch or the infllm_v2 package is not installed ({e})")
        sys.exit(77)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sdpa import median_ms
    D, nsel, bs = 128, 96, 64
    dev, bf = "cuda", torch.bfloat16
    for T in args.T:
        torch.manual_seed(0)
        q = torch.randn(T, args.hq, D, device=dev, dtype=bf, requires_grad=True)
        k = torch.randn(T, args.hkv, D, device=dev, dtype=bf, requires_grad=True)
        v = torch.randn(T, args.hkv, D, device=dev, dtype=bf, requires_grad=True)
        g = torch.randn(T, args.hq, D, device=dev, dtype=bf)
        cu = torch.tensor([0, T], device=dev, dtype=torch.int32)
        L1 = (T - 32) // 16 + 1
        cu1 = torch.tensor([0, L1], device=dev, dtype=torch.int32)
        state = {}

        def select():
            with torch.no_grad():
                k1 = k.unfold(0, 32, 16).mean(-1).contiguous()  # (L1, Hkv, D)
                s = infllmv2_attn_stage1(q, k1, k1, cu, cu1, cu1, T, L1, causal=True)
                pooled = max_pooling_1d(s.to(bf).contiguous(), 0, 32, 1, bs, 16)
                val, idx = pooled.topk(nsel, dim=-1)
                state["topk"] = torch.where(val == float("-inf"), -1, idx).to(torch.int32).contiguous()

        def sparse_fwd():
            return infllmv2_attn_varlen_func(q, k, v, cu, cu, T, T, causal=True,
                                             topk_idx=state["topk"])

        def sparse_fwd_bwd():
            sparse_fwd().backward(g)

        def step():
            select()
            sparse_fwd_bwd()

        try:
            sel = median_ms(select)
            row(T, "InfLLM-V2 (released) selection", sel)
            row(T, "InfLLM-V2 (released) sparse fwd", median_ms(sparse_fwd))
            row(T, "InfLLM-V2 (released) sparse fwd+bwd", median_ms(sparse_fwd_bwd))
            st = median_ms(step)
            row(T, "InfLLM-V2 (released) selection + fwd+bwd", st,
                f"selection {100 * sel / st:.0f}% of the step")
        except (RuntimeError, TypeError, AssertionError) as e:
            row(T, "InfLLM-V2 (released)", float("nan"), str(e).splitlines()[0][:80])
        del q, k, v, g, state
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
