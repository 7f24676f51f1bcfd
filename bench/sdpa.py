"""PyTorch SDPA, the peer of bench/attention.c: causal attention in bf16, batch 1, Hq query and
Hkv key/value heads (GQA through enable_gqa), head dim D, timed forward and forward+backward with
the flash-attention and cuDNN back-ends, in the same table format.

Usage: python3 bench/sdpa.py [--hq 32] [--hkv 2] [--d 128] T...
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, reps=3):
    fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hq", type=int, default=32)
    ap.add_argument("--hkv", type=int, default=2)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("T", type=int, nargs="+")
    args = ap.parse_args()
    for T in args.T:
        q = torch.randn(1, args.hq, T, args.d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(1, args.hkv, T, args.d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(1, args.hkv, T, args.d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        g = torch.randn(1, args.hq, T, args.d, device="cuda", dtype=torch.bfloat16)
        flops = 4.0 * args.d * args.hq * T * (T + 1) / 2
        for name, backend in (("flash-attention-2", SDPBackend.FLASH_ATTENTION),
                              ("cuDNN", SDPBackend.CUDNN_ATTENTION)):
            try:
                with sdpa_kernel(backend):
                    fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                    def fb():
                        o = fwd()
                        o.backward(g)
                    f = median_ms(fwd)
                    b = median_ms(fb)
                print(f"| {T // 1024:6d}k | SDPA {name} fwd | {f:10.2f} | {flops / f / 1e9:8.1f} | |")
                print(f"| {T // 1024:6d}k | SDPA {name} fwd+bwd | {b:10.2f} | {3.5 * flops / b / 1e9:8.1f} | |")
            except RuntimeError as e:
                print(f"| {T // 1024:6d}k | SDPA {name} | n/a | n/a | {str(e).splitlines()[0][:60]} |")
        del q, k, v, g
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
