"""Figures used by more than one lesson. Each function draws on an ``ax`` (or makes one) and
returns the matplotlib ``Figure``, so a notebook can show it, and a test can save it to PNG.

Plotting stays out of the training loop: train first, keep the :class:`~kdcourse.distill.History`,
plot afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "probability_bars",
    "learning_curves",
    "sweep_heatmap",
    "matrix_pair",
    "attention_pair",
    "mean_std_bars",
    "soft_target_grid",
    "gain_vs_size",
    "matrix_row",
    "paired_gains",
    "reliability_diagram",
]


def _axes(ax=None, figsize=(6, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def probability_bars(probs, class_names: Sequence[str] | None = None, title: str = "",
                     highlight: int | None = None, ax=None, ylim: float | None = 1.0):
    """Bars of one probability vector; ``highlight`` colours the true class."""
    probs = np.asarray(probs, dtype=float).ravel()
    fig, ax = _axes(ax)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(probs))]
    colors = ["tab:orange" if i == highlight else "tab:blue" for i in range(len(probs))]
    ax.bar(names, probs, color=colors)
    ax.set_xlabel("class")
    ax.set_ylabel("probability")
    if ylim is not None:
        ax.set_ylim(0, ylim)
    ax.set_title(title)
    return fig


def learning_curves(histories: Mapping[str, object], metric: str = "val_acc", ax=None,
                    title: str | None = None):
    """One line per run: ``metric`` (``val_acc``, ``train_acc`` or ``train_loss``) per epoch.

    ``histories`` maps a label to a :class:`~kdcourse.distill.History` or a list of them
    (several seeds: the mean is drawn with a band of +- one standard deviation).
    """
    fig, ax = _axes(ax)
    for label, runs in histories.items():
        runs = runs if isinstance(runs, (list, tuple)) else [runs]
        values = np.array([getattr(r, metric) for r in runs], dtype=float)
        if values.size == 0 or values.shape[1] == 0:
            raise ValueError(f"the history for {label!r} has no {metric!r} values (was val_data given?)")
        epochs = np.arange(1, values.shape[1] + 1)
        mean = values.mean(0)
        (line,) = ax.plot(epochs, mean, label=label)
        if len(runs) > 1:
            std = values.std(0, ddof=1)  # the sample standard deviation over the runs
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title or metric.replace("_", " ") + " per epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def sweep_heatmap(table, row_values: Sequence, col_values: Sequence, row_label: str = "alpha",
                  col_label: str = "T", title: str = "", ax=None, fmt: str = ".1%", center=None,
                  cmap: str | None = None, reference: float | None = None, halfwidth: float | None = None,
                  reference_label: str = "reference"):
    """A seaborn heatmap of a 2-D grid of results (e.g. accuracy over alpha x T), each cell annotated.

    By default the colours span the table's own range, which paints any two extreme cells as
    opposites however close they are. For results, pass ``reference`` (e.g. the label-only
    baseline's accuracy) and ``halfwidth`` (e.g. ``0.03``, three points): the colours then
    diverge from the reference (blue above, red below) and saturate at ``reference +- halfwidth``
    (or at the farthest cell, if farther), so a cell's colour says how far it is from the
    baseline on a scale fixed in advance, not how it ranks within the grid.
    """
    import seaborn as sns

    table = np.asarray(table, dtype=float)
    if table.shape != (len(row_values), len(col_values)):
        raise ValueError(f"table has shape {table.shape}, expected ({len(row_values)}, {len(col_values)})")
    if halfwidth is not None and reference is None:
        raise ValueError("halfwidth needs a reference: the colours saturate at reference +- halfwidth")
    if halfwidth is not None and not halfwidth > 0:
        raise ValueError(f"halfwidth must be > 0, got {halfwidth!r}")
    fig, ax = _axes(ax, figsize=(1.1 * len(col_values) + 2, 0.6 * len(row_values) + 1.8))
    scale: dict = {"center": center, "cmap": cmap or "viridis"}
    cbar_label = ""
    if reference is not None:
        reach = float(np.nanmax(np.abs(table - reference)))
        reach = max(reach, halfwidth) if halfwidth is not None else reach
        top = reference + reach
        if fmt.endswith("%") and np.nanmax(table) <= 1.0:
            top = min(top, 1.0)  # accuracies: no colours for values above 100 % (the scale stays centred)
        scale = {"center": reference, "vmin": reference - reach, "vmax": top, "cmap": cmap or "RdBu"}
        cbar_label = f"{reference_label}: {format(reference, fmt)}"
    sns.heatmap(table, annot=True, fmt=fmt, xticklabels=[str(c) for c in col_values],
                yticklabels=[str(r) for r in row_values], ax=ax, cbar_kws={"shrink": 0.8}, **scale)
    if cbar_label:
        bar = ax.collections[0].colorbar
        bar.set_label(cbar_label)
        bar.ax.axhline(reference, color="black", lw=1)
        if fmt.endswith("%"):
            from matplotlib.ticker import PercentFormatter

            bar.formatter = PercentFormatter(xmax=1.0, decimals=0)
            bar.update_ticks()
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(title)
    return fig


def _class_blocks(n: int, boundaries: Sequence[int], class_labels: Sequence) -> list[float]:
    """The centre of each class block of an ``n x n`` matrix sorted by class, one per label."""
    edges = [0, *[int(b) for b in boundaries], n]
    if any(a >= b for a, b in zip(edges, edges[1:])):
        raise ValueError(f"boundaries must increase strictly between 0 and the matrix size {n}, got {list(boundaries)}")
    if len(class_labels) != len(edges) - 1:
        raise ValueError(f"{len(edges) - 1} class blocks (boundaries {list(boundaries)} of a {n} x {n} matrix) "
                         f"but {len(class_labels)} class labels: pass one label per block")
    return [(a + b - 1) / 2 for a, b in zip(edges, edges[1:])]


def _label_axes(ax, n: int, boundaries: Sequence[int], class_labels: Sequence | None,
                xlabel: bool = True, ylabel: bool = True) -> None:
    """Axis labels of a relation matrix: the example index, or with ``class_labels`` one tick per
    class block, named, and "examples sorted by class"."""
    if class_labels is None:
        if xlabel:
            ax.set_xlabel("example")
        if ylabel:
            ax.set_ylabel("example")
        return
    centres = _class_blocks(n, boundaries, class_labels)
    names = [str(c) for c in class_labels]
    ax.set_xticks(centres, names)
    ax.set_yticks(centres, names if ylabel else [""] * len(names))
    ax.tick_params(length=0)
    if xlabel:
        ax.set_xlabel("examples sorted by class")
    if ylabel:
        ax.set_ylabel("examples sorted by class")


def matrix_pair(left, right, titles: Sequence[str] = ("teacher", "student"), suptitle: str = "",
                cmap: str = "viridis", boundaries: Sequence[int] = (), class_labels: Sequence | None = None):
    """Two square matrices side by side on one colour scale (similarity / distance matrices).

    ``boundaries`` draws class boundaries (positions where a new class starts) when the rows
    are sorted by class, so the block structure is easy to see. ``class_labels`` (one per block,
    e.g. the digits 0-9) names the blocks on both axes instead of counting examples.
    """
    left, right = np.asarray(left, dtype=float), np.asarray(right, dtype=float)
    vmin, vmax = min(left.min(), right.min()), max(left.max(), right.max())
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), constrained_layout=True)
    for ax, m, title in zip(axes, (left, right), titles):
        im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
        for b in boundaries:
            ax.axhline(b - 0.5, color="white", lw=0.6)
            ax.axvline(b - 0.5, color="white", lw=0.6)
        ax.set_title(title)
        _label_axes(ax, len(m), boundaries, class_labels)
    fig.colorbar(im, ax=axes, shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def attention_pair(images, teacher_maps, student_maps, n: int = 6, titles=("input", "teacher", "student"),
                   suptitle: str = ""):
    """Rows of (input image, teacher attention map, student attention map) for ``n`` examples.

    Maps are ``(N, h, w)`` or ``(N, h*w)`` square; inputs ``(N, C, H, W)`` (grey or RGB, any
    normalisation: each image is rescaled to [0, 1] for display). Grey inputs are drawn dark on
    white (``gray_r``), the course's convention for the digits (lessons 01 and 03).
    """
    images = np.asarray(images, dtype=float)
    n = min(n, len(images))
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.2), squeeze=False)
    for j in range(n):
        img = images[j]
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
        img = (img - img.min()) / (img.max() - img.min() + 1e-12)
        rows = [img, teacher_maps[j], student_maps[j]]
        for i, m in enumerate(rows):
            m = np.asarray(m, dtype=float)
            if m.ndim == 1:
                side = int(round(np.sqrt(m.size)))
                m = m.reshape(side, side)
            axes[i, j].imshow(m, cmap="gray_r" if (i == 0 and m.ndim == 2) else ("viridis" if i else None))
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(titles[i])
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def mean_std_bars(results: Mapping[str, Sequence[float]], ylabel: str = "test accuracy", title: str = "",
                  ax=None, baseline: str | None = "baseline", min_span: float = 0.05):
    """Each method's mean +- sample std as a point with error bars, and each seed's value as a dot.

    No bars: the axis is zoomed on the data, and a bar's length would read as a ratio (a 0.6-point
    gain drawn as a doubling). Instead the axis spans at least ``min_span`` (5 points of an
    accuracy in [0, 1] by default), a dashed line marks the ``baseline`` mean, and each other
    method is labelled with its paired difference to the baseline, seed by seed (mean +- sample
    std in points; the lists must then be in the same seed order).
    """
    fig, ax = _axes(ax, figsize=(1.1 * len(results) + 2.5, 4))
    names = list(results)
    unit = 100.0 if all(0.0 <= v <= 1.0 for vals in results.values() for v in vals) else 1.0
    base = np.asarray(results[baseline], dtype=float) if baseline in results else None
    crowded = len(names) > 6
    for i, name in enumerate(names):
        vals = np.asarray(results[name], dtype=float)
        colour = "tab:gray" if name == baseline else "tab:blue"
        ax.errorbar(i, vals.mean(), yerr=vals.std(ddof=1) if len(vals) > 1 else 0.0, fmt="s", ms=8,
                    capsize=6, color=colour, zorder=2)
        ax.scatter(np.full(len(vals), i) + 0.12, vals, color="black", s=10, zorder=3)
        if base is not None and name != baseline and len(vals) == len(base):
            diff = unit * (vals - base)
            spread = f" ± {diff.std(ddof=1):.1f}" if len(diff) > 1 else ""
            if crowded:  # no room beside the point: above its upper error bar
                top = vals.mean() + (vals.std(ddof=1) if len(vals) > 1 else 0.0)
                ax.annotate(f"{diff.mean():+.1f}{spread}", (i, max(top, vals.max())), textcoords="offset points",
                            xytext=(0, 5), ha="center", va="bottom", fontsize=7, color=colour)
            else:
                ax.annotate(f"{diff.mean():+.1f}{spread}", (i, vals.mean()), textcoords="offset points",
                            xytext=(-10, 0), ha="right", va="center", fontsize=8, color=colour)
    if base is not None:
        ax.axhline(base.mean(), color="tab:gray", ls="--", lw=1)
    lo = min(min(v) for v in results.values())
    hi = max(max(v) for v in results.values())
    span = max(1.2 * (hi - lo), min_span)
    bottom = (lo + hi - span) / 2
    if unit == 100.0:  # accuracies: keep the axis inside [0, 1]
        bottom = min(max(bottom, 0.0), 1.0 - span) if span <= 1.0 else 0.0
    # headroom for the labels above the points and the note at the top
    ax.set_ylim(bottom, bottom + span * (1.18 if crowded and base is not None else 1.0))
    ax.set_xlim(-0.7, len(names) - 0.4)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20)
    ax.set_ylabel(ylabel)
    if base is not None and len(names) > 1:
        ax.text(0.01, 0.98, f"{'above' if crowded else 'beside'} each point: its paired gain over {baseline}, "
                "seed by seed"
                + (" (points)" if unit == 100.0 else ""), transform=ax.transAxes, va="top", fontsize=8,
                color="tab:gray")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return fig


def soft_target_grid(images, probs_by_T: Mapping[float, object], labels: Sequence[int],
                     class_names: Sequence[str] | None = None, suptitle: str = ""):
    """One row per example: the input image, then its class probabilities at each temperature.

    ``probs_by_T`` maps a temperature to an ``(N, C)`` array of probabilities (e.g. a teacher's
    ``softmax(z / T)``); the true class (``labels``) is drawn in orange. Used to show how a
    temperature reveals the wrong classes a teacher finds plausible ("dark knowledge").
    """
    images = np.asarray(images, dtype=float)
    temps = list(probs_by_T)
    probs = {T: np.asarray(p, dtype=float) for T, p in probs_by_T.items()}
    n = len(images)
    fig, axes = plt.subplots(n, 1 + len(temps), figsize=(2.2 + 3.6 * len(temps), 1.9 * n + 0.6),
                             squeeze=False, gridspec_kw={"width_ratios": [0.55] + [1] * len(temps)})
    for i in range(n):
        img = images[i]
        img = img.reshape(int(round(np.sqrt(img.size))), -1) if img.ndim != 2 and img.shape[0] != 3 else img
        axes[i, 0].imshow(img if img.ndim == 2 else np.transpose(img, (1, 2, 0)), cmap="gray_r")
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        names = class_names if class_names is not None else [str(k) for k in range(probs[temps[0]].shape[1])]
        axes[i, 0].set_ylabel(f"true: {names[labels[i]]}")
        for j, T in enumerate(temps):
            ax = axes[i, 1 + j]
            probability_bars(probs[T][i], names, highlight=int(labels[i]), ax=ax, ylim=1.0)
            second = np.argsort(-probs[T][i])[1]
            ax.set_title(f"T = {T:g}: runner-up {names[second]} ({probs[T][i][second]:.2f})", fontsize=9)
            if i < n - 1:
                ax.set_xlabel("")
            if j > 0:
                ax.set_ylabel("")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def gain_vs_size(series: Mapping[str, tuple[Sequence[float], Sequence[Sequence[float]]]],
                 point_labels: Mapping[float, str] | None = None,
                 xlabel: str = "student parameters (log scale)",
                 ylabel: str = "accuracy gain over baseline (points)", title: str = "", ax=None):
    """The gain of a method over its baseline against student size (lesson 07, capacity gap).

    ``series`` maps a label to ``(sizes, gains)``: the student sizes (e.g. parameter counts) and,
    for each size, the per-seed gains. Each series is drawn as its mean with +- one sample standard
    deviation error bars on a log x axis, with a dashed line at zero gain. ``point_labels`` maps
    a size to a text (e.g. the width) written next to the first series' points.
    """
    fig, ax = _axes(ax, figsize=(6.5, 4))
    for i, (label, (sizes, per_size)) in enumerate(series.items()):
        sizes = np.asarray(sizes, dtype=float)
        if len(per_size) != len(sizes):
            raise ValueError(f"{label!r} has {len(per_size)} lists of gains but {len(sizes)} sizes")
        mean = np.array([np.mean(v) for v in per_size])
        std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in per_size])
        ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=4, label=label)
        if i == 0 and point_labels:
            for x, y in zip(sizes, mean):
                if x in point_labels:
                    ax.annotate(point_labels[x], (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.axhline(0.0, color="tab:gray", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def matrix_row(matrices: Sequence, titles: Sequence[str], suptitle: str = "", cmap: str = "magma",
               boundaries: Sequence[int] = (), colorbar_label: str = "", class_labels: Sequence | None = None):
    """Several square matrices in one row, on one shared colour scale (e.g. |teacher - student|
    relation matrices for several students). ``boundaries`` and ``class_labels`` as in
    :func:`matrix_pair`."""
    mats = [np.asarray(m, dtype=float) for m in matrices]
    if len(mats) != len(titles):
        raise ValueError(f"got {len(mats)} matrices but {len(titles)} titles")
    vmin, vmax = min(m.min() for m in mats), max(m.max() for m in mats)
    fig, axes = plt.subplots(1, len(mats), figsize=(3.3 * len(mats) + 1, 3.6), constrained_layout=True,
                             squeeze=False)
    for k, (ax, m, title) in enumerate(zip(axes[0], mats, titles)):
        im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
        for b in boundaries:
            ax.axhline(b - 0.5, color="white", lw=0.5)
            ax.axvline(b - 0.5, color="white", lw=0.5)
        ax.set_title(title)
        _label_axes(ax, len(m), boundaries, class_labels, ylabel=k == 0)
    bar = fig.colorbar(im, ax=axes[0], shrink=0.85)
    if colorbar_label:
        bar.set_label(colorbar_label)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def paired_gains(differences: Mapping[str, Sequence[float]], unit: float = 100.0, ylabel: str = "points",
                 title: str = "", ax=None):
    """Paired per-seed differences (e.g. ``{"kd - baseline": [...]}``), one column each: every
    seed a dot, the mean a bar with the sample standard deviation, and the line at zero, so the
    axis shows the size of the effect and whether it is above zero, not the accuracies themselves.
    ``unit`` scales the values (100: accuracies in [0, 1] shown in points)."""
    fig, ax = _axes(ax, figsize=(1.4 * len(differences) + 2.5, 4))
    names = list(differences)
    for i, name in enumerate(names):
        vals = unit * np.asarray(differences[name], dtype=float)
        std = vals.std(ddof=1) if len(vals) > 1 else 0.0
        ax.bar(i, vals.mean(), yerr=std, capsize=4, color="tab:blue" if vals.mean() >= 0 else "tab:red", alpha=0.6)
        ax.scatter(np.full(len(vals), i), vals, color="black", s=12, zorder=3)
        ax.annotate(f"{vals.mean():+.1f}", (i, vals.mean()), textcoords="offset points",
                    xytext=(14, 0), va="center", fontsize=9)
    ax.axhline(0, color="black", lw=1)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=15)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return fig


def reliability_diagram(bins_by_name: Mapping[str, Mapping], ax=None, title: str | None = None,
                        ece: Mapping[str, float] | None = None):
    """A reliability diagram (Guo et al. 2017, fig. 1; Stanton et al. 2021): for each model, the
    accuracy of each confidence bin against the bin's mean confidence, one line with markers per
    model, over the diagonal of perfect calibration (accuracy = confidence). Points below the
    diagonal: overconfident; above it: underconfident.

    ``bins_by_name`` maps a model's name to the output of
    :func:`kdcourse.calibration.reliability_bins`; empty bins are skipped. A disc behind each
    marker has an area proportional to the share of the model's rows in its bin, so a bin of three
    images does not look as solid as one of three hundred. ``ece`` optionally maps names to their
    expected calibration error, written in the legend. Both axes run from 0 to 1.
    """
    if not bins_by_name:
        raise ValueError("bins_by_name is empty: pass {name: reliability_bins(probs, targets)} for each model")
    fig, ax = _axes(ax, figsize=(5.2, 5))
    ax.plot([0, 1], [0, 1], color="tab:gray", ls="--", lw=1, label="perfect calibration")
    for name, bins in bins_by_name.items():
        missing = {"confidence", "accuracy", "count"} - set(bins)
        if missing:
            raise ValueError(f"the bins of {name!r} lack {sorted(missing)}: pass reliability_bins(...)'s output")
        count = np.asarray(bins["count"], dtype=float)
        filled = count > 0
        conf = np.asarray(bins["confidence"], dtype=float)[filled]
        acc = np.asarray(bins["accuracy"], dtype=float)[filled]
        label = name if not ece or name not in ece else f"{name} (ECE {ece[name]:.3f})"
        (line,) = ax.plot(conf, acc, marker="o", ms=3, lw=1, alpha=0.9, label=label)
        share = count[filled] / max(count.sum(), 1.0)
        ax.scatter(conf, acc, s=600 * share, color=line.get_color(), alpha=0.3, clip_on=False,
                   zorder=line.get_zorder())
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence (mean of the largest probability in the bin)")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(title if title is not None else "Reliability diagram", pad=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig
