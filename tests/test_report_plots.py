"""The report's plots: readable at any depth, the same colour per energy component in every report,
integer timesteps, error bars from the energy intervals."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import pytest

from spikeport.hwprofiles import plots
from spikeport.hwprofiles.report import build_report
from test_hwprofiles_report import PROFILES, dense, network


def _draw(name, data):
    fig, ax = plt.subplots(figsize=plots._size(data, name))
    getattr(plots, {"spikes_per_layer": "_spikes_per_layer", "firing_rate_per_step": "_firing_rate",
                    "energy_per_profile": "_energy_per_profile", "energy_breakdown": "_energy_breakdown"}[name])(ax, data)
    fig.canvas.draw()
    return fig, ax


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_layer_names_get_a_row_each_beyond_twenty_layers():
    data = build_report(network(*[dense(f"stage{i // 4}.block{i % 4}.conv", 8, 8) for i in range(32)]), [PROFILES["loihi2"]]).data
    fig, ax = _draw("spikes_per_layer", data)
    labels = [t for t in ax.get_yticklabels() if t.get_text()]
    assert len(labels) == 32
    boxes = sorted((t.get_window_extent() for t in labels), key=lambda b: b.y0)
    assert all(lower.y1 <= upper.y0 for lower, upper in zip(boxes, boxes[1:]))  # no two labels overlap


def test_timestep_ticks_are_integers():
    data = build_report(network(dense("fc", 8, 8), t=5), [PROFILES["loihi2"]]).data
    _, ax = _draw("firing_rate_per_step", data)
    ticks = [t for t in ax.get_xticks() if 0 <= t <= 4]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_each_energy_component_keeps_its_colour_from_one_report_to_the_next():
    net = network(dense("fc1", 20, 10, input_kind="graded"), dense("fc2", 10, 4))
    colours = []
    for chosen in (["loihi2", "speck"], ["truenorth", "xylo-audio2", "loihi"]):
        _, ax = _draw("energy_breakdown", build_report(net, [PROFILES[n] for n in chosen]).data)
        colours.append({c.get_label(): mcolors.to_hex(c.patches[0].get_facecolor()) for c in ax.containers})
    common = set(colours[0]) & set(colours[1])
    assert {"synops", "static"} <= common
    for term in common:
        assert colours[0][term] == colours[1][term] == mcolors.to_hex(plots.COMPONENT_COLOURS[term])


def test_energies_are_drawn_with_their_intervals():
    data = build_report(network(dense("fc1", 20, 10), dense("fc2", 10, 4)), [PROFILES["speck"], PROFILES["loihi"]]).data
    _, ax = _draw("energy_per_profile", data)
    bars = [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert len(bars) == 1
    segments = bars[0].lines[2][0].get_segments()
    speck = data["profiles"]["speck"]["energy_j"]
    assert segments[0][0][1] == pytest.approx(speck["low"]) and segments[0][1][1] == pytest.approx(speck["high"])
