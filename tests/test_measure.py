"""Tests for course_utils.measure: multiply-adds counted from what runs, peak memory, and time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.measure import count_multiply_adds, peak_memory, time_call

MIB = 2**20


def test_multiply_adds_of_linear_and_convolution_layers():
    assert count_multiply_adds(nn.Linear(10, 5), torch.randn(1, 10)) == 10 * 5
    assert count_multiply_adds(nn.Linear(10, 5), torch.randn(3, 10)) == 3 * 10 * 5
    conv = nn.Conv2d(3, 4, kernel_size=3, padding=1)
    assert count_multiply_adds(conv, torch.randn(1, 3, 8, 8)) == 8 * 8 * 4 * 3 * 3 * 3
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    assert count_multiply_adds(model, torch.randn(1, 3, 8, 8)) == 8 * 8 * 4 * 27 + 256 * 10  # ReLU is free


def test_multiply_adds_of_attention_written_out_and_fused_agree():
    q, k, v = torch.randn(1, 2, 16, 8), torch.randn(1, 2, 24, 8), torch.randn(1, 2, 24, 4)
    written = count_multiply_adds(lambda: torch.softmax(q @ k.transpose(-2, -1) / 8**0.5, -1) @ v)
    fused = count_multiply_adds(lambda: F.scaled_dot_product_attention(q, k, v))
    assert written == fused == 2 * 16 * 24 * (8 + 4)


def test_the_peak_counts_what_the_call_holds_at_once():
    def one_at_a_time():
        for _ in range(4):
            t = torch.ones(MIB // 4)  # 1 MiB of float32
            del t

    def all_at_once():
        return [torch.ones(MIB // 4) for _ in range(4)]

    _, sequential = peak_memory(one_at_a_time)
    kept, together = peak_memory(all_at_once)
    assert MIB <= sequential < 1.1 * MIB
    assert 4 * MIB <= together < 4.1 * MIB and len(kept) == 4


def test_tensors_that_existed_before_the_call_are_not_counted():
    big = torch.ones(8 * MIB // 4)
    result, held = peak_memory(lambda: big.sum())
    assert result.item() == big.numel() and held < MIB


def test_the_peak_of_attention_grows_with_the_matrix_of_scores():
    q = torch.randn(1, 512, 16)
    _, naive = peak_memory(lambda: torch.softmax(q @ q.transpose(-2, -1), -1) @ q)
    assert naive >= 512 * 512 * 4  # the (512, 512) float32 scores exist at once


def test_peak_memory_rejects_devices_it_cannot_measure():
    with pytest.raises(ValueError, match="CPU or a CUDA GPU"):
        peak_memory(lambda: None, "meta")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_peak_memory_on_a_gpu():
    _, held = peak_memory(lambda: torch.ones(MIB // 4, device="cuda"), "cuda")
    assert MIB <= held < 2 * MIB


def test_time_call_runs_the_warm_up_and_the_repeats_and_returns_the_median():
    calls = []
    seconds = time_call(lambda: calls.append(1), repeats=5, warmup=2)
    assert len(calls) == 7 and 0 <= seconds < 0.1
