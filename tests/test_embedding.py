from __future__ import annotations

import pickle

import numpy as np
import pytest

from precision_gym.embedding import SentenceEncoder
from precision_gym.error import ConfigError, DataNotFoundError


def test_real_minilm_embeddings_are_unit_norm_and_cached(encoder):
    encoder.clear_cache()
    texts = ["> go to fridge 1\nThe fridge 1 is closed.", "> open fridge 1\nYou open the fridge 1."]
    a = encoder.encode(texts)
    assert a.shape == (2, 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    b = encoder.encode(texts[::-1])
    np.testing.assert_array_equal(a[::-1], b)
    info = encoder.cache_info()
    assert info["hits"] == 2 and info["misses"] == 2 and encoder.hit_rate == 0.5
    # semantically closer texts are closer in embedding space
    c = encoder.encode_one("> open the fridge 1\nYou open the fridge 1.")
    assert float(c @ a[1]) > float(c @ a[0])


def test_lru_eviction():
    enc = SentenceEncoder(cache_size=2)
    enc.encode(["a", "b", "c"])
    assert enc.cache_info()["size"] == 2
    enc.encode(["a"])  # evicted: a miss
    assert enc.misses == 4


def test_offline_only_errors():
    with pytest.raises(
        DataNotFoundError, match=r"is not a local model folder .* never downloads weights"
    ):
        SentenceEncoder("sentence-transformers/all-mpnet-base-v2")
    with pytest.raises(ConfigError, match="cache_size must be >= 0, got -1"):
        SentenceEncoder(cache_size=-1)
    with pytest.raises(ConfigError, match="expects a sequence of strings, got a single str"):
        SentenceEncoder().encode("text")


def test_pickle_drops_cache_keeps_model_spec(encoder):
    encoder.encode_one("hello")
    clone = pickle.loads(pickle.dumps(encoder))
    assert clone.cache_info()["size"] == 0 and clone.model_spec == encoder.model_spec
    np.testing.assert_allclose(clone.encode_one("hello"), encoder.encode_one("hello"), atol=1e-6)


def _varied_texts() -> list[str]:
    words = [
        "you",
        "are",
        "in",
        "the",
        "middle",
        "of",
        "a",
        "room",
        "looking",
        "quickly",
        "around",
        "you",
        "see",
        "a",
        "cabinet",
    ]
    texts = [" ".join(words[: 1 + i % 15] * (1 + i // 5)) + f" {i}" for i in range(40)]
    return texts + texts[:5]  # repeats: one forward each, every position filled


def test_encoding_on_several_threads_is_bit_identical_to_one(encoder):
    """The forwards (one per token length) run at once, each on one torch thread: the same
    computation as one after another, so the same bits, in the same order."""
    import torch

    texts = _varied_texts()
    assert torch.get_num_threads() == 1  # the library's per-process default
    one = SentenceEncoder(cache_size=0).encode(texts)
    for threads in (2, 3):
        many = SentenceEncoder(cache_size=0).encode(texts, threads=threads)
        assert many.dtype == one.dtype and np.array_equal(many, one)
    assert np.array_equal(one[40:], one[:5])


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_encoding_threads_must_be_a_positive_integer(encoder, threads):
    with pytest.raises(ConfigError, match=r"threads must be an integer >= 1, got"):
        SentenceEncoder().encode(["a"], threads=threads)
