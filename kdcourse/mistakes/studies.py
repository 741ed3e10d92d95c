"""The mistakes of the CIFAR-10 studies (lessons 08 and 08c): the cross-entropy of a transfer set and the
paired per-seed gain.

A glossary: each mistake's id (``exercise.mistake``), then, indented, what a checker says of it.
"""

from __future__ import annotations

from .entry import entries

ENTRIES = entries("""
labeled_cross_entropy.over_batch
    it divides by the batch size, counting the unlabelled rows too: average over the LABELLED rows only (divide
    by their number), so the loss does not shrink as the pool grows.

labeled_cross_entropy.nan_when_empty
    it returns NaN for a batch without a labelled row (0 / 0, as F.cross_entropy(..., ignore_index=-1) does):
    return 0 then, e.g. `logits.sum() * 0.0`, which keeps the graph and gives a zero gradient.

labeled_cross_entropy.sum
    it sums over the labelled rows; average them (the mean over the labelled rows).

labeled_cross_entropy.label_minus_one
    The label -1 means 'no label': keep only the rows with y != -1 before the cross-entropy (logits[keep], y[keep]).

labeled_cross_entropy.unexplained
    {name} on a batch with {batch} returned {out}, expected {expected}. No classic mistake explains this: keep the
    rows with y != -1, take F.cross_entropy on them (a mean), and return 0 when there are none.

paired_gain.reversed
    the sign is reversed: it subtracts the method from the baseline. A gain is method_runs[i] -
    baseline_runs[i], positive when the method is better.

paired_gain.population_std
    the spread is the population standard deviation (np.std's default, statistics.pstdev: divided by n). Over 3
    seeds that understates it by a fifth: use the sample standard deviation, np.std(d, ddof=1) or
    statistics.stdev(d).

paired_gain.std_of_method
    the spread is that of the method's accuracies, not of the per-seed differences: what the seeds share (an
    easy or hard initialisation) cancels in the differences. Take the standard deviation of d = [a - b for a, b
    in zip(method_runs, baseline_runs)].

paired_gain.unpaired
    the spread is sqrt(std(method)^2 + std(baseline)^2), that of two independent means: the runs are paired by
    seed (same initial student, same batch order), so take the standard deviation of the per-seed differences
    instead.

paired_gain.sorted
    the runs are sorted before they are subtracted, which pairs seed i of one list with another seed of the
    other: subtract in seed order, zip(method_runs, baseline_runs).

paired_gain.points
    it returns points (x 100): return fractions, in the units of the runs (0.05 for five points); the lesson
    formats them as points when it prints.

paired_gain.not_a_pair
    {name}({shown}) returned {out}: return two numbers, (mean, std), e.g. `return np.mean(d), np.std(d, ddof=1)`.

paired_gain.nan
    {name}({shown}) returned NaN: with n seeds the sample standard deviation divides by n - 1, so it needs at least
    two runs; are both lists used?

paired_gain.unexplained
    {name}: {which} is off, and no classic mistake explains it. The gain is the mean of the per-seed differences
    d[i] = method_runs[i] - baseline_runs[i]; its spread is their sample standard deviation (ddof = 1).{numbers}
""")
