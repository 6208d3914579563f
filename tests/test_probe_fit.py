"""``edgeroute fit``'s probe rules on synthetic answers (fast): a pre-generation probe whose skips do not transfer
to a source it was not fitted on is refused, one whose skips do is not; the post-generation candidates read only
the engine's primary block."""

from __future__ import annotations

import numpy as np

from edgeroute.bench.probe_fit import (MAX_SKIP_CORRECT, TRANSFER_SLACK, _loso_correct_skipped, post_candidates,
                                      pre_candidates)
from edgeroute.bench.transfer import Dataset
from edgeroute.signals.probe import SCALAR_FEATURES

N_EMBD = 8


def answers(flip_last_source: bool, n: int = 800) -> Dataset:
    """Four sources of two families; the prompt state's first value predicts the answer's correctness, except, when
    ``flip_last_source``, in source s3, where it predicts the opposite (same prompts, a different task)."""
    rng = np.random.default_rng(1)
    prompt = rng.standard_normal((n, N_EMBD)).astype(np.float32)
    source = np.array([f"s{i % 4}" for i in range(n)])
    family = np.array([f"f{i % 8}" for i in range(n)])
    signal = prompt[:, 0] * np.where((source == "s3") & flip_last_source, -1.0, 1.0)
    y = (2.0 * signal + 0.5 * rng.standard_normal(n) > 0).astype(float)
    scalars = rng.standard_normal((n, len(SCALAR_FEATURES))) * 0.01
    return Dataset(np.array([f"i{i}" for i in range(n)]), family, source, np.array(["train"] * n), y, scalars,
                   {"prompt@0": prompt}, np.zeros(n, dtype=np.int64))


def test_a_pre_generation_skip_that_does_not_transfer_to_an_unseen_source_is_caught():
    spec = pre_candidates(0)[0]
    consistent = _loso_correct_skipped(spec, answers(flip_last_source=False))
    flipped = _loso_correct_skipped(spec, answers(flip_last_source=True))
    assert consistent is not None and consistent <= TRANSFER_SLACK * MAX_SKIP_CORRECT
    assert flipped is not None and flipped > TRANSFER_SLACK * MAX_SKIP_CORRECT  # refused: it would skip right answers


def test_the_candidates_read_only_the_primary_block():
    for spec in post_candidates(11) + pre_candidates(11):
        assert set(spec.blocks) <= {"prompt@11", "answer_mean@11"} and spec.novelty_block == "prompt@11"
    assert any(not s.blocks for s in post_candidates(11))  # the training-free logistic competes too
