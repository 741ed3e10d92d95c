"""Interactive explorers (ipywidgets) for the lessons.

Each explorer is a thin shell around a *pure* function that the slider callback calls, so the
logic is testable without a browser:

- :func:`temperature_explorer` -> :func:`temperature_view` (softened probabilities, entropy);
- :func:`loss_explorer` -> :func:`loss_parts` (soft term, hard term, total of the KD loss);
- :func:`sweep_browser` -> :func:`sweep_cell` (learning curves of one cell of an alpha x T sweep);
- :func:`sampling_browser` -> :func:`sampling_view` (lesson 09: a student's samples at one sampling
  temperature, their diversity and the teacher's verdict on them).

Every explorer returns an ``ipywidgets.VBox``: the sliders, an ``HTML`` label that states the
current values in words ("T = 4.0, entropy = 1.23 nats") and an ``Output`` whose figure is
redrawn in place when a slider moves. The box keeps handles to its parts for tests and for
scripts: ``box.sliders`` (a dict), ``box.label``, ``box.output`` and ``box.view()`` (the pure
function's result for the current slider values). CSS classes (``kd-temperature-slider``,
``kd-loss-label``, ...) make the parts findable in a browser test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import losses

__all__ = [
    "temperature_view",
    "temperature_explorer",
    "loss_parts",
    "loss_explorer",
    "sweep_cell",
    "sweep_browser",
    "sampling_view",
    "sampling_browser",
]

DEFAULT_T_VALUES = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0)


# ------------------------------------------------------------------ shared plumbing


def _as_logits(logits, name: str = "logits") -> torch.Tensor:
    """One example's logits as a 1-D float tensor (a (1, C) batch is accepted too)."""
    z = torch.as_tensor(np.asarray(logits.detach().cpu() if isinstance(logits, torch.Tensor) else logits),
                        dtype=torch.float32)
    if z.dim() == 2 and z.shape[0] == 1:
        z = z[0]
    if z.dim() != 1 or z.numel() < 2:
        raise ValueError(f"{name} must be the logits of ONE example, shape (num_classes,), got {tuple(z.shape)}")
    return z


def _redraw(output, draw: Callable[[], plt.Figure]) -> None:
    """Replace the figure in ``output`` with a fresh one, closing it so figures do not pile up."""
    from IPython.display import display

    with output:
        output.clear_output(wait=True)
        fig = draw()
        display(fig)
        plt.close(fig)


def _box(children, sliders: dict, label, output, view: Callable[[], dict], css: str, update: Callable):
    """The widget: ``children`` in a column, ``update`` run now and whenever a slider moves; ``sliders``,
    ``label``, ``output`` and ``view`` (the numbers shown) are kept on it for tests."""
    import ipywidgets as widgets

    for slider in sliders.values():
        slider.observe(update, names="value")
    update()
    box = widgets.VBox(children)
    box.add_class(css)
    box.sliders, box.label, box.output, box.view = sliders, label, output, view
    return box


def _label_and_output(css: str):
    """The widget's text line and its plot area, with the CSS classes ``{css}-label`` and ``{css}-output``
    the browser tests find them by."""
    import ipywidgets as widgets

    label, output = widgets.HTML(), widgets.Output()
    label.add_class(f"{css}-label")
    output.add_class(f"{css}-output")
    return label, output


def _t_slider(T_values: Sequence[float], T: float, css: str):
    import ipywidgets as widgets

    values = sorted({float(v) for v in T_values})
    if not values or min(values) <= 0:
        raise ValueError(f"T_values must be temperatures > 0, got {T_values}")
    start = min(values, key=lambda v: abs(v - T))
    slider = widgets.SelectionSlider(
        options=[(f"{v:g}", v) for v in values], value=start, description="T",
        continuous_update=True, style={"description_width": "initial"},
        layout=widgets.Layout(width="420px"),
    )
    slider.add_class(css)
    return slider


def _fmt_T(T: float) -> str:
    """A temperature as the label shows it: one decimal ("4.0"), or more when needed ("0.75")."""
    text = f"{T:.1f}"
    return text if float(text) == T else f"{T:g}"


# ------------------------------------------------------------------ temperature


def temperature_view(logits, T: float) -> dict:
    r"""Softened probabilities of one example and their entropy (in nats).

    .. math:: q_i = \mathrm{softmax}(z / T)_i, \qquad H(q) = -\sum_i q_i \log q_i

    Returns ``dict(probs=np.ndarray, entropy=float, max_entropy=log(C), top=int)``.
    """
    z = _as_logits(logits)
    q = losses.softmax_with_temperature(z, float(T))
    entropy = float(losses.entropy(q))
    return {"probs": q.numpy(), "entropy": entropy, "max_entropy": math.log(len(q)), "top": int(q.argmax())}


def _entropy_curve(z: torch.Tensor, T_grid: np.ndarray) -> np.ndarray:
    return np.array([temperature_view(z, T)["entropy"] for T in T_grid])


def temperature_explorer(logits, class_names: Sequence[str] | None = None, true_class: int | None = None,
                         T_values: Sequence[float] = DEFAULT_T_VALUES, T: float = 1.0, title: str = ""):
    """A T slider over the probability bars ``softmax(logits / T)`` of one example.

    Left: the bars at the chosen T (the true class in orange) with the T = 1 probabilities as
    black ticks for comparison. Right: the entropy as T varies, a dot at the chosen T and the
    uniform distribution's ``log(C)`` as a dashed line.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    z = _as_logits(logits)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(z))]
    if len(names) != len(z):
        raise ValueError(f"{len(names)} class names for {len(z)} logits")
    slider = _t_slider(T_values, T, "kd-temperature-slider")
    label, output = _label_and_output("kd-temperature")
    lo, hi = min(slider.options, key=lambda o: o[1])[1], max(slider.options, key=lambda o: o[1])[1]
    T_grid = np.geomspace(lo, hi, 60)
    curve = _entropy_curve(z, T_grid)
    reference = temperature_view(z, 1.0)["probs"]

    def view() -> dict:
        return temperature_view(z, slider.value)

    def draw() -> plt.Figure:
        v = view()
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.5, 1]})
        colors = ["tab:orange" if i == true_class else "tab:blue" for i in range(len(names))]
        bars = ax.bar(names, v["probs"], color=colors)
        ax.scatter(names, reference, marker="_", s=300, color="black", zorder=3)
        for bar, p in zip(bars, v["probs"]):
            ax.text(bar.get_x() + bar.get_width() / 2, p + 0.01, f"{p:.2f}", ha="center", fontsize=8)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("class")
        ax.set_ylabel("probability")
        ax.set_title(title or f"softmax(z / T) at T = {slider.value:g}")
        handles = [Patch(color="tab:blue", label=f"T = {slider.value:g}"),
                   Line2D([], [], color="black", marker="_", ls="", markersize=14, label="T = 1")]
        if true_class is not None:
            handles.insert(1, Patch(color="tab:orange", label="true class"))
        ax.legend(handles=handles, loc="upper right", fontsize=8)
        ax2.plot(T_grid, curve, color="tab:blue")
        ax2.axhline(v["max_entropy"], color="gray", ls="--", label=f"uniform: log {len(names)}")
        ax2.scatter([slider.value], [v["entropy"]], color="tab:red", zorder=3, label=f"T = {slider.value:g}")
        ax2.set_xscale("log")
        ax2.set_ylim(0, v["max_entropy"] * 1.08)
        ax2.set_xlabel("temperature T (log scale)")
        ax2.set_ylabel("entropy (nats)")
        ax2.set_title("entropy of the softened outputs")
        ax2.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        return fig

    def update(change=None) -> None:
        v = view()
        label.value = (f"T = {_fmt_T(slider.value)}, entropy = {v['entropy']:.2f} nats "
                       f"(max {v['max_entropy']:.2f}); top class {names[v['top']]} "
                       f"with p = {v['probs'][v['top']]:.2f}")
        _redraw(output, draw)

    return _box([slider, label, output], {"T": slider}, label, output, view, "kd-temperature-explorer", update)


# ------------------------------------------------------------------ loss parts


def loss_parts(student_logits, teacher_logits, target: int, T: float, alpha: float) -> dict:
    r"""The two weighted parts of the distillation loss for one example (:mod:`kdcourse.losses`).

    .. math:: \text{soft} = \alpha\, T^2\, \mathrm{KL}(p_t^T \| p_s^T), \quad
              \text{hard} = (1 - \alpha)\, \mathrm{CE}(y, p_s^1), \quad \text{total} = \text{soft} + \text{hard}

    Returns floats ``soft``, ``hard``, ``total`` and the unweighted ``kd`` (= T^2 KL) and ``ce``.
    """
    s = _as_logits(student_logits, "student_logits")[None]
    t = _as_logits(teacher_logits, "teacher_logits")[None]
    if s.shape != t.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(s.shape)} vs {tuple(t.shape)}")
    y = torch.tensor([int(target)])
    kd = float(losses.kd_loss(s, t, float(T)))
    ce = float(torch.nn.functional.cross_entropy(s, y))
    total = float(losses.distillation_loss(s, t, y, float(T), float(alpha)))
    return {"soft": alpha * kd, "hard": (1 - alpha) * ce, "total": total, "kd": kd, "ce": ce}


def loss_explorer(student_logits, teacher_logits, target: int, class_names: Sequence[str] | None = None,
                  T_values: Sequence[float] = DEFAULT_T_VALUES, T: float = 4.0, alpha: float = 0.9):
    """alpha and T sliders over the distillation loss of one example.

    Left: teacher and student probabilities at temperature T. Right: the soft term
    ``alpha * T^2 * KL``, the hard term ``(1 - alpha) * CE`` and their total, as labelled bars on
    a fixed scale (so moving a slider shows the change).
    """
    import ipywidgets as widgets

    s, t = _as_logits(student_logits, "student_logits"), _as_logits(teacher_logits, "teacher_logits")
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(s))]
    T_slider = _t_slider(T_values, T, "kd-loss-T-slider")
    a_slider = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="alpha",
                                   readout_format=".2f", continuous_update=True,
                                   layout=widgets.Layout(width="420px"))
    a_slider.add_class("kd-loss-alpha-slider")
    label, output = _label_and_output("kd-loss")
    top = max(max(loss_parts(s, t, target, Tv, a)["total"] for _, Tv in T_slider.options for a in (0.0, 1.0)),
              1e-3) * 1.15

    def view() -> dict:
        return loss_parts(s, t, target, T_slider.value, a_slider.value)

    def draw() -> plt.Figure:
        v, Tv = view(), T_slider.value
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.5, 1]})
        x = np.arange(len(names))
        ax.bar(x - 0.2, losses.softmax_with_temperature(t, Tv).numpy(), 0.4, label="teacher", color="tab:green")
        ax.bar(x + 0.2, losses.softmax_with_temperature(s, Tv).numpy(), 0.4, label="student", color="tab:purple")
        ax.axvspan(target - 0.5, target + 0.5, color="tab:orange", alpha=0.15, label="true class")
        ax.set_xticks(x)
        ax.set_xticklabels(names)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("class")
        ax.set_ylabel(f"probability at T = {Tv:g}")
        ax.set_title("what the soft term compares")
        ax.legend(fontsize=8)
        parts = [v["soft"], v["hard"], v["total"]]
        bars = ax2.bar(["soft\nα·T²·KL", "hard\n(1-α)·CE", "total"], parts,
                       color=["tab:green", "tab:orange", "tab:gray"])
        for bar, value in zip(bars, parts):
            ax2.text(bar.get_x() + bar.get_width() / 2, value + top * 0.01, f"{value:.3f}", ha="center")
        ax2.set_ylim(0, top)
        ax2.set_ylabel("loss")
        ax2.set_title(f"loss parts at alpha = {a_slider.value:.2f}, T = {Tv:g}")
        fig.tight_layout()
        return fig

    def update(change=None) -> None:
        v = view()
        label.value = (f"alpha = {a_slider.value:.2f}, T = {_fmt_T(T_slider.value)}: soft = {v['soft']:.4f}, "
                       f"hard = {v['hard']:.4f}, total = {v['total']:.4f}")
        _redraw(output, draw)

    return _box([a_slider, T_slider, label, output], {"alpha": a_slider, "T": T_slider}, label, output, view,
                "kd-loss-explorer", update)


# ------------------------------------------------------------------ sweep browser


def _runs(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _grid(histories: Mapping) -> tuple[list[float], list[float]]:
    if not histories:
        raise ValueError("histories is empty: pass {(alpha, T): History or [History, ...]}")
    for key in histories:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"histories keys must be (alpha, T) pairs, got {key!r}")
    alphas = sorted({float(a) for a, _ in histories})
    Ts = sorted({float(T) for _, T in histories if T is not None})
    return alphas, Ts


def _lookup(histories: Mapping, alpha: float, T: float):
    for (a, t), runs in histories.items():
        if math.isclose(float(a), alpha) and (t is not None and math.isclose(float(t), T)):
            return runs
    if alpha == 0:  # with alpha = 0 the loss is plain cross-entropy: T plays no role
        for (a, _), runs in histories.items():
            if float(a) == 0:
                return runs
    return None


def sweep_cell(histories: Mapping, alpha: float, T: float, metric: str = "val_acc") -> dict:
    """The runs of one (alpha, T) cell of a sweep, summarised over seeds.

    ``histories`` maps ``(alpha, T)`` to a :class:`~kdcourse.distill.History` or a list of them
    (one per seed). alpha = 0 is plain training: any ``(0, T)`` entry serves every T.
    Returns ``dict(mean, std)`` (per epoch, arrays), ``final`` and ``final_std`` (the last
    epoch's mean and std over seeds) and ``n`` (the number of seeds).
    """
    runs = _lookup(histories, float(alpha), float(T))
    if runs is None:
        alphas, Ts = _grid(histories)
        raise KeyError(f"no runs for alpha={alpha}, T={T}; the sweep has alpha in {alphas} and T in {Ts}")
    runs = _runs(runs)
    try:
        values = np.array([getattr(r, metric) for r in runs], dtype=float)
    except AttributeError as error:
        raise ValueError(f"a History has no {metric!r} (use val_acc, train_acc or train_loss)") from error
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"the runs for alpha={alpha}, T={T} have no {metric!r} values (was val_data given?)")
    mean = values.mean(0)
    std = values.std(0, ddof=1) if len(values) > 1 else np.zeros_like(mean)  # sample std over the runs
    return {"mean": mean, "std": std, "final": float(mean[-1]), "final_std": float(std[-1]),
            "n": len(runs), "values": values}


def _sweep_table(histories: Mapping, alphas, Ts, metric: str) -> np.ndarray:
    table = np.full((len(alphas), len(Ts)), np.nan)
    for i, a in enumerate(alphas):
        for j, T in enumerate(Ts):
            if _lookup(histories, a, T) is not None:
                table[i, j] = sweep_cell(histories, a, T, metric)["final"]
    return table


def sweep_browser(histories: Mapping, metric: str = "val_acc"):
    """alpha and T sliders over a sweep: the learning curves of the chosen cell and a heatmap.

    Left: ``metric`` per epoch for the chosen (alpha, T) (mean +- std over seeds), with the
    baseline (alpha = 0) in grey when the sweep has it. Right: the final ``metric`` of every
    cell, the chosen one framed in red. The alpha = 0 row is filled across T (T has no effect
    there).
    """
    import ipywidgets as widgets
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import PercentFormatter

    alphas, Ts = _grid(histories)
    if not Ts:
        raise ValueError("the sweep has no temperatures: keys must be (alpha, T) with a number for T")
    table = _sweep_table(histories, alphas, Ts, metric)
    best = np.unravel_index(np.nanargmax(table), table.shape) if metric != "train_loss" else \
        np.unravel_index(np.nanargmin(table), table.shape)
    has_baseline = 0.0 in alphas
    pct = metric.endswith("acc")

    a_slider = widgets.SelectionSlider(options=[(f"{a:g}", a) for a in alphas], value=alphas[best[0]],
                                       description="alpha", layout=widgets.Layout(width="420px"))
    T_slider = widgets.SelectionSlider(options=[(f"{T:g}", T) for T in Ts], value=Ts[best[1]],
                                       description="T", layout=widgets.Layout(width="420px"))
    a_slider.add_class("kd-sweep-alpha-slider")
    T_slider.add_class("kd-sweep-T-slider")
    label, output = _label_and_output("kd-sweep")
    # The y-axis zooms on the second half of training, where the cells differ; early epochs may be cut.
    cells = [sweep_cell(histories, a, T, metric)["values"]
             for a in alphas for T in Ts if _lookup(histories, a, T) is not None]
    late = np.concatenate([np.ravel(v[:, v.shape[1] // 2:]) for v in cells])
    every = np.concatenate([np.ravel(v) for v in cells])
    if metric == "train_loss":
        lo, hi = float(np.min(every)), float(np.max(late))
    else:
        lo, hi = float(np.min(late)), float(np.max(every))
    pad = 0.05 * (hi - lo or 1.0)

    def view() -> dict:
        return sweep_cell(histories, a_slider.value, T_slider.value, metric)

    def fmt(x: float) -> str:
        return f"{100 * x:.1f} %" if pct else f"{x:.4f}"

    def draw() -> plt.Figure:
        v = view()
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
        epochs = np.arange(1, len(v["mean"]) + 1)
        if has_baseline and a_slider.value != 0:
            b = sweep_cell(histories, 0.0, T_slider.value, metric)
            be = np.arange(1, len(b["mean"]) + 1)
            ax.plot(be, b["mean"], color="gray", label=f"baseline (alpha = 0), n = {b['n']}")
            ax.fill_between(be, b["mean"] - b["std"], b["mean"] + b["std"], color="gray", alpha=0.2)
        ax.plot(epochs, v["mean"], color="tab:blue",
                label=f"alpha = {a_slider.value:g}, T = {T_slider.value:g}, n = {v['n']}")
        ax.fill_between(epochs, v["mean"] - v["std"], v["mean"] + v["std"], color="tab:blue", alpha=0.25)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"{metric.replace('_', ' ')} per epoch (mean ± std over seeds; zoomed)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if metric != "train_loss" else "upper right")
        shown = table.copy()
        if has_baseline:  # T does not matter at alpha = 0
            row = alphas.index(0.0)
            shown[row] = np.nanmean(shown[row])
        if has_baseline and pct:
            # colours diverge from the baseline on a fixed scale (at least +- 3 points), so two cells half a
            # point apart are not painted as opposite extremes
            reference = float(shown[alphas.index(0.0), 0])
            reach = max(float(np.nanmax(np.abs(shown - reference))), 0.03)
            im = ax2.imshow(shown, cmap="RdBu", aspect="auto", vmin=reference - reach, vmax=reference + reach)
            dark = np.abs(shown - reference) > 0.6 * reach
        else:
            im = ax2.imshow(shown, cmap="viridis", aspect="auto")
            dark = shown < np.nanmean(shown)
        for i in range(len(alphas)):
            for j in range(len(Ts)):
                if not np.isnan(shown[i, j]):
                    ax2.text(j, i, fmt(shown[i, j]).replace(" %", ""), ha="center", va="center", fontsize=8,
                             color="white" if dark[i, j] else "black")
        i, j = alphas.index(a_slider.value), Ts.index(T_slider.value)
        ax2.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2.5))
        ax2.set_xticks(range(len(Ts)))
        ax2.set_xticklabels([f"{T:g}" for T in Ts])
        ax2.set_yticks(range(len(alphas)))
        ax2.set_yticklabels([f"{a:g}" for a in alphas])
        ax2.set_xlabel("T")
        ax2.set_ylabel("alpha")
        ax2.set_title(f"final {metric.replace('_', ' ')}" + (" (%)" if pct else "")
                      + (": blue above the baseline, red below" if has_baseline and pct else ""), fontsize=9)
        bar = fig.colorbar(im, ax=ax2, shrink=0.8)
        if pct:
            bar.formatter = PercentFormatter(xmax=1.0, decimals=1)
            bar.update_ticks()
        fig.tight_layout()
        return fig

    def update(change=None) -> None:
        v = view()
        text = (f"alpha = {a_slider.value:g}, T = {T_slider.value:g}: final {metric.replace('_', ' ')} "
                f"{fmt(v['final'])} ± {fmt(v['final_std'])} over {v['n']} seed(s)")
        if has_baseline and a_slider.value != 0:
            b = sweep_cell(histories, 0.0, T_slider.value, metric)
            text += f"; baseline {fmt(b['final'])} ± {fmt(b['final_std'])}"
        label.value = text
        _redraw(output, draw)

    return _box([a_slider, T_slider, label, output], {"alpha": a_slider, "T": T_slider}, label, output, view,
                "kd-sweep-browser", update)


# ------------------------------------------------------------------ sampling temperature (lesson 09)


def sampling_view(table: Mapping, temperature: float) -> dict:
    """One row of a sampling table: what a student writes at ``temperature``.

    ``table`` maps each sampling temperature to ``{"entropy_bits": float, "teacher_bpc": float,
    "text": str}`` (what :func:`kdcourse.lm.sample_stats` measures, plus a decoded sample).
    Returns that row with ``temperature`` and ``label`` (the sentence the slider shows) added.
    A temperature not in the table raises ``KeyError`` naming the ones it has.
    """
    if not table:
        raise ValueError("the sampling table is empty: pass {temperature: {entropy_bits, teacher_bpc, text}}")
    for key in table:
        if math.isclose(float(key), float(temperature)):
            row = dict(table[key])
            missing = {"entropy_bits", "teacher_bpc", "text"} - set(row)
            if missing:
                raise ValueError(f"the row for temperature {key:g} lacks {sorted(missing)}")
            row["temperature"] = float(key)
            row["label"] = (f"sampling temperature {float(key):g}: the student keeps {row['entropy_bits']:.2f} bits "
                            f"of choice per character; the teacher needs {row['teacher_bpc']:.2f} bits per "
                            "character to explain its text (lower = more plausible to the teacher)")
            return row
    raise KeyError(f"no samples at temperature {temperature}; the table has {sorted(float(k) for k in table)}")


def sampling_browser(table: Mapping, start: float = 1.0):
    """A slider over the student's sampling temperature: its text, and the diversity / plausibility
    trade-off (entropy of its choices against the teacher's bits per character of its samples)."""
    import html

    import ipywidgets as widgets

    temps = sorted(float(k) for k in table)
    slider = widgets.SelectionSlider(options=[(f"{t:g}", t) for t in temps],
                                     value=min(temps, key=lambda t: abs(t - start)),
                                     description="sampling T", style={"description_width": "initial"},
                                     layout=widgets.Layout(width="420px"))
    slider.add_class("kd-sampling-slider")
    label, output = _label_and_output("kd-sampling")
    sample = widgets.HTML()
    sample.add_class("kd-sampling-text")
    rows = [sampling_view(table, t) for t in temps]

    def view() -> dict:
        return sampling_view(table, slider.value)

    def draw() -> plt.Figure:
        v = view()
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot([r["entropy_bits"] for r in rows], [r["teacher_bpc"] for r in rows], "o-", color="tab:gray")
        for r in rows:
            ax.annotate(f"{r['temperature']:g}", (r["entropy_bits"], r["teacher_bpc"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.plot([v["entropy_bits"]], [v["teacher_bpc"]], "o", color="tab:red", markersize=10,
                label=f"sampling T = {v['temperature']:g}")
        ax.set_xlabel("entropy of the student's choices (bits per character)")
        ax.set_ylabel("teacher's bits per character\nof the student's text")
        ax.set_title("diversity against plausibility")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
        fig.tight_layout()
        return fig

    def update(change=None) -> None:
        v = view()
        label.value = html.escape(v["label"])
        sample.value = "<pre style='white-space: pre-wrap'>" + html.escape(v["text"]) + "</pre>"
        _redraw(output, draw)

    return _box([slider, label, output, sample], {"temperature": slider}, label, output, view, "kd-sampling-browser",
                update)
