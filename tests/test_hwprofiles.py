"""Hardware profiles: the shipped ones are complete and sourced; bad files fail in one named line."""

import pytest
import yaml

from spikeport.errors import UserError
from spikeport.hwprofiles.registry import BUILTIN_DIR, available_profiles, load_profile, resolve_profiles
from spikeport.hwprofiles.schema import sourced_fields

REQUIRED = {"loihi", "loihi2", "truenorth", "spinnaker2", "speck", "xylo-audio2", "akida-akd1000", "ann-45nm"}


def test_every_shipped_profile_validates():
    profiles = available_profiles()
    assert REQUIRED <= set(profiles)
    for path in BUILTIN_DIR.glob("*.yaml"):
        assert load_profile(path).name == path.stem  # one file per profile, named after it


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_value_has_a_source_and_a_confidence(name):
    figures = sourced_fields(available_profiles()[name])
    assert len(figures) > 30
    for field, figure in figures.items():
        assert figure.source.strip(), field
        if figure.value is not None:
            assert figure.confidence in ("H", "M", "L"), field


def test_paper_baseline_constants():
    ann = available_profiles()["ann-45nm"]
    assert ann.energy.energy_per_mac_pj.value == 4.6
    assert ann.energy.energy_per_synop_pj.value == 0.9
    assert ann.energy.estimator.value == "paper"


def test_unknown_figures_stay_null():
    loihi2 = available_profiles()["loihi2"]
    assert loihi2.precision.state_bits.value is None
    assert loihi2.precision.state_bits.confidence is None
    assert "not found" in loihi2.precision.state_bits.source


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_energy_figure_a_chip_uses_is_a_number_or_a_sourced_range(name):
    """Issue 12: no energy term of a shipped profile is unknown; bounds, where given, hold the value."""
    from spikeport.hwprofiles.energy import CONSTANTS

    profile = available_profiles()[name]
    for field in CONSTANTS[profile.energy.estimator.value]:
        figure = getattr(profile.energy, field)
        assert figure.value is not None, field
        low, high = figure.interval()
        assert 0 <= low <= figure.value <= high, field


def test_derived_figures_name_a_measurement_that_exists():
    loihi2 = available_profiles()["loihi2"]
    derived = {name: f.derived_from for name, f in sourced_fields(loihi2).items() if f.derived_from}
    assert derived["energy.energy_per_synop_pj"] == "pilotnet_lif_dynamic_energy"
    assert derived["capacity.neurons_per_core"] == "pilotnet_lif_cores"
    assert set(derived.values()) <= set(loihi2.measurements)
    assert loihi2.measurements["pilotnet_lif_throughput"].value == 408.91


def test_no_profile_cites_the_teams_notes_instead_of_a_primary_source():
    for path in BUILTIN_DIR.glob("*.yaml"):
        assert "hardware-sources" not in path.read_text(), path.name


def _loihi() -> dict:
    return yaml.safe_load((BUILTIN_DIR / "loihi.yaml").read_text())


@pytest.mark.parametrize(
    "change, field, message",
    [
        (lambda p: p["energy"].pop("static_power_w"), "energy.static_power_w", "Field required"),
        (lambda p: p["energy"]["static_power_w"].pop("value"), "energy.static_power_w.value", "Field required"),
        (lambda p: p["energy"]["energy_per_synop_pj"].update(value=-1.0), "energy.energy_per_synop_pj.value", "greater than or equal to 0"),
        (lambda p: p["capacity"]["cores_per_chip"].update(value="128"), "capacity.cores_per_chip.value", "valid integer"),
        (lambda p: p["capacity"]["cores_per_chip"].update(value=True), "capacity.cores_per_chip.value", "valid integer"),
        (lambda p: p["timing"]["step_time_s"].update(confidence="high"), "timing.step_time_s.confidence", "'H', 'M' or 'L'"),
        (lambda p: p["timing"]["step_time_s"].update(confidence=None), "timing.step_time_s", "confidence (H, M or L) is required"),
        (lambda p: p["timing"]["step_time_s"].pop("source"), "timing.step_time_s.source", "Field required"),
        (lambda p: p["timing"].update(step_time_ms={"value": 1.0, "source": "x", "confidence": "H"}), "timing.step_time_ms", "Extra inputs"),
        (lambda p: p["energy"]["energy_per_neuron_update_pj"].update(low=90.0, high=60.0), "energy.energy_per_neuron_update_pj", "interval inverted: low 90 > high 60"),
        (lambda p: p["energy"]["energy_per_neuron_update_pj"].update(low=10.0, high=20.0), "energy.energy_per_neuron_update_pj", "value 66.5 lies outside its interval [10, 20]"),
        (lambda p: p["energy"]["static_power_w"].update(low=0.01), "energy.static_power_w", "an interval needs both low and high"),
        (lambda p: p["energy"]["energy_per_synop_pj"].update(derived_from="kws_power"), "energy.energy_per_synop_pj", "derived_from 'kws_power' names no entry of measurements (has: none)"),
    ],
)
def test_bad_profiles_name_the_file_and_field(tmp_path, change, field, message):
    data = _loihi()
    change(data)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as e:
        load_profile(path)
    text = str(e.value)
    assert text.startswith(f"{path}: {field}: ")
    assert message in text
    assert "\n" not in text


def test_numbers_as_people_write_them(tmp_path):
    text = (BUILTIN_DIR / "loihi.yaml").read_text()
    text = text.replace("step_time_s: {value: 0.001,", "step_time_s: {value: 1e-3,")
    text = text.replace("static_power_w: {value: 0.029,", "static_power_w: {value: 1,")  # an int for a float
    (tmp_path / "loihi.yaml").write_text(text)
    profile = load_profile(tmp_path / "loihi.yaml")
    assert profile.timing.step_time_s.value == 0.001 and profile.energy.static_power_w.value == 1.0
    assert profile.capacity.cores_per_chip.value == 128  # ints stay ints


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncapacity: [1,\n")
    with pytest.raises(UserError, match="bad.yaml: invalid YAML at line"):
        load_profile(bad)
    with pytest.raises(UserError, match="nope.yaml: cannot read"):
        load_profile(tmp_path / "nope.yaml")


def test_user_folder_adds_and_replaces_profiles(tmp_path):
    mine = _loihi()
    mine["name"] = "my-loihi"
    (tmp_path / "my-loihi.yaml").write_text(yaml.safe_dump(mine))
    fixed = _loihi()
    fixed["energy"]["static_power_w"]["value"] = 0.5
    (tmp_path / "loihi.yaml").write_text(yaml.safe_dump(fixed))
    profiles = available_profiles([tmp_path])
    assert "my-loihi" in profiles and "speck" in profiles
    assert profiles["loihi"].energy.static_power_w.value == 0.5


def test_resolve_by_name_and_path(tmp_path):
    path = tmp_path / "other.yaml"
    data = _loihi()
    data["name"] = "other"
    path.write_text(yaml.safe_dump(data))
    names = [p.name for p in resolve_profiles(["speck", str(path)])]
    assert names == ["speck", "other"]
    assert {p.name for p in resolve_profiles([])} >= REQUIRED
    with pytest.raises(UserError, match=r"unknown profile 'lohi' \(available: akida-akd1000, ann-45nm"):
        resolve_profiles(["lohi"])


def test_bad_profile_through_the_cli_is_one_line_exit_2_and_writes_nothing(cli, tmp_path):
    data = _loihi()
    data["energy"]["energy_per_neuron_update_pj"].update(low=90.0, high=60.0)
    path = tmp_path / "inverted.yaml"
    path.write_text(yaml.safe_dump(data))
    code, _, err = cli("profiles", "validate", path)
    assert code == 2 and err.count("\n") == 1 and "interval inverted" in err and "Traceback" not in err
    data = _loihi()
    data["energy"]["energy_per_synop_pj"]["derived_from"] = "kws_power"
    path = tmp_path / "underived.yaml"
    path.write_text(yaml.safe_dump(data))
    code, _, err = cli("report", tmp_path, "--profiles", path, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "derived_from 'kws_power'" in err
    assert not (tmp_path / "out").exists()  # nothing written
