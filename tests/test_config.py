from pathlib import Path

import pytest

from flowerbed.config import default_sites, load_federation, save_federation
from flowerbed.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "federation.toml"
    path.write_text(text)
    return path


GOOD = """
[run]
strategy = "fedprox"
rounds = 5
model = "small-cnn"

[data]
source = "synthetic"
partition = "dirichlet"
alpha = 0.3

[privacy]
epsilon = 4.0

[[sites]]
name = "charite"
country = "de"

[[sites]]
name = "hcl"
country = "FR"
epsilon = 2.0
"""


def test_embedded_default_is_four_hospitals_in_two_countries():
    federation = load_federation()
    assert len(federation.sites) == 4
    assert {site.country for site in federation.sites} == {"DE", "FR"}
    assert federation.privacy.enabled
    assert federation.data.source == "synthetic"


@pytest.mark.parametrize(
    ("dp", "task", "model", "optimizer", "rate"),
    [
        (True, "classification", "small-cnn-dp", "sgd", 0.04),
        (False, "classification", "small-cnn", "adam", 0.001),
        (True, "segmentation", "unet", "sgd", 0.04),
        (False, "segmentation", "unet", "adam", 0.01),
    ],
)
def test_training_defaults_follow_task_and_dp_unless_the_user_chose(
    dp, task, model, optimizer, rate
):
    federation = load_federation(None, {"privacy": {"enabled": dp}})
    assert (federation.network_for(task), federation.run.optimizer) == (model, optimizer)
    assert federation.learning_rate_for(task) == rate
    chosen = load_federation(
        None, {"privacy": {"enabled": dp}, "run": {"model": "resnet10", "learning_rate": 0.5}}
    )
    assert (chosen.network_for(task), chosen.learning_rate_for(task)) == ("resnet10", 0.5)


def test_an_own_network_is_named_as_module_function_and_nothing_else():
    chosen = load_federation(None, {"run": {"model": "hospital_nets.unet:build"}})
    assert chosen.network_for("segmentation") == "hospital_nets.unet:build"
    assert chosen.builds("hospital_nets.unet:build") and chosen.builds("unet")
    assert not chosen.builds("os:system")
    with pytest.raises(ConfigError, match=r"package\.module:function"):
        load_federation(None, {"run": {"model": "not a network"}})


def test_federation_file_is_read_and_country_normalised(tmp_path):
    federation = load_federation(write(tmp_path, GOOD))
    assert federation.run.strategy == "fedprox"
    assert federation.run.rounds == 5
    assert federation.sites[0].country == "DE"
    assert federation.budget_of(federation.sites[0]) == 4.0
    assert federation.budget_of(federation.sites[1]) == 2.0


def test_command_line_overrides_win_over_the_file(tmp_path):
    federation = load_federation(
        write(tmp_path, GOOD), {"run": {"rounds": 2}, "sites": default_sites(3)}
    )
    assert federation.run.rounds == 2
    assert federation.run.strategy == "fedprox"
    assert [site.name for site in federation.sites] == ["hospital-01", "hospital-02", "hospital-03"]


def test_resolved_federation_round_trips(tmp_path):
    federation = load_federation(write(tmp_path, GOOD))
    save_federation(federation, tmp_path / "resolved.toml")
    assert load_federation(tmp_path / "resolved.toml") == federation


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('country = "de"', 'country = "XX"'), r"sites\.0\.country: 'XX' is not an ISO 3166-1"),
        (("rounds = 5", "rounds = 0"), r"run\.rounds: Input should be greater than or equal to 1"),
        (
            ('model = "small-cnn"', 'model = "vgg"'),
            r"run\.model: unknown model 'vgg'; choose one of",
        ),
        (('strategy = "fedprox"', 'strategy = "fedsgd"'), r"run\.strategy: unknown strategy"),
        (('partition = "dirichlet"', 'partition = "zipf"'), r"data\.partition: unknown partition"),
        (("epsilon = 4.0", "epsilon = -1.0"), r"privacy\.epsilon: Input should be greater than 0"),
        (('name = "hcl"', 'name = "charite"'), r"site name 'charite' appears twice"),
        (('name = "hcl"', 'name = "HCL Lyon"'), r"sites\.1\.name: use lower-case letters"),
        (("alpha = 0.3", "alpah = 0.3"), r"data\.alpah: unknown field"),
    ],
)
def test_bad_value_fails_at_load_naming_the_field(tmp_path, change, expected):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError, match=expected) as caught:
        load_federation(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_and_malformed_files_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_federation(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_federation(write(tmp_path, "[run\nrounds = 3"))


def test_a_federation_needs_sites(tmp_path):
    with pytest.raises(ConfigError, match="sites"):
        load_federation(write(tmp_path, "[run]\nrounds = 2\n"))


def test_data_paths_in_a_file_are_relative_to_that_file(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "federation.toml"
    path.write_text(
        '[data]\nsource = "../scans/set.npz"\n\n[[sites]]\nname = "a"\ncountry = "DE"\n'
        'data = "own.csv"\n'
    )
    federation = load_federation(path)
    assert federation.data.source == str(tmp_path / "scans" / "set.npz")
    assert federation.sites[0].data == str(folder / "own.csv")
    flagged = load_federation(path, {"data": {"source": "synthetic"}})
    assert flagged.data.source == "synthetic"


def test_example_federation_file_is_valid():
    example = Path(__file__).resolve().parents[1] / "examples" / "federation.toml"
    federation = load_federation(example)
    assert federation.data.source.endswith("shared/data/medmnist/pneumoniamnist.npz")
    assert len({site.country for site in federation.sites}) == 2
