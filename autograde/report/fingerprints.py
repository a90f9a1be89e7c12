"""Winnowed k-gram fingerprints (Schleimer, Wilkerson and Aiken, "Winnowing: local algorithms for document
fingerprinting", SIGMOD 2003: the method of MOSS).

Every run of ``k`` consecutive tokens is hashed; of every ``window`` consecutive hashes the smallest is kept (the
rightmost on a tie). Two token streams that share a run of at least ``k + window - 1`` tokens are guaranteed to
share a fingerprint, and runs shorter than ``k`` tokens are never matched. Hashes are stable across processes
and runs (CRC-32 of each token, then a polynomial over the k-gram), so fingerprints can be computed in parallel.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

K = 12  # tokens per k-gram: shorter matches are noise (a normalised line is about 10 to 20 tokens)
WINDOW = 8  # k-grams per window: any match of K + WINDOW - 1 = 19 tokens or more is found

_BASE = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime
_MIX = np.uint64(0x9E3779B97F4A7C15)
_token_codes: dict[str, int] = {}


def token_codes(tokens: Sequence[str]) -> np.ndarray:
    """A stable 32-bit code per token, as uint64 (shape (len(tokens),))."""
    codes = np.empty(len(tokens), dtype=np.uint64)
    for i, token in enumerate(tokens):
        code = _token_codes.get(token)
        if code is None:
            code = _token_codes[token] = zlib.crc32(token.encode("utf-8", "replace")) + 1
        codes[i] = code
    return codes


def kgram_hashes(codes: np.ndarray, k: int = K) -> np.ndarray:
    """The hash of every k-gram (shape (max(len(codes) - k + 1, 0),), uint64; arithmetic modulo 2**64)."""
    n = len(codes) - k + 1
    if n <= 0:
        return np.empty(0, dtype=np.uint64)
    hashes = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            hashes = hashes * _BASE + codes[j : j + n]
        hashes = hashes * _MIX
        hashes ^= hashes >> np.uint64(29)
    return hashes


def winnow(hashes: np.ndarray, window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """The fingerprints of a document: (hashes, the k-gram positions they were taken at), both of shape (F,),
    positions increasing."""
    if len(hashes) == 0:
        return hashes, np.empty(0, dtype=np.int64)
    if len(hashes) <= window:
        position = len(hashes) - 1 - int(np.argmin(hashes[::-1]))
        return hashes[[position]], np.array([position], dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(hashes, window)  # (n - window + 1, window)
    rightmost = window - 1 - np.argmin(windows[:, ::-1], axis=1)
    positions = np.unique(np.arange(len(windows)) + rightmost)
    return hashes[positions], positions


def fingerprints(tokens: Sequence[str], k: int = K, window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Winnowed fingerprints of a token stream: (hashes, positions), as :func:`winnow` returns them."""
    return winnow(kgram_hashes(token_codes(tokens), k), window)
