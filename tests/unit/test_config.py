"""config and schema: defaults, W&B aliases and inference, normalization, problem order (pure)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_sweep import config, distributions, schema
from mlflow_sweep.errors import ConfigError

CMD = "python train.py ${args}"


def _cfg(**data) -> config.SweepConfig:
    data.setdefault("command", CMD)
    data.setdefault("parameters", {"x": {"values": [1, 2]}})
    return config.config_from_dict(data, "sweep.yaml")


def _problems(**data) -> list[str]:
    data.setdefault("command", CMD)
    with pytest.raises(ConfigError) as info:
        config.config_from_dict(data, "sweep.yaml")
    return [str(p) for p in info.value.problems]


def test_defaults():
    cfg = _cfg(metric={"name": "loss"})
    assert (cfg.method, cfg.run_cap, cfg.experiment_name, cfg.sweep_name, cfg.seed, cfg.program) == (
        "random", 10, "Default", None, None, None)
    assert cfg.metric == config.Metric("loss", "minimize", None, "worst", "best")
    assert (cfg.early_terminate, cfg.description, cfg.warnings) == (None, None, ())


@pytest.mark.parametrize(("metric", "counted"), [
    ({"name": "loss"}, 0.1),                                        # best, minimize: the lowest
    ({"name": "acc", "goal": "maximize"}, 0.9),                     # best, maximize: the highest
    ({"name": "loss", "summary": "last"}, 0.4),                     # last: the last logged, not the best
    ({"name": "acc", "goal": "maximize", "summary": "last"}, 0.4),  # the goal does not matter then
])
def test_summary_picks_the_value_a_trial_counts(metric: dict, counted: float):
    history = [0.5, 0.1, 0.9, float("nan"), 0.4, float("nan")]  # NaN is never a value
    assert _cfg(metric=metric).metric.summarize(history) == counted


def test_a_history_of_nothing_but_nan_counts_no_value():
    assert _cfg(metric={"name": "loss", "summary": "last"}).metric.summarize([float("nan")]) is None


def test_defaults_inside_blocks_come_from_the_schema_as_wandb_fills_them():
    cfg = _cfg(metric={"name": "loss", "target": 0.1}, early_terminate={"type": "hyperband", "min_iter": 3},
               parameters={"n": {"distribution": "q_normal"}, "u": {"distribution": "q_uniform", "min": 0, "max": 4}})
    assert cfg.early_terminate == {"type": "hyperband", "min_iter": 3, "eta": 3, "strict": True}
    assert (cfg.parameters["n"].spec(), cfg.parameters["u"].spec()) == (
        {"distribution": "q_normal", "mu": 0.0, "sigma": 1.0, "q": 1.0},
        {"distribution": "q_uniform", "min": 0, "max": 4, "q": 1.0})
    assert cfg.metric == config.Metric("loss", "minimize", 0.1, "worst", "best")


def test_the_schema_alone_owns_the_defaults(monkeypatch: pytest.MonkeyPatch):
    """Change a default in the schema and the config follows: no other module restates it."""
    changed = json.loads(json.dumps(schema.load_schema()))
    changed["properties"]["method"]["default"] = "grid"
    changed["properties"]["experiment_name"]["default"] = "Elsewhere"
    changed["$defs"]["metric"]["properties"]["summary"]["default"] = "last"
    changed["$defs"]["hyperband"]["properties"]["eta"]["default"] = 4
    changed["$defs"]["normal"]["properties"]["sigma"]["default"] = 2.0
    changed["allOf"][1]["else"]["properties"]["run_cap"]["default"] = 7
    for cached in (schema._filler, schema._validator):
        cached.cache_clear()
    monkeypatch.setattr(schema, "load_schema", lambda: changed)
    try:
        grid = _cfg(metric={"name": "loss"}, early_terminate={"type": "hyperband", "min_iter": 3})
        rand = _cfg(method="random", parameters={"n": {"distribution": "normal"}})
    finally:
        for cached in (schema._filler, schema._validator):
            cached.cache_clear()
    assert (grid.method, grid.run_cap, grid.experiment_name, grid.metric.summary, grid.early_terminate["eta"]) == (
        "grid", None, "Elsewhere", "last", 4)
    assert (rand.run_cap, rand.parameters["n"].spec()["sigma"]) == (7, 2.0)


def test_an_alias_is_not_overridden_by_the_default_of_its_key():
    assert (_cfg(project="p").experiment_name, _cfg().experiment_name) == ("p", "Default")


def test_no_metric_is_none():
    assert _cfg().metric is None


def test_grid_without_run_cap_means_the_whole_grid():
    assert (_cfg(method="grid").run_cap, _cfg(method="grid", run_cap=3).run_cap) == (None, 3)


def test_wandb_aliases():
    cfg = _cfg(project="p", name="n")
    assert (cfg.experiment_name, cfg.sweep_name) == ("p", "n")
    assert ("project" in cfg.raw, cfg.raw["experiment_name"], cfg.raw["sweep_name"]) == (False, "p", "n")


def test_alias_and_key_may_agree():
    assert _cfg(project="p", experiment_name="p").experiment_name == "p"


def test_program_gives_wandb_default_command():
    cfg = config.config_from_dict({"program": "train.py", "parameters": {"x": {"value": 1}}}, "s.yaml")
    assert (cfg.command, cfg.program) == (("${env}", "${interpreter}", "${program}", "${args}"), "train.py")


def test_string_command_stays_a_string_and_list_becomes_a_tuple():
    assert _cfg(command="echo ${x}").command == "echo ${x}"
    assert _cfg(command=["echo", "${args}"]).command == ("echo", "${args}")


@pytest.mark.parametrize(("spec", "name"), [
    ({"min": 0, "max": 1}, "int_uniform"),       # W&B: two ints are int_uniform, even 0..1
    ({"min": 0, "max": 1.0}, "uniform"),         # one float makes it uniform
    ({"min": 0.5, "max": 2}, "uniform"),
    ({"min": -3, "max": 3}, "int_uniform"),
    ({"values": [1, 2]}, "categorical"),
    ({"values": ["a"], "probabilities": [1.0]}, "categorical"),
    ({"value": 0}, "constant"),
    ({"distribution": "categorical_w_probabilities", "values": ["a"], "probabilities": [1]}, "categorical"),
    ({"distribution": "q_log_uniform_values", "min": 1, "max": 8}, "q_log_uniform_values"),
])
def test_wandb_distribution_inference(spec: dict, name: str):
    assert _cfg(parameters={"x": spec}).parameters["x"].name == name


def test_boolean_bounds_are_not_numbers():
    assert _problems(parameters={"x": {"min": True, "max": 5}}) == ["parameters.x.min: True is not a number"]


def test_int_uniform_accepts_whole_floats_as_ints():
    dist = _cfg(parameters={"x": {"distribution": "int_uniform", "min": 1.0, "max": 3}}).parameters["x"]
    assert (dist.spec()["min"], type(dist.spec()["min"])) == (1, int)


def test_parameters_are_distribution_objects_under_flat_dotted_names_in_file_order():
    cfg = _cfg(parameters={"b": {"value": 1}, "m": {"parameters": {"z": {"values": [1]}, "a": {"min": 0, "max": 2}}}})
    assert list(cfg.parameters) == ["b", "m.z", "m.a"]
    assert cfg.parameters["m.a"] == distributions.from_spec({"distribution": "int_uniform", "min": 0, "max": 2})


def test_raw_is_normalized_json_and_rebuilds_an_equal_config():
    cfg = _cfg(project="p", metric={"name": "acc", "goal": "maximize"}, entity="e",
               early_terminate={"type": "hyperband", "min_iter": 2},
               parameters={"lr": {"min": 0.001, "max": 0.1}, "g": {"parameters": {"h": {"value": 0}}}})
    raw = json.loads(json.dumps(cfg.raw))
    assert config.config_from_dict(raw, "sweep.yaml") == cfg
    assert raw["parameters"]["lr"] == {"distribution": "uniform", "min": 0.001, "max": 0.1}
    assert raw["parameters"]["g"] == {"parameters": {"h": {"distribution": "constant", "value": 0}}}
    assert raw["metric"] == {"name": "acc", "goal": "maximize", "impute": "worst", "summary": "best"}
    assert raw["early_terminate"] == {"type": "hyperband", "min_iter": 2, "eta": 3, "strict": True}


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(-1e6, 1e6), st.text(max_size=5))


@settings(max_examples=60, deadline=None)
@given(st.lists(_SCALARS, min_size=1, max_size=5))
def test_falsy_and_mixed_values_survive_the_raw_round_trip(values: list):
    cfg = _cfg(parameters={"x": {"values": values}})
    again = config.config_from_dict(json.loads(json.dumps(cfg.raw)), "sweep.yaml")
    assert list(again.parameters["x"].grid_values()) == values
    assert [type(v) for v in again.parameters["x"].grid_values()] == [type(v) for v in values]


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _cfg().method = "grid"  # type: ignore[misc]


def test_wandb_only_keys_are_accepted_with_warnings():
    cfg = _cfg(entity="e", controller={"type": "local"}, job="j", image_uri="i", apiVersion="v1", kind="sweep",
               metric={"name": "m", "impute_while_running": "best"})
    assert cfg.warnings == tuple(f"{k} is ignored (W&B only)" for k in config.IGNORED_KEYS) + (
        "metric.impute_while_running is ignored (W&B only)",)


_HOW = ("(pass parameters with ${args} or ${name}, or read them from the JSON file named by "
        "MLFLOW_SWEEP_PARAMS_FILE)")


def test_a_parameter_the_string_command_never_uses_is_a_warning():
    cfg = _cfg(command="echo ${x}", parameters={"x": {"value": 1}, "y": {"value": 2}})
    assert cfg.warnings == (f"parameter y is not used in command; the command will not see it {_HOW}",)


def test_a_list_command_that_passes_no_parameter_gets_the_same_warning():
    """W&B files whose program reads wandb.config pass nothing on the command line: a warning, not an error."""
    cfg = _cfg(command=["${env}", "${interpreter}", "${program}", "--epochs=3"], program="t.py",
               parameters={"lr": {"value": 1}, "g": {"parameters": {"h": {"value": 2}}}})
    assert cfg.warnings == (f"parameters lr, g.h are not used in command; the command will not see them {_HOW}",)


@pytest.mark.parametrize("command", [["run", "${args_no_equals}"], ["run", "--cfg", "${args_json_file}"],
                                     ["run", "--lr=${lr}", "${g}"], "run ${lr} ${g.h}"])
def test_commands_that_pass_every_parameter_get_no_warning(command):
    assert _cfg(command=command, parameters={"lr": {"value": 1}, "g": {"parameters": {"h": {"value": 2}}}}
                ).warnings == ()


@pytest.mark.parametrize("command", [
    "run ${args} ${args_no_hyphens} ${args_no_boolean_flags} ${args_json} ${args_json_file} ${interpreter} ${env}",
    "run --g ${g} --h ${g.h}",
    "run ${envvar:DATA_DIR} --h=${g.h}",
])
def test_macros_groups_and_envvars_are_allowed_in_commands(command: str):
    assert _cfg(command=command, parameters={"g": {"parameters": {"h": {"value": 1}}}}).command == command


def test_every_problem_is_listed_schema_first_then_semantic_each_sorted_by_path():
    problems = _problems(method="grid", command="echo ${zz}", run_cap=0, parameters={
        "b": {"values": list(range(12)), "probabilities": [0.5] * 12},
        "a": {"min": 2, "max": 1},
        "c": {"values": [1, 2, [3], {"k": 4}], "probabilities": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1]},
    })
    assert problems == [
        "parameters.c.probabilities[10]: -1 must be at least 0",
        "run_cap: 0 must be at least 1",
        "command: ${zz} is not a parameter (known: a, b, c)",
        "parameters.a: min 2 must be less than max 1",
        "parameters.b: probabilities must sum to 1, but sum to 6.0",
    ]


def test_bayes_needs_a_metric():
    assert _problems(method="bayes", parameters={"x": {"min": 0.0, "max": 1.0}}) == [
        "metric: missing (required for method bayes)"]


@pytest.mark.parametrize(("spec", "problem"), [
    ({"min": 0.0, "max": 1.0}, "uniform(min=0.0, max=1.0) is not finite"),
    ({"distribution": "normal"}, "normal(mu=0.0, sigma=1.0) is not finite"),
    ({"distribution": "log_uniform_values", "min": 1, "max": 2}, "is not finite"),
])
def test_grid_needs_finite_parameters(spec: dict, problem: str):
    (found,) = _problems(method="grid", parameters={"x": spec})
    assert found.startswith("parameters.x: ") and problem in found


def test_grid_accepts_q_uniform_int_uniform_values_and_constants():
    cfg = _cfg(method="grid", parameters={"a": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.5},
                                          "b": {"min": 1, "max": 3}, "c": {"values": [1]}, "d": {"value": 0}})
    assert all(d.grid_values() is not None for d in cfg.parameters.values())


def test_render_config_shows_each_inferred_distribution():
    cfg = _cfg(sweep_name="s", metric={"name": "acc", "goal": "maximize", "target": 0.9}, command="t ${learning_rate} ${o}",
               parameters={"learning_rate": {"min": 0.0001, "max": 0.1}, "o": {"values": ["adam", "sgd"]}})
    assert config.render_config(cfg).splitlines() == [
        "sweep_name: s",
        "experiment_name: Default",
        "method: random",
        "metric: acc (maximize; summary best, impute worst, target 0.9)",
        "run_cap: 10",
        "command: t ${learning_rate} ${o}",
        "parameters:",
        "  learning_rate: uniform(min=0.0001, max=0.1)",
        '  o: categorical(values=["adam", "sgd"])',
    ]


def test_render_config_counts_the_whole_grid():
    cfg = _cfg(method="grid", parameters={"a": {"values": [1, 2, 3]}, "b": {"min": 1, "max": 4}})
    assert "run_cap: none (the whole grid, 12 points)" in config.render_config(cfg)


def test_missing_file_is_one_line(tmp_path: Path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        config.load_config(path)
    assert str(info.value) == f"{path}: no such file"


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text("command: x\nparameters:\n  a: {values: [1, 2}\n")
    with pytest.raises(ConfigError) as info:
        config.load_config(path)
    assert str(info.value).startswith(f"{path}:3:")
    assert "not valid YAML: " in str(info.value)


def test_json_file_is_read_as_json(tmp_path: Path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"command": CMD, "parameters": {"x": {"values": ["1e-3"]}}}))
    assert config.load_config(path).parameters["x"].grid_values() == ("1e-3",)


def test_schema_ships_as_package_data():
    assert Path(schema.schema_source()).name == "sweep.schema.json"
    assert schema.load_schema() is schema.load_schema()  # loaded once


def test_schema_is_valid_and_knows_every_registered_distribution():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema.load_schema())
    then = schema.load_schema()["$defs"]["parameter"]["else"]["then"]
    assert set(then["properties"]["distribution"]["enum"]) == set(distributions.REGISTRY) | {
        "categorical_w_probabilities"}


def test_parameter_shapes_are_discriminated_without_anyof_or_oneof():
    """anyOf/oneOf make jsonschema blame the wrong branch ('min' is required for ``{values: []}``)."""
    text = json.dumps(schema.load_schema()["$defs"]["parameter"])
    assert ('"anyOf"' in text.replace('"if": {"anyOf"', ""), '"oneOf"' in text) == (False, False)


@pytest.mark.parametrize(("value", "hint"), [
    ("1e-3", "a quoted number is text; write it without quotes"),
    ("0.5", "a quoted number is text; write it without quotes"),
    ("abc", None),
    (0.5, None),
])
def test_number_text_hint(value: str, hint: str | None):
    assert schema.number_text_hint(value) == hint


@pytest.mark.parametrize(("text", "spelled"), [
    ("1e-3", "1.0e-3"), ("3e6", "3.0e+6"), ("1.5E-4", "1.5e-4"), (".5e3", "0.5e+3"), ("-2e3", "-2.0e+3"),
])
def test_yaml_float_spellings_really_are_floats_for_pyyaml(text: str, spelled: str):
    import yaml

    assert (schema.yaml_float(text), yaml.safe_load(spelled)) == (spelled, float(text))


def test_list_command_items_that_yaml_made_numbers_become_text():
    """W&B's schema allows ``command: [python, train.py, --epochs, 5]``."""
    assert _cfg(command=["python", "t.py", "--epochs", 5, "${args}"]).command == (
        "python", "t.py", "--epochs", "5", "${args}")


def test_normal_sigma_zero_is_allowed_as_in_wandb():
    assert _cfg(parameters={"n": {"distribution": "normal", "sigma": 0}}).parameters["n"].ppf(0.3) == 0.0


# --- real W&B files, as people write them -------------------------------------------------------


def _load(tmp_path: Path, text: str) -> config.SweepConfig:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return config.load_config(path)


def test_flat_dotted_names_stay_flat_and_nested_blocks_nest():
    cfg = _cfg(parameters={"model.lr": {"value": 0.1}, "o": {"parameters": {"lr": {"value": 0.2},
                                                                            "b.c": {"value": 3}}}})
    assert list(cfg.parameters) == ["model.lr", "o.lr", "o.b.c"]
    assert dict(cfg.paths) == {"model.lr": ("model.lr",), "o.lr": ("o", "lr"), "o.b.c": ("o", "b.c")}
    assert cfg.nest({"model.lr": 0.1, "o.lr": 0.2, "o.b.c": 3}) == {"model.lr": 0.1, "o": {"lr": 0.2, "b.c": 3}}
    assert cfg.groups() == {"o": ("o",)}


def test_a_name_and_a_dotted_name_with_its_prefix_may_both_exist():
    """``mixmethod`` and ``mixmethod.conf_prob`` are two flat parameters: a name with a dot is still a name."""
    cfg = _cfg(parameters={"mixmethod": {"values": ["cutmix"]}, "mixmethod.conf_prob": {"value": 0.5}})
    assert cfg.nest({"mixmethod": "cutmix", "mixmethod.conf_prob": 0.5}) == {
        "mixmethod": "cutmix", "mixmethod.conf_prob": 0.5}


def test_a_flat_dotted_name_is_not_a_block_for_placeholders():
    assert _problems(command="run ${model}", parameters={"model.lr": {"value": 1}}) == [
        "command: ${model} is not a parameter (known: model.lr)"]


def test_a_flat_name_and_a_nested_leaf_with_one_mlflow_name_is_an_error_naming_both():
    assert _problems(parameters={"a.b": {"value": 1}, "a": {"parameters": {"b": {"value": 2}}}}) == [
        "parameters.a.parameters.b: 'a.b' is already defined at parameters.a.b (both would be the MLflow "
        "param of that name, which holds one value; rename one)"]


def test_nested_to_flat_and_back_for_names_without_paths():
    assert config.nest({"x.y": 1, "z": 2}, {"z": ("g", "z")}) == {"x.y": 1, "g": {"z": 2}}


def test_a_file_without_program_or_command_is_for_the_function_agent():
    cfg = config.config_from_dict({"method": "random", "parameters": {"x": {"value": 1}}}, "s.yaml")
    assert (cfg.command, cfg.program, "command" in cfg.raw) == (None, None, False)
    assert cfg.warnings == (config.NO_COMMAND,)
    assert "command: none (neither program nor command is set" in config.render_config(cfg)
    assert config.config_from_dict(json.loads(json.dumps(cfg.raw)), "s.yaml") == cfg


def test_yaml_1_2_numbers_are_numbers_where_the_schema_wants_one(tmp_path: Path):
    cfg = _load(tmp_path, "program: t.py\nrun_cap: 1e1\nparameters:\n  lr: {min: 1e-4, max: 1.0e3}\n"
                          "  v: {values: [1e-3, 2e-3]}\n  w: {distribution: log_uniform_values, min: 1E-5, max: .5e1}\n")
    assert cfg.parameters["lr"].spec() == {"distribution": "uniform", "min": 0.0001, "max": 1000.0}
    assert cfg.parameters["w"].spec()["max"] == 5.0
    assert cfg.run_cap == 10
    assert cfg.parameters["v"].grid_values() == ("1e-3", "2e-3")  # values want no number: text, as written
    assert [type(v) for v in cfg.parameters["v"].grid_values()] == [str, str]
    assert cfg.warnings == (
        "parameters.lr.max: 1.0e3 is text to PyYAML (YAML 1.1); read as the number 1000.0, as W&B does "
        "(write 1.0e+3 to make it a number for every YAML reader)",
        "parameters.lr.min: 1e-4 is text to PyYAML (YAML 1.1); read as the number 0.0001, as W&B does "
        "(write 1.0e-4 to make it a number for every YAML reader)",
        "parameters.w.max: .5e1 is text to PyYAML (YAML 1.1); read as the number 5.0, as W&B does "
        "(write 0.5e+1 to make it a number for every YAML reader)",
        "parameters.w.min: 1E-5 is text to PyYAML (YAML 1.1); read as the number 1e-05, as W&B does "
        "(write 1.0e-5 to make it a number for every YAML reader)",
        "run_cap: 1e1 is text to PyYAML (YAML 1.1); read as the number 10.0, as W&B does "
        "(write 1.0e+1 to make it a number for every YAML reader)")


def test_quoted_number_text_is_still_an_error(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "program: t.py\nparameters:\n  lr: {min: '1e-4', max: 0.1}\n")
    assert [str(p) for p in info.value.problems] == [
        "parameters.lr.min: '1e-4' is not a number (a quoted number is text; write it without quotes)"]


def test_number_text_becomes_plain_text_in_raw(tmp_path: Path):
    cfg = _load(tmp_path, "program: t.py\nparameters:\n  v: {value: 1e-3}\n")
    assert type(cfg.raw["parameters"]["v"]["value"]) is str


def test_a_duplicate_key_is_a_warning_naming_its_line_and_the_last_one_wins(tmp_path: Path):
    cfg = _load(tmp_path, "program: t.py\nparameters:\n  e:\n    values: [1, 5]\n    values: [10, 20]\n")
    assert cfg.parameters["e"].grid_values() == (10, 20)
    assert cfg.warnings == (f"{tmp_path / 'sweep.yaml'}:5:5: duplicate key 'values'; the last one is used "
                            "(as PyYAML and W&B do)",)


GOOD = sorted((Path(__file__).parent.parent / "configs" / "good").iterdir())
V1_HEADER = json.loads((Path(__file__).parent.parent / "assets" / "ledger-v1.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_a_stored_config_rebuilds_the_config_it_was_made_from(path):
    """What a ledger keeps (``raw``) gives back the same config without being checked again."""
    made = config.load_config(path)
    rebuilt = config.stored_config(json.loads(json.dumps(made.raw)), "sweep s")
    assert (rebuilt.raw, rebuilt.parameters, rebuilt.metric, rebuilt.paths, rebuilt.command) == \
        (made.raw, made.parameters, made.metric, made.paths, made.command)


def test_a_stored_config_of_an_older_release_gets_todays_defaults():
    """The v1 asset's header holds the file as written then (no defaults): it reads as checking it would."""
    stored = V1_HEADER["header"]["config"]
    assert config.stored_config(stored, "sweep v1").raw == config.config_from_dict(stored, "sweep v1").raw


def test_a_stored_config_that_cannot_be_built_is_a_ledger_error():
    from mlflow_sweep.errors import LedgerError

    with pytest.raises(LedgerError, match="sweep s: the sweep's config in its ledger cannot be read"):
        config.stored_config({"method": "random", "parameters": {"x": {"distribution": "zeta"}}}, "sweep s")
