"""The replication's streams: a ``SeedKey`` gives the streams its ``SeedSequence`` gives, and a
lazily made stream draws the numbers the stream itself draws (sim/engine/seeds.py)."""

from __future__ import annotations

import pickle

import numpy as np

from sim.engine.seeds import (
    Generators,
    LazyGenerator,
    replication_key,
    replication_seed,
    stream,
)


def test_a_seed_key_gives_the_seed_sequences_streams():
    for seed, c, i in [(0, 0, 0), (2026, 2, 17), (2**40 + 3, 1, 123_456)]:
        key, ss = replication_key(seed, c, i), replication_seed(seed, c, i)
        for k in range(10):
            a = np.random.default_rng(stream(key, k)).random(4)
            b = np.random.default_rng(stream(ss, k)).random(4)
            assert np.array_equal(a, b)
        assert np.array_equal(Generators(key)(3).integers(0, 2**62, 5), stream_draws(ss, 3))


def stream_draws(ss, k):
    return np.random.default_rng(stream(ss, k)).integers(0, 2**62, 5)


def test_a_lazy_stream_draws_the_streams_numbers_whenever_it_is_made():
    key = replication_key(7, 0, 5)
    early, late = Generators(key), Generators(key)
    lazy = late.lazy(4)
    assert not late._made  # nothing made until the first draw
    first = early(4).normal(size=3)
    assert np.array_equal(lazy.normal(size=3), first)
    assert late._made[4] is late(4)  # the stream itself: later draws continue it
    assert np.array_equal(late(4).exponential(2.0, 3), early(4).exponential(2.0, 3))


def test_a_lazy_stream_survives_pickling():
    lazy = LazyGenerator(Generators(replication_key(1, 0, 0)), 2)
    again = pickle.loads(pickle.dumps(lazy))
    assert np.array_equal(again.random(2), Generators(replication_key(1, 0, 0))(2).random(2))
