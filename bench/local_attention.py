"""Notebook 5's measurements: local against global attention on a 32 x 32 map, and attention over chunks of keys.

Local vs global: one attention layer of 64 channels on a batch of 32 x 32 maps: the reference
``LocalSelfAttention2d`` (m = 3 and m = 7, 4 heads), notebook 1's global block written out (its reference
``Attention``: the (HW, HW) scores, then softmax) and the same global attention through the fused
``F.scaled_dot_product_attention``. Median time of a forward pass and of a forward and backward pass, and the peak
memory of the forward pass (``course_utils.measure.peak_memory``: the profiler's memory accounting on a CPU,
``torch.cuda.max_memory_allocated`` on a GPU), with the ratios local / global.

Then, against the length (``--lengths`` to choose them): for each sequence length L (S = T = L, one head of
width 64, float32), the peak memory and the time of naive attention (the reference ``chunked_attention`` with one
chunk of L keys: the whole L x L matrix), chunked attention (chunks of 256 keys) and
``F.scaled_dot_product_attention``; the ratios naive / chunked at the largest length and the slopes of log memory
and log time against log L.

Networks (``--networks``): notebook 5's three networks (vanilla CNN, CNN with global attention, fully attentional):
parameters, multiply-adds per image and the time of a training step on a batch of 64 (Adam), times 766 steps per
epoch. Run from the repository root:

    python -m bench.local_attention [--device cpu|cuda] [--batch-size 8] [--repeats 3] [--threads N]
                                    [--lengths 256 512 ... 8192] [--chunk 256]
    python -m bench.local_attention --networks [--device cpu|cuda]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autograde.assignments.local_attention import reference as ref
from autograde.assignments.self_attention_cnn import reference as nb1
from course_utils.measure import count_multiply_adds, peak_memory, time_call
from course_utils.runtime import get_device, set_seed

CHANNELS, SIDE, HEADS = 64, 32, 4
STEPS_PER_EPOCH = 766  # 49,000 training images in batches of 64
DEFAULT_LENGTHS = [256, 512, 1024, 2048, 4096, 8192]


class FusedGlobalAttention(nn.Module):
    """x + softmax(q k^T / sqrt(C)) v over all H*W positions through F.scaled_dot_product_attention."""

    def __init__(self, channels: int):
        super().__init__()
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        q, k, v = self.qkv(x).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # 3 x (N, H*W, C)
        return x + F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(N, C, H, W)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def forward_and_backward(layer: nn.Module, x: torch.Tensor):
    def run() -> None:
        layer(x).sum().backward()

    return run


def local_vs_global(device: torch.device, batch: int, repeats: int) -> None:
    print(
        f"One attention layer, {CHANNELS} channels, batch of {batch} maps of {SIDE} x {SIDE}, float32, "
        f"on {describe_device(device)}:"
    )
    layers = {
        "local, m = 3": ref.LocalSelfAttention2d(CHANNELS, CHANNELS, 3, HEADS),
        "local, m = 7": ref.LocalSelfAttention2d(CHANNELS, CHANNELS, 7, HEADS),
        "global, written out": nb1.Attention(CHANNELS),
        "global, fused SDPA": FusedGlobalAttention(CHANNELS),
    }
    x = torch.randn(batch, CHANNELS, SIDE, SIDE, device=device)
    rows = {}
    print(f"{'layer':>22} {'forward':>10} {'fwd+bwd':>10} {'peak memory (fwd)':>18} {'multiply-adds/map':>18}")
    for name, layer in layers.items():
        layer = layer.to(device)
        with torch.no_grad():
            forward = time_call(lambda layer=layer: layer(x), device, repeats=repeats)
            _, memory = peak_memory(lambda layer=layer: layer(x), device)
        both = time_call(forward_and_backward(layer, x), device, repeats=repeats)
        macs = count_multiply_adds(layer, x[:1])
        rows[name] = (forward, both, memory)
        print(
            f"{name:>22} {forward * 1e3:>8.1f}ms {both * 1e3:>8.1f}ms {memory / 2**20:>14.1f} MiB {macs / 1e6:>16.1f} M"
        )
    local = rows["local, m = 3"]
    for other in ("global, written out", "global, fused SDPA"):
        g = rows[other]
        print(
            f"local (m = 3) / {other}: forward time {local[0] / g[0]:.2f}x, forward+backward time "
            f"{local[1] / g[1]:.2f}x, peak memory {local[2] / g[2]:.2f}x"
        )


def slope(lengths: list[int], values: list[float]) -> float:
    """The least-squares slope of log(value) against log(length) over the last three lengths."""
    return float(np.polyfit(np.log(lengths[-3:]), np.log(values[-3:]), 1)[0])


def against_length(device: torch.device, lengths: list[int], chunk: int, repeats: int) -> None:
    print(f"Attention of one head, D = 64, S = T = L, float32, on {describe_device(device)}; chunks of {chunk} keys:")
    methods = {
        "naive": lambda q, k, v: ref.chunked_attention(q, k, v, q.shape[-2]),
        "chunked": lambda q, k, v: ref.chunked_attention(q, k, v, chunk),
        "F.sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
    }
    memory = {name: [] for name in methods}
    seconds = {name: [] for name in methods}
    print(f"{'L':>6} " + " ".join(f"{n + ' MiB':>12} {n + ' s':>12}" for n in methods))
    for L in lengths:
        gen = torch.Generator().manual_seed(L)
        q, k, v = (torch.randn(1, L, 64, generator=gen).to(device) for _ in range(3))
        for name, attend in methods.items():
            with torch.no_grad():
                call = lambda attend=attend, q=q, k=k, v=v: attend(q, k, v)  # noqa: E731
                _, held = peak_memory(call, device)
                took = time_call(call, device, repeats=repeats)
            memory[name].append(held)
            seconds[name].append(took)
        print(f"{L:>6} " + " ".join(f"{memory[n][-1] / 2**20:>12.2f} {seconds[n][-1]:>12.4f}" for n in methods))
    print(f"full L x L matrix of float32 scores at L = {lengths[-1]}: {lengths[-1] ** 2 * 4 / 2**20:.0f} MiB")
    for name in methods:
        print(
            f"{name:>8}: slope of memory {slope(lengths, memory[name]):.2f}, "
            f"of time {slope(lengths, seconds[name]):.2f}"
        )
    print(
        f"At L = {lengths[-1]}: naive / chunked peak memory {memory['naive'][-1] / memory['chunked'][-1]:.1f}x, "
        f"time {seconds['naive'][-1] / seconds['chunked'][-1]:.2f}x; naive / F.sdpa memory "
        f"{memory['naive'][-1] / memory['F.sdpa'][-1]:.1f}x, time {seconds['naive'][-1] / seconds['F.sdpa'][-1]:.1f}x"
    )


def global_attention_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.ReLU(),
        FusedGlobalAttention(64),
        nn.ReLU(),
        nn.Conv2d(64, 32, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 32 * 32, 10),
    )


def networks(device: torch.device, repeats: int) -> None:
    print(f"Notebook 5's networks, a training step on a batch of 64 (Adam), on {describe_device(device)}:")
    builders = {
        "vanilla CNN": nb1.vanilla_cnn,
        "global attention CNN": global_attention_cnn,
        "fully attentional (local)": ref.fully_attentional_net,
    }
    x = torch.randn(64, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (64,), device=device)
    for name, build in builders.items():
        set_seed(0)
        model = build().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, optimizer=optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

        took = time_call(step, device, repeats=repeats)
        params = sum(p.numel() for p in model.parameters())
        macs = count_multiply_adds(model, x[:1])
        print(
            f"{name:>28}: {params:>9,} parameters, {macs / 1e6:>7.1f} M multiply-adds per image, "
            f"{took:.3f} s per step, {took * STEPS_PER_EPOCH / 60:.1f} min per epoch of {STEPS_PER_EPOCH} steps"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, default=8, help="maps per batch for the local/global layers")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=None, help=f"sequence lengths (default {DEFAULT_LENGTHS})"
    )
    parser.add_argument("--chunk", type=int, default=256, help="keys per chunk for --lengths")
    parser.add_argument("--networks", action="store_true", help="time notebook 5's three networks")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else get_device()
    torch.manual_seed(0)
    if args.networks:
        networks(device, args.repeats)
        return
    local_vs_global(device, args.batch_size, args.repeats)
    print()
    against_length(device, sorted(args.lengths or DEFAULT_LENGTHS), args.chunk, args.repeats)


if __name__ == "__main__":
    main()
