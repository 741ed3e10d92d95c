"""Figures of kdcourse.plots: class-labelled relation matrices, one convention for the digits."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from kdcourse.plots import attention_pair, matrix_pair, matrix_row  # noqa: E402

# three classes of 2, 3 and 1 examples, sorted by class
MATS = [np.random.default_rng(k).random((6, 6)) for k in range(3)]
BOUNDARIES = [2, 5]


def ticks(ax, axis):
    labels = getattr(ax, f"get_{axis}ticklabels")()
    return list(getattr(ax, f"get_{axis}ticks")()), [t.get_text() for t in labels]


def test_matrix_pair_names_the_class_blocks():
    fig = matrix_pair(MATS[0], MATS[1], boundaries=BOUNDARIES, class_labels=["a", "b", "c"])
    for ax in fig.axes[:2]:
        for axis in "xy":
            positions, names = ticks(ax, axis)
            assert positions == [0.5, 3.0, 5.0]  # the centre of each block
            assert names == ["a", "b", "c"]
        assert ax.get_xlabel() == ax.get_ylabel() == "examples sorted by class"
    plt.close(fig)


def test_matrix_row_labels_rows_once_and_columns_everywhere():
    fig = matrix_row(MATS, ["p", "q", "r"], boundaries=BOUNDARIES, class_labels=[0, 1, 2])
    axes = fig.axes[:3]
    for k, ax in enumerate(axes):
        assert ticks(ax, "x") == ([0.5, 3.0, 5.0], ["0", "1", "2"])
        assert ax.get_xlabel() == "examples sorted by class"
        assert ticks(ax, "y")[1] == (["0", "1", "2"] if k == 0 else ["", "", ""])
        assert ax.get_ylabel() == ("examples sorted by class" if k == 0 else "")
    plt.close(fig)


def test_without_class_labels_the_axes_still_count_examples():
    fig = matrix_pair(MATS[0], MATS[1], boundaries=BOUNDARIES)
    assert fig.axes[0].get_xlabel() == "example"
    plt.close(fig)
    fig = matrix_row(MATS, ["p", "q", "r"])
    assert fig.axes[0].get_ylabel() == "example" and fig.axes[1].get_ylabel() == ""
    plt.close(fig)


@pytest.mark.parametrize("boundaries, labels", [([2, 5], ["a", "b"]), ([5, 2], ["a", "b", "c"]),
                                                 ([2, 6], ["a", "b", "c"])])
def test_class_labels_must_match_the_blocks(boundaries, labels):
    with pytest.raises(ValueError, match="class|boundaries"):
        matrix_pair(MATS[0], MATS[1], boundaries=boundaries, class_labels=labels)
    plt.close("all")


def test_attention_pair_draws_grey_digits_dark_on_white():
    images = np.random.default_rng(0).random((2, 1, 8, 8))
    maps = np.random.default_rng(1).random((2, 4, 4))
    fig = attention_pair(images, maps, maps, n=2)
    assert fig.axes[0].images[0].get_cmap().name == "gray_r"  # as lesson 01's soft_target_grid
    assert fig.axes[2].images[0].get_cmap().name == "viridis"  # the maps keep theirs
    plt.close(fig)


def test_mean_std_bars_draws_points_not_bars_on_an_axis_of_at_least_five_points():
    from kdcourse.plots import mean_std_bars

    results = {"baseline": [0.940, 0.942, 0.944], "kd": [0.946, 0.948, 0.950]}
    fig = mean_std_bars(results)
    ax = fig.axes[0]
    assert not ax.patches  # no bars: their length would read as a ratio on a zoomed axis
    bottom, top = ax.get_ylim()
    assert top - bottom == pytest.approx(0.05)  # a 0.6-point gain is drawn on a 5-point axis
    assert bottom <= 0.940 and top >= 0.950
    labels = [t.get_text() for t in ax.texts]
    assert "+0.6 ± 0.0" in labels  # the paired gain over the baseline, seed by seed, in points
    plt.close(fig)


def test_mean_std_bars_keeps_accuracies_inside_zero_and_one():
    from kdcourse.plots import mean_std_bars

    fig = mean_std_bars({"baseline": [0.99, 1.0], "kd": [1.0, 1.0]})
    assert fig.axes[0].get_ylim()[1] == pytest.approx(1.0)
    plt.close(fig)


def test_sweep_heatmap_colours_diverge_from_the_reference_on_a_fixed_scale():
    from kdcourse.plots import sweep_heatmap

    table = [[0.951, 0.956]]  # half a point apart: not opposite extremes once the scale is fixed
    fig = sweep_heatmap(table, ["layer3"], [10, 100], reference=0.947, halfwidth=0.03,
                        reference_label="baseline")
    mesh = fig.axes[0].collections[0]
    assert mesh.norm.vmin == pytest.approx(0.917) and mesh.norm.vmax == pytest.approx(0.977)
    assert mesh.colorbar.ax.get_ylabel() == "baseline: 94.7%"
    assert mesh.colorbar.formatter(0.95, 0) == "95%"
    plt.close(fig)
    # without a reference the colours span the table's own range, as before
    fig = sweep_heatmap(table, ["layer3"], [10, 100])
    mesh = fig.axes[0].collections[0]
    assert (mesh.norm.vmin, mesh.norm.vmax) == pytest.approx((0.951, 0.956))
    plt.close(fig)
    # a cell far below the baseline widens the scale, but never above 100 %
    fig = sweep_heatmap([[0.795, 0.953]], ["layer3"], [1000, 10], reference=0.947, halfwidth=0.03)
    mesh = fig.axes[0].collections[0]
    assert mesh.norm.vmin == pytest.approx(0.795) and mesh.norm.vmax == pytest.approx(1.0)
    plt.close(fig)
    with pytest.raises(ValueError, match="halfwidth needs a reference"):
        sweep_heatmap(table, ["layer3"], [10, 100], halfwidth=0.03)
