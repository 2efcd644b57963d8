"""Samplers over a toy ``next`` function: no model, every rule checked by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from mtl_report.samplers import BeamSampler, GreedySampler

V, END = 8, 3


def table_next(table: np.ndarray):
    """``next`` from a fixed table of log-probabilities ``logits[prev_token, next_token]``;
    the state counts the steps taken per sequence (so beam reordering can be checked)."""
    logits = tf.constant(table, tf.float32)

    def next_fn(token_ids, state, index, constants):
        out = tf.gather(logits, token_ids[:, 0]) + constants["bias"]
        return out, state + 1

    return next_fn


def uniform_table() -> np.ndarray:
    return np.full((V, V), -5.0)


def run(sampler, table, n=2, steps=6, bias=None):
    constants = {"bias": tf.constant(np.zeros((n, V)) if bias is None else bias, tf.float32)}
    state = tf.zeros([n], tf.int32)
    return sampler(table_next(table), tf.fill([n], 2), state, steps, constants).numpy()


def test_greedy_follows_the_argmax_chain_and_stops_at_end():
    table = uniform_table()
    table[2, 5] = table[5, 6] = table[6, END] = 0.0  # 2 → 5 → 6 → END
    tokens = run(GreedySampler(END), table)
    assert tokens.tolist() == [[5, 6, END, 0, 0, 0]] * 2


def test_forbidden_ids_are_never_produced():
    table = uniform_table()
    table[:, 0] = table[:, 2] = 10.0  # padding and [START] would win
    table[2, 4] = 0.0
    tokens = run(GreedySampler(END, forbidden_ids=(0, 2)), table, steps=4)
    assert not np.isin(tokens, [0, 2]).any()
    assert tokens[0, 0] == 4


def test_no_repeat_ngram_blocks_a_loop():
    table = uniform_table()
    table[2, 4] = table[4, 5] = table[5, 4] = 0.0  # 4 5 4 5 ... forever
    table[4, 6] = table[5, 6] = -1.0
    looped = run(GreedySampler(END), table, steps=6)[0].tolist()
    assert looped == [4, 5, 4, 5, 4, 5]
    blocked = run(GreedySampler(END, no_repeat_ngram_size=2), table, steps=6)[0].tolist()
    pairs = list(itertools.pairwise(blocked))
    assert len(pairs) == len(set(pairs)), blocked  # no bigram twice


def test_beam_finds_the_better_sequence_greedy_misses():
    """2 → 4 (p 0.6) then a flat distribution; 2 → 5 (p 0.4) then END for sure."""
    table = np.full((V, V), -30.0)
    table[2, 4], table[2, 5] = np.log(0.6), np.log(0.4)
    table[4, :] = np.log(1 / V)
    table[4, 0] = table[4, 2] = -30.0
    table[5, END] = 0.0
    greedy = run(GreedySampler(END, forbidden_ids=(0, 2)), table, steps=3)
    assert greedy[0, 0] == 4
    beam = run(BeamSampler(END, beam_width=2, forbidden_ids=(0, 2)), table, steps=3)
    assert beam[0].tolist() == [5, END, 0]


def test_beam_of_width_one_equals_greedy_and_works_in_a_graph():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(V, V))
    bias = rng.normal(size=(3, V))
    greedy = run(GreedySampler(END), table, n=3, bias=bias)
    beam = run(BeamSampler(END, beam_width=1), table, n=3, bias=bias)
    np.testing.assert_array_equal(beam, greedy)
    sampler = BeamSampler(END, beam_width=3)
    constants = {"bias": tf.constant(bias, tf.float32)}

    @tf.function
    def graph():
        return sampler(table_next(table), tf.fill([3], 2), tf.zeros([3], tf.int32), 5, constants)

    assert graph().shape == (3, 5)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="beam_width"):
        BeamSampler(END, beam_width=0)
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        GreedySampler(END, no_repeat_ngram_size=-1)
