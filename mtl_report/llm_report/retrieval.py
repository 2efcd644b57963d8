"""In-context examples: the k training studies whose findings look most like the query's.

Similarity is over findings vectors, not images or text: the examples are there to show the
language model how a report with *these* findings is written. The training side uses the
training labels (1 / 0, unknown as 0.5: halfway, so it matches neither side); the query
side uses the states of the study's description in the same coding (present 1, absent 0,
uncertain 0.5: :func:`~mtl_report.llm_report.description.state_vector`), so examples match
what the description says rather than the raw probabilities. Distance is
Euclidean. Many studies share a vector (most are normal), so ties are broken by a seeded
random order, recorded with the run, and examples whose report text repeats one already
chosen are skipped: three copies of the same normal report teach the model nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ExampleRetriever:
    """Nearest training studies by findings vector.

    Args:
        train_vectors: (N, K) training labels (NaN = unknown).
        train_reports: N reference reports (for de-duplication).
        seed: seed of the tie-breaking order.
    """

    def __init__(self, train_vectors: np.ndarray, train_reports: Sequence[str], seed: int = 0):
        vectors = np.asarray(train_vectors, dtype="float64")
        if vectors.ndim != 2:
            raise ValueError(f"train vectors must be (N, K), got shape {vectors.shape}")
        if len(train_reports) != len(vectors):
            raise ValueError(f"{len(vectors)} training vectors but {len(train_reports)} reports")
        self.vectors = np.where(np.isnan(vectors), 0.5, vectors)
        self.reports = [" ".join(str(r).split()).lower() for r in train_reports]
        self.tiebreak = np.random.default_rng(seed).permutation(len(vectors))
        self.seed = seed

    def __len__(self) -> int:
        return len(self.vectors)

    def nearest(self, query: np.ndarray, k: int) -> list[int]:
        """Indices of up to ``k`` training studies with distinct reports, nearest first."""
        if k <= 0 or len(self) == 0:
            return []
        query = np.asarray(query, dtype="float64")
        if query.shape != (self.vectors.shape[1],):
            raise ValueError(f"query has shape {query.shape}, expected ({self.vectors.shape[1]},)")
        query = np.where(np.isnan(query), 0.5, query)
        distance = np.sqrt(((self.vectors - query) ** 2).sum(axis=1))
        order = np.lexsort((self.tiebreak, np.round(distance, 9)))
        chosen, seen = [], set()
        for i in order:
            if self.reports[i] in seen or not self.reports[i]:
                continue
            seen.add(self.reports[i])
            chosen.append(int(i))
            if len(chosen) == k:
                break
        return chosen
