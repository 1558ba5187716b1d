"""Disentanglement scores of a representation against known generative factors, as torchmetrics
``Metric``s: MIG (Chen et al. 2018), the FactorVAE score (Kim & Mnih 2018), DCI disentanglement
(Eastwood & Williams 2018) and SAP (Kumar et al. 2018).

Each metric keeps every example's code (posterior mean, (B, D)) and factor classes ((B, K)
integers) in ``"cat"`` states, and computes its score once in ``compute`` on all of them: under
DDP the ranks' examples are gathered first. The rows are put in a canonical order (sorted by
factors, then codes) before any seeded draw, so the score is the same whichever rank saw which
example, and equals the one-process score on the same examples.

The definitions follow disentanglement_lib (``evaluation/metrics/{mig,factor_vae,dci,
sap_score}.py``), computed on the examples seen instead of samples drawn from a simulator, and
without scikit-learn (each function says what replaces its estimator). Mutual informations and
entropies are in nats; every score lies in [0, 1], higher is better.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

NUM_BINS = 20
"""Equal-width bins each code is discretized into for MIG and SAP, as disentanglement_lib."""


# --- the scores, as pure functions of codes (N, D) and factor classes (N, K) ------------------


def discretize(codes: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Each code column cut into ``num_bins`` equal-width bins over its range: int (N, D) in
    1..num_bins (disentanglement_lib's ``make_discretizer``: ``np.digitize`` on the edges of
    ``np.histogram``, the last edge dropped)."""
    return np.stack([np.digitize(column, np.histogram(column, num_bins)[1][:-1])
                     for column in codes.T], axis=1)


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two discrete samples (N,), from their contingency table."""
    _, a_index = np.unique(a, return_inverse=True)
    _, b_index = np.unique(b, return_inverse=True)
    shape = (a_index.max() + 1, b_index.max() + 1)
    joint = np.bincount(a_index * shape[1] + b_index, minlength=shape[0] * shape[1])
    joint = joint.reshape(shape) / len(a)
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    seen = joint > 0
    return float((joint[seen] * np.log(joint[seen] / outer[seen])).sum())


def mutual_information_gap(codes: np.ndarray, factors: np.ndarray) -> float:
    """MIG: for each factor, the gap between the two codes that share the most information with
    it, over the factor's entropy, averaged over factors. Codes are discretized into
    :data:`NUM_BINS` bins first (disentanglement_lib's ``discrete_mig``)."""
    _check_codes(codes, "MIG", minimum=2)
    binned = discretize(codes)
    gaps = []
    for k, factor in enumerate(factors.T):
        entropy = _mutual_information(factor, factor)
        if entropy == 0:
            raise ValueError(f"factor column {k} takes one value over the {len(factor)} "
                             "examples, so MIG is undefined: drop the column or pass examples "
                             "where it varies")
        informations = sorted((_mutual_information(code, factor) for code in binned.T),
                              reverse=True)
        gaps.append((informations[0] - informations[1]) / entropy)
    return float(np.mean(gaps))


def _bin_classifier_accuracy(train_code: np.ndarray, train_y: np.ndarray,
                             test_code: np.ndarray, test_y: np.ndarray) -> float:
    """Accuracy on the test examples of the classifier that predicts, for each of
    :data:`NUM_BINS` equal-width bins of one code (edges from the training examples), the most
    frequent class of the training examples in it (the most frequent overall for empty bins)."""
    edges = np.histogram(train_code, NUM_BINS)[1][1:-1]
    classes, y_index = np.unique(train_y, return_inverse=True)
    counts = np.zeros((NUM_BINS, len(classes)))
    np.add.at(counts, (np.digitize(train_code, edges), y_index), 1)
    counts[counts.sum(1) == 0] = counts.sum(0)
    predicted = classes[counts.argmax(1)][np.digitize(test_code, edges)]
    return float(np.mean(predicted == test_y))


def separated_attribute_predictability(codes: np.ndarray, factors: np.ndarray,
                                       generator: np.random.Generator,
                                       test_fraction: float = 0.5) -> float:
    """SAP: for each factor, the gap between the two codes that best predict it alone, averaged
    over factors. A code's score for a factor is the test accuracy of a classifier of the factor
    from that code only, trained on the other examples (a random ``test_fraction`` of them is
    held out). disentanglement_lib's classifier is scikit-learn's ``LinearSVC``; here it is the
    majority class in each of :data:`NUM_BINS` bins of the code (:func:`_bin_classifier_accuracy`),
    which also fits factors that are not monotone in the code."""
    _check_codes(codes, "SAP", minimum=2)
    test = generator.permutation(len(codes)) < round(test_fraction * len(codes))
    scores = np.array([[_bin_classifier_accuracy(code[~test], factor[~test], code[test],
                                                 factor[test])
                        for factor in factors.T] for code in codes.T])
    top_two = np.sort(scores, axis=0)[-2:]
    return float(np.mean(top_two[1] - top_two[0]))


def lasso_importance(codes: np.ndarray, factors: np.ndarray, alpha: float | None = None,
                     iterations: int = 200) -> np.ndarray:
    """How much each code matters to predict each factor: the absolute weights (D, K) of a
    Lasso regression of each standardized factor class index on the standardized codes,
    ``min_w 1/(2N) ‖y − Xw‖² + alpha ‖w‖₁``, by cyclic coordinate descent.

    Eastwood & Williams fit Lasso and random forests; disentanglement_lib fits gradient-boosted
    trees (scikit-learn's). The Lasso is the one of these short to write exactly without
    scikit-learn: it reads a linear (not a cyclic or categorical) code of a factor, and
    ``alpha`` sets the weights of codes correlated with a factor by less than it to zero. Its
    default, 4/√N, is four standard errors of the sample correlation of independent variables:
    a code independent of every factor gets no importance from sampling noise.
    """
    alpha = 4 / np.sqrt(len(codes)) if alpha is None else alpha
    x = _standardized(codes)
    y = _standardized(factors.astype(np.float64))
    count, dims = x.shape
    column_norms = (x**2).sum(0) / count
    weights = np.zeros((dims, y.shape[1]))
    residual = y.copy()
    for _ in range(iterations):
        for d in range(dims):
            if column_norms[d] == 0:
                continue
            residual += np.outer(x[:, d], weights[d])
            rho = x[:, d] @ residual / count
            weights[d] = np.sign(rho) * np.maximum(np.abs(rho) - alpha, 0) / column_norms[d]
            residual -= np.outer(x[:, d], weights[d])
    return np.abs(weights)


def _standardized(values: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit variance; constant columns become zeros."""
    centred = values - values.mean(0)
    scale = values.std(0)
    return np.divide(centred, scale, out=np.zeros_like(centred), where=scale > 0)


def dci_disentanglement(importance: np.ndarray) -> float:
    """DCI disentanglement of an importance matrix (D codes, K factors): one minus the entropy
    (base K) of each code's importance over the factors, weighted by the code's share of the
    total importance (disentanglement_lib's ``disentanglement``); 0 when nothing matters."""
    if importance.sum() == 0:
        return 0.0
    p = importance + 1e-11
    p = p / p.sum(1, keepdims=True)
    per_code = 1 + (p * np.log(p)).sum(1) / np.log(importance.shape[1])
    return float((per_code * importance.sum(1) / importance.sum()).sum())


def factorvae_score(codes: np.ndarray, factors: np.ndarray, generator: np.random.Generator,
                    batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                    prune_threshold: float = 0.05) -> float:
    """The FactorVAE score: the accuracy of a majority-vote classifier that names the factor
    held fixed in a batch from the code whose variance, over the code's variance on all
    examples, is smallest in that batch.

    Each vote draws a factor k and an example at random, then ``batch_size`` examples (with
    replacement) sharing that example's value of k: the examples seen stand in for
    disentanglement_lib's simulator. Codes with a standard deviation below ``prune_threshold``
    (collapsed to the prior) take no part (disentanglement_lib's ``prune_dims``); with none
    left the score is 0. The classifier is fitted on ``num_train`` votes and scored on
    ``num_eval`` others.
    """
    global_variance = codes.var(0, ddof=1)
    active = np.flatnonzero(np.sqrt(global_variance) >= prune_threshold)
    if len(active) == 0:
        return 0.0
    codes = codes[:, active] / np.sqrt(global_variance[active])
    groups = [_groups(factor) for factor in factors.T]
    train = _votes(codes, groups, generator, batch_size, num_train)
    evaluation = _votes(codes, groups, generator, batch_size, num_eval)
    classifier = train.argmax(0)
    return float(evaluation[classifier, np.arange(len(active))].sum() / evaluation.sum())


def _groups(factor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The examples ordered by ``factor``, and for each example the start and size of its value's
    run in that order: (order, run of each example, run starts, run sizes)."""
    order = np.argsort(factor, kind="stable")
    _, run_of_sorted, sizes = np.unique(factor[order], return_inverse=True, return_counts=True)
    run = np.empty_like(run_of_sorted)
    run[order] = run_of_sorted
    return order, run, np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes


def _votes(codes: np.ndarray, groups: list, generator: np.random.Generator, batch_size: int,
           count: int, chunk: int = 500) -> np.ndarray:
    """``count`` votes (factor held fixed, code of least variance), as counts (K, D)."""
    votes = np.zeros((len(groups), codes.shape[1]), dtype=np.int64)
    for first in range(0, count, chunk):
        n = min(chunk, count - first)
        fixed = generator.integers(len(groups), size=n)
        anchors = generator.integers(len(codes), size=n)
        offsets = generator.random((n, batch_size))
        members = np.empty((n, batch_size), dtype=np.int64)
        for k, (order, run, starts, sizes) in enumerate(groups):
            rows = fixed == k
            r = run[anchors[rows]]
            picks = starts[r, None] + (offsets[rows] * sizes[r, None]).astype(np.int64)
            members[rows] = order[picks]
        least = codes[members].var(1, ddof=1).argmin(1)
        np.add.at(votes, (fixed, least), 1)
    return votes


def _check_codes(codes: np.ndarray, score: str, minimum: int) -> None:
    if codes.shape[1] < minimum:
        raise ValueError(f"{score} compares the best two codes of each factor: it needs codes "
                         f"of at least {minimum} dimensions, got {codes.shape[1]}")


# --- the Metrics ---------------------------------------------------------------------------


class _FactorCodeMetric(Metric):
    """Keeps every example's code and factors (``"cat"`` states) for a score computed on all of
    them; ``seed`` seeds the score's random draws, made after putting the rows in a canonical
    order, so the value does not depend on the order (or the ranks) the examples came in."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.add_state("codes", default=[], dist_reduce_fx="cat")
        self.add_state("factors", default=[], dist_reduce_fx="cat")

    def update(self, codes: Tensor, factors: Tensor) -> None:
        """Add a batch: codes (B, D), such as posterior means, and the integer factor classes
        (B, K) of the same examples, such as a dSprites batch's labels."""
        if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
            raise ValueError(
                f"{type(self).__name__}.update takes codes (B, D) and factors (B, K) of the "
                f"same examples, got {tuple(codes.shape)} and {tuple(factors.shape)}")
        if factors.is_floating_point():
            raise TypeError(f"{type(self).__name__}.update takes factor classes as integers, "
                            f"got {factors.dtype}: pass the class indices, not the values")
        self.codes.append(codes.detach().to(torch.float64))
        self.factors.append(factors.detach().long())

    def _examples(self) -> tuple[np.ndarray, np.ndarray]:
        """All codes and factors seen, as NumPy arrays sorted by factors, then codes."""
        codes = dim_zero_cat(self.codes).cpu().numpy()
        factors = dim_zero_cat(self.factors).cpu().numpy()
        order = np.lexsort(np.concatenate([codes, factors], axis=1).T[::-1])
        return codes[order], factors[order]

    def _generator(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


class MutualInformationGap(_FactorCodeMetric):
    """MIG (Chen et al. 2018), as :func:`mutual_information_gap`: for each factor, the
    normalized gap in mutual information between the two codes most informative about it."""

    def compute(self) -> Tensor:
        return torch.tensor(mutual_information_gap(*self._examples()))


class SAPScore(_FactorCodeMetric):
    """SAP (Kumar et al. 2018), as :func:`separated_attribute_predictability`: for each factor,
    the gap in held-out accuracy between the two codes that predict it best alone."""

    def compute(self) -> Tensor:
        return torch.tensor(separated_attribute_predictability(*self._examples(),
                                                               self._generator()))


class DCIDisentanglement(_FactorCodeMetric):
    """DCI disentanglement (Eastwood & Williams 2018), as :func:`dci_disentanglement` of the
    Lasso importances of :func:`lasso_importance` (``alpha``): how much each code serves a single
    factor, weighted by how much it matters."""

    def __init__(self, alpha: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = alpha

    def compute(self) -> Tensor:
        return torch.tensor(dci_disentanglement(lasso_importance(*self._examples(),
                                                                 alpha=self.alpha)))


class FactorVAEScore(_FactorCodeMetric):
    """The FactorVAE score (Kim & Mnih 2018), as :func:`factorvae_score`: how often the code of
    least relative variance in a batch with one factor fixed names that factor."""

    def __init__(self, batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_size, self.num_train, self.num_eval = batch_size, num_train, num_eval

    def compute(self) -> Tensor:
        return torch.tensor(factorvae_score(*self._examples(), self._generator(),
                                            self.batch_size, self.num_train, self.num_eval))
