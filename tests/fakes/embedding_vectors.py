"""Deterministic embedding vectors for the fake providers (OpenAI and Gemini embeddings).

A vector depends only on the model and the input: the first ``dimensions`` draws of a Gaussian
generator seeded with both, scaled to unit length, every component a float32 value (so a vector
sent as JSON floats and the same vector sent as base64 float32 bytes decode to the same numbers).
Asking for fewer dimensions gives the longer vector's leading components, renormalised (like
OpenAI's and Gemini's Matryoshka embeddings).
"""

from __future__ import annotations

import hashlib
import math
import random
from array import array


def embedding_vector(model: str, item: str | list[int], dimensions: int) -> list[float]:
    """The fake's embedding of ``item`` (a text, or a list of token ids) by ``model``."""
    key = item if isinstance(item, str) else "tokens:" + ",".join(map(str, item))
    seed = hashlib.sha256(f"{model}\0{key}".encode()).digest()
    generator = random.Random(seed)
    values = [generator.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return array("f", (v / norm for v in values)).tolist()
