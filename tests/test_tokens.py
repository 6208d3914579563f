"""The training-free token features: the answer span, the first content token, the statistics."""

import math

import numpy as np
import pytest

from edgeroute.local.base import Generation
from edgeroute.signals.tokens import TOKEN_FEATURES, TokenStatsSignal, span_mask, token_features


def gen(texts, lp, ent=None, margin=None, ids=None, finish="stop"):
    n = len(texts)
    return Generation(text="".join(texts), token_ids=list(ids if ids is not None else range(n)),
                      token_logprobs=np.asarray(lp, dtype=float),
                      token_entropies=np.asarray(ent if ent is not None else [0.5] * n, dtype=float),
                      prompt_tokens=5, prefill_s=0.0, decode_s=0.0, finish_reason=finish,
                      token_margins=np.asarray(margin if margin is not None else [1.0] * n, dtype=float),
                      token_texts=list(texts))


@pytest.mark.parametrize(("texts", "question", "span"), [
    (["The", " capital", " of", " France", " is", " Paris", "."], "What is the capital of France?",
     [0, 0, 0, 0, 0, 1, 0]),
    (["The", " answer", " is", " (", "B", ")"], "Which planet?\nA. Venus\nB. Mercury", [0, 0, 0, 0, 0, 0]),
    (["Lub", "ny"], "What is the capital of Lubny Raion?", [0, 0]),  # restates the question: empty span
    (["San", " Raf", "ael"], "What is the capital of Marin County?", [1, 1, 1]),
    (["4", "2"], "What is 17 + 25?", [1, 1]),
    ([" Yes", ","], "Is it? Answer yes or no.", [0, 0]),
])
def test_the_answer_span_leaves_out_restated_and_framing_words(texts, question, span):
    assert span_mask(texts, question).astype(int).tolist() == span


def test_features_hand_case():
    g = gen(["The", " capital", " is", " Paris", "."], [-0.1, -0.2, -0.3, -2.0, -0.4],
            ent=[0.1, 0.2, 0.3, 1.5, 0.4], margin=[3.0, 2.0, 1.0, 0.2, 4.0])
    f = token_features(g, "What is the capital of France?")
    assert set(f) == set(TOKEN_FEATURES)
    assert f["sum_nll"] == pytest.approx(3.0) and f["lp_min"] == pytest.approx(-2.0)
    assert f["first_lp"] == pytest.approx(-2.0) and f["first_entropy"] == pytest.approx(1.5)
    assert f["first_margin"] == pytest.approx(0.2) and f["span_mean_nll"] == pytest.approx(2.0)
    assert f["span_log_tokens"] == pytest.approx(math.log1p(1)) and f["span_empty"] == 0.0
    assert f["lp_q25"] == pytest.approx(np.quantile([-0.1, -0.2, -0.3, -2.0, -0.4], 0.25))
    assert f["mean_margin"] == pytest.approx(2.04) and f["min_margin"] == pytest.approx(0.2)
    assert f["distinct_frac"] == 1.0 and f["loop_frac"] == 0.0 and f["cut_by_length"] == 0.0


def test_a_loop_and_a_cut_answer_show_in_the_features():
    ids = [5, 6] * 16
    g = gen([" w", "-n"] * 16, [-0.05] * 32, ids=ids, finish="length")
    f = token_features(g, "Spell it backwards.")
    assert f["distinct_frac"] == pytest.approx(2 / 32) and f["loop_frac"] == pytest.approx(1.0)
    assert f["cut_by_length"] == 1.0


def test_no_scored_token_or_a_non_finite_value_gives_nothing():
    assert token_features(gen([], []), "q") == {}
    assert token_features(gen(["a"], [float("nan")]), "q") == {}
    signal = TokenStatsSignal()
    assert signal.compute(gen(["x"], [-0.5]), [{"role": "user", "content": "q"}])["sum_nll"] == pytest.approx(0.5)


def test_an_engine_without_margins_or_texts_still_gets_the_rest():
    g = gen(["a", "b"], [-0.1, -0.2])
    g.token_margins = np.zeros(0)
    g.token_texts = []
    f = token_features(g, "q")
    assert f["mean_margin"] == 0.0 and f["span_empty"] == 0.0 and f["sum_nll"] == pytest.approx(0.3)
