"""Multimodal fusion degree (VALUE task 1, Cao et al. 2020).

Per layer, cluster token states with k-means (k = 2) and compare clusters with the modality
labels (text = 0, image = 1) by normalised mutual information,
``NMI = I(Y; C) / mean(H(Y), H(C))``. NMI near 1: the clusters *are* the modalities, so text
and image stay apart (little fusion); NMI near 0: clusters ignore modality (fused).
The paper does not say whether it clustered each image-text pair or all tokens pooled, so both
are reported. ``average_method`` picks the mean in the denominator: ``"arithmetic"``
(scikit-learn's default) or ``"geometric"`` (older scikit-learn).

k-means has local optima: every fit keeps the best inertia of ``n_init >= 10`` restarts, and both
measures are repeated over several k-means seeds so the rows show how much they still move
(another seed moved the per-example mean by 0.004-0.017 per layer on the demo).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score
from threadpoolctl import threadpool_limits

AverageMethod = Literal["arithmetic", "geometric"]
_METHODS = ("arithmetic", "geometric")
MIN_N_INIT = 10


def modality_nmi(
    embeddings: np.ndarray,
    modality: np.ndarray,
    average_method: AverageMethod = "arithmetic",
    seed: int = 0,
    n_init: int = MIN_N_INIT,
) -> float:
    """NMI between 2-means clusters of ``embeddings`` (n, d) and ``modality`` (n,) 0/1 labels.

    Inputs may be float16 (the cache dtype); clustering runs in float64. If all points are
    identical k-means finds one cluster and the NMI is 0 (nothing separates the modalities).
    """
    return _fit_nmi(embeddings, modality, average_method, seed, n_init)[0]


def _fit_nmi(
    embeddings: np.ndarray,
    modality: np.ndarray,
    average_method: AverageMethod,
    seed: int,
    n_init: int,
) -> tuple[float, float]:
    """(NMI, inertia) of the best of ``n_init`` k-means restarts."""
    if n_init < MIN_N_INIT:
        raise ValueError(f"n_init must be >= {MIN_N_INIT} (k-means restarts), got {n_init}")
    if average_method not in _METHODS:
        raise ValueError(f"average_method must be one of {_METHODS}, got {average_method!r}")
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(modality).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"embeddings (n, d) and modality (n,) disagree: {x.shape} vs {y.shape}")
    if x.shape[0] < 2:
        raise ValueError("need at least 2 points to cluster")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate points: < 2 clusters
        km = KMeans(n_clusters=2, n_init=n_init, random_state=seed).fit(x)
    nmi = normalized_mutual_info_score(y, km.labels_, average_method=average_method)
    return float(nmi), float(km.inertia_)


def nmi_over_seeds(
    embeddings: np.ndarray,
    modality: np.ndarray,
    average_method: AverageMethod,
    seeds: list[int],
    n_init: int = MIN_N_INIT,
) -> dict[str, float]:
    """The NMI of the lowest-inertia clustering over k-means ``seeds`` (each with ``n_init``
    restarts), and the spread of the per-seed NMIs (``seed_std``, ``seed_min``, ``seed_max``)."""
    if not seeds:
        raise ValueError("need at least one k-means seed")
    fits = [_fit_nmi(embeddings, modality, average_method, s, n_init) for s in seeds]
    values = np.array([nmi for nmi, _ in fits])
    best = int(np.argmin([inertia for _, inertia in fits]))
    return {
        "nmi": float(values[best]),
        "seed_std": float(values.std()),
        "seed_min": float(values.min()),
        "seed_max": float(values.max()),
    }


def select_examples(n_examples: int, max_examples: int | None, seed: int) -> np.ndarray:
    """All examples, or a seeded random subset in increasing order (cache rows are sorted by
    split, so taking the first ``max_examples`` would bias the sample)."""
    if max_examples is None or max_examples >= n_examples:
        return np.arange(n_examples)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_examples, size=max_examples, replace=False))


def fusion_degree(
    hidden: Any,
    modality: np.ndarray,
    token_offset: np.ndarray,
    average_method: AverageMethod = "arithmetic",
    seed: int = 0,
    max_examples: int | None = None,
    max_pooled_tokens: int = 20_000,
    n_init: int = MIN_N_INIT,
    kmeans_seeds: int = 5,
) -> dict[str, Any]:
    """Fusion degree for every layer, per example and pooled.

    Args:
        hidden: ``(L, T, d)`` token states of all examples (``tokens/hidden``); a numpy array or
            anything indexable the same way (an h5py dataset: one whole layer is read at a
            time, so memory holds ``T * d`` values, never all layers).
        modality: ``(T,)`` 0 text / 1 image.
        token_offset: ``(E+1,)``; example ``e`` owns tokens ``[off[e], off[e+1])``.
        max_examples: use a seeded random subset of this many examples (both measures).
        max_pooled_tokens: the pooled measure clusters a seeded random subset of at most this
            many tokens of the selected examples (k-means over all tokens is slow).
        n_init: k-means restarts per fit (best inertia kept), at least 10.
        kmeans_seeds: both measures are fitted with k-means seeds ``seed ...
            seed + kmeans_seeds - 1``. Pooled: the lowest inertia gives ``pooled``, the per-seed
            NMIs give ``pooled_seed_std`` / ``_min`` / ``_max``. Per example: ``per_example_mean``
            is the mean at ``seed``; the per-seed means give ``per_example_seed_std`` / ``_min``
            / ``_max``.

    Returns:
        ``per_example_mean`` / ``per_example_std`` ``(L,)``: mean and population std over
        examples of the per-pair NMI at k-means ``seed``, and the spread of that mean over the
        k-means seeds (``per_example_seed_std`` / ``_min`` / ``_max``; examples with fewer than
        2 tokens of either modality are skipped; ``n_examples`` used, ``n_skipped``);
        ``pooled`` ``(L,)``: the NMI of all (subsampled) tokens clustered together, its spread
        over k-means seeds,
        ``n_pooled_tokens``; ``average_method``.
        NMI near 1 = modalities apart, near 0 = fused.
    """
    modality = np.asarray(modality).reshape(-1)
    off = np.asarray(token_offset, dtype=np.int64).reshape(-1)
    num_layers = int(hidden.shape[0])
    if hidden.shape[1] != modality.shape[0] or off[-1] != modality.shape[0]:
        raise ValueError("hidden, modality and token_offset disagree on the token count")

    chosen = select_examples(len(off) - 1, max_examples, seed)
    usable: list[tuple[int, int]] = []
    for e in chosen:
        start, stop = int(off[e]), int(off[e + 1])
        mod = modality[start:stop]
        n_image = int(np.count_nonzero(mod == 1))
        if n_image >= 2 and (stop - start - n_image) >= 2:
            usable.append((start, stop))
    n_skipped = len(chosen) - len(usable)

    ranges = [np.arange(off[e], off[e + 1]) for e in chosen]
    pool = np.concatenate(ranges) if ranges else np.zeros(0, dtype=np.int64)
    if len(pool) > max_pooled_tokens:
        rng = np.random.default_rng(seed)
        pool = np.sort(rng.choice(pool, size=max_pooled_tokens, replace=False))
    pool_mod = modality[pool]
    pool_ok = len(pool) >= 2 and len(np.unique(pool_mod)) == 2

    mean = np.full(num_layers, np.nan)
    std = np.full(num_layers, np.nan)
    spread = {k: np.full(num_layers, np.nan) for k in ("seed_std", "seed_min", "seed_max")}
    pooled = {k: np.full(num_layers, np.nan) for k in ("nmi", "seed_std", "seed_min", "seed_max")}
    seeds = [seed + i for i in range(kmeans_seeds)]
    for layer in range(num_layers):
        states = np.asarray(hidden[layer])  # one layer in memory at a time
        if usable:
            # k-means on one pair's ~50-100 tokens is tiny: waking OpenMP threads for every
            # fit costs more than the fit (8x slower measured on 2 busy cores): one thread
            with threadpool_limits(limits=1, user_api="openmp"):
                scores = np.array(
                    [
                        [modality_nmi(states[a:b], modality[a:b], average_method, s, n_init)
                         for a, b in usable]
                        for s in seeds
                    ]
                )  # fmt: skip
            mean[layer], std[layer] = float(np.mean(scores[0])), float(np.std(scores[0]))
            means = scores.mean(axis=1)  # one mean over examples per k-means seed
            spread["seed_std"][layer] = float(means.std())
            spread["seed_min"][layer], spread["seed_max"][layer] = means.min(), means.max()
        if pool_ok:
            fit = nmi_over_seeds(states[pool], pool_mod, average_method, seeds, n_init)
            for key, value in fit.items():
                pooled[key][layer] = value
    return {
        "per_example_mean": mean,
        "per_example_std": std,
        **{f"per_example_{k}": v for k, v in spread.items()},
        "pooled": pooled["nmi"],
        "pooled_seed_std": pooled["seed_std"],
        "pooled_seed_min": pooled["seed_min"],
        "pooled_seed_max": pooled["seed_max"],
        "n_examples": len(usable),
        "n_skipped": n_skipped,
        "n_pooled_tokens": int(len(pool)),
        "average_method": average_method,
    }
