"""Typed method and regularizer parameters: validation errors that name the plug-in, and `train --help`."""

from __future__ import annotations

import pytest

from forgetless.cli import main
from forgetless.config import ConfigError, build_config
from forgetless.training.config import TrainConfig
from forgetless.objectives import OBJECTIVES, build_objective
from forgetless.params import describe_field, validate_params
from forgetless.regularizers import REGULARIZERS, build_regularizer


def _config_error(**values: object) -> str:
    with pytest.raises(ConfigError) as err:
        build_config(TrainConfig, {"model": "m", "data": "d", "output": "o", **values}, "run.yaml")
    return str(err.value)


def test_a_wrong_value_names_the_method_the_parameter_and_what_it_takes() -> None:
    message = _config_error(method="talr", method_params={"floor": 2, "normalize": "sum"})
    assert message == ("run.yaml: key 'method_params': Value error, method talr: floor must be a number in [0, 1), "
                       "got 2; normalize must be 'mean' or 'none', got 'sum'")
    message = _config_error(method="talr", method_params={"tau": "mean"})
    assert "method talr: tau must be 'token_median', 'sample_median' or a number > 0, got 'mean'" in message


def test_a_wrong_type_of_a_regularizer_parameter_is_named() -> None:
    message = _config_error(regularizers={"kl": {"batch_size": "many"}})
    assert message == ("run.yaml: key 'regularizers': Value error, regularizer kl: batch_size must be an integer >= 1, "
                       "got 'many'")
    message = _config_error(regularizers={"l2sp": {"weight": -1}})
    assert "regularizer l2sp: weight must be a number >= 0, got -1" in message


def test_an_unknown_parameter_lists_the_known_ones() -> None:
    message = _config_error(method="flow", method_params={"temperature": 1})
    assert "method 'flow': bad parameters ['temperature']: flow takes normalize, batch_size" in message
    assert "method 'nll' takes no parameters, got ['tau']" in _config_error(method_params={"tau": 1})


def test_params_are_parsed_to_their_types() -> None:
    # A number given as a string (the CLI's JSON, or YAML's 1e-3, which YAML 1.1 reads as a string).
    assert build_objective("talr", {"tau": "0.5"}).tau == 0.5
    assert build_regularizer("l2sp", {"weight": "1e-3"}).weight == 1e-3
    # Defaults come from the params models.
    assert build_objective("talr").report() == {"tau": "token_median", "floor": 0.01, "normalize": "mean",
                                                "scope": "global", "tau_is_infinite": False}
    assert build_regularizer("kl").report()["beta"] == 1.0


def test_described_types() -> None:
    talr = OBJECTIVES["talr"].params_model.model_fields
    assert describe_field(talr["floor"]) == "a number in [0, 1)"
    assert describe_field(talr["scope"]) == "'global' or 'micro_batch'"
    kl = REGULARIZERS["kl"].params_model.model_fields
    assert describe_field(kl["data"]) == "a string or null"
    assert describe_field(kl["max_length"]) == "an integer >= 2"
    assert describe_field(kl["seed"]) == "an integer"
    with pytest.raises(ValueError, match="^method x: seed must be an integer, got 1.5$"):
        validate_params("method", "x", REGULARIZERS["kl"].params_model, {"seed": 1.5})


def test_train_help_lists_every_parameter_with_its_type_and_default(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "    tau: 'token_median', 'sample_median' or a number > 0 (default 'token_median')\n" in out
    assert "    weight: a number >= 0 (default 0.001)\n" in out
    assert "    data: a string or null (default null)\n" in out
    assert "  dft: no parameters\n" in out
    for registry in (OBJECTIVES, REGULARIZERS):
        for name, cls in registry.items():
            assert f"  {name}:" in out
            for key, field in cls.params_model.model_fields.items():
                assert f"    {key}: {describe_field(field)} (default " in out
