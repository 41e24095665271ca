"""engine.features.spec: TOML feature specs, --features, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import InputError
from engine.api import resolve_spec as resolve_options
from engine.options import FeatureOptions, InputOptions
from engine.features.spec import Categorical, Feature, FeatureSpec, load_spec, spec_from_columns

FULL_SPEC = """
id = "customer"
missing = "median"
scale = "robust"
numeric = ["Response"]
exclude = ["Z_Revenue"]

[features]
age = "2014 - Year_Birth"
income = { expr = "Income", clip = [0.05, 0.95] }
spending = { expr = "MntWines + MntFruits", log1p = true }
both = { expr = "Recency", clip = [0, 1], log1p = true }
Recency = true

[categorical]
Education = { max_levels = 3 }
Marital_Status = {}
"""


def write_spec(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_customers_spec_loads() -> None:
    spec = load_spec("customers")
    assert isinstance(spec, FeatureSpec)
    assert spec.id_col == "ID"
    assert spec.missing == "drop"
    assert spec.scale == "standard"
    assert spec.numeric == ("Response",)
    names = [f.name for f in spec.features]
    assert names[:4] == ["age", "income", "children", "spending"]
    assert len(names) == 11
    by_name = {f.name: f for f in spec.features}
    assert by_name["income"].clip == (0.0, 0.99)
    assert by_name["spending"].log1p is True
    assert by_name["age"] == Feature("age", "2014 - Year_Birth")
    assert not spec.auto
    assert "customers" in spec.source


def test_full_toml_spec_is_parsed(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, FULL_SPEC))
    assert spec.id_col == "customer"
    assert spec.missing == "median"
    assert spec.scale == "robust"
    assert spec.numeric == ("Response",)
    assert spec.exclude == ("Z_Revenue",)
    assert spec.features == (
        Feature("age", "2014 - Year_Birth"),
        Feature("income", "Income", (0.05, 0.95), False),
        Feature("spending", "MntWines + MntFruits", None, True),
        Feature("both", "Recency", (0.0, 1.0), True),
        Feature("Recency", "Recency"),
    )
    assert spec.categorical == (Categorical("Education", 3), Categorical("Marital_Status"))
    assert spec.categorical[1].max_levels >= 1
    assert str(tmp_path / "spec.toml") in spec.source


def test_inline_table_without_expr_uses_the_feature_name(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, '[features]\nIncome = { clip = [0.0, 0.9] }\n'))
    assert spec.features == (Feature("Income", "Income", (0.0, 0.9), False),)


def test_empty_spec_is_auto(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, "# nothing\n"))
    assert spec.auto
    assert spec.missing == "drop" and spec.scale == "standard"


def test_spec_round_trips_through_json(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, FULL_SPEC))
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


def test_toml_syntax_error_mentions_the_line(tmp_path: Path) -> None:
    path = write_spec(tmp_path, 'id = "ID"\n[features]\nage = \n')
    with pytest.raises(InputError) as info:
        load_spec(path)
    message = str(info.value)
    assert "line 3" in message
    assert str(path) in message


def test_unknown_top_level_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"scael.*did you mean 'scale'"):
        load_spec(write_spec(tmp_path, 'scael = "robust"\n'))


def test_unknown_feature_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"'income'.*'clp'.*did you mean 'clip'"):
        load_spec(write_spec(tmp_path, '[features]\nincome = { expr = "Income", clp = [0.0, 0.9] }\n'))


def test_unknown_categorical_key(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"max_level.*did you mean 'max_levels'"):
        load_spec(write_spec(tmp_path, '[categorical]\nEducation = { max_level = 3 }\n'))


@pytest.mark.parametrize(
    "clip",
    ["[0.5]", "[0.9, 0.1]", "[0.1, 0.1]", "[-0.1, 0.5]", "[0.0, 1.5]", '["a", "b"]', "0.9", "[0.1, 0.5, 0.9]",
     "[false, true]"],
)
def test_bad_clip(tmp_path: Path, clip: str) -> None:
    with pytest.raises(InputError, match="clip"):
        load_spec(write_spec(tmp_path, f'[features]\nincome = {{ expr = "Income", clip = {clip} }}\n'))


@pytest.mark.parametrize("key,value", [("missing", '"zero"'), ("missing", "1"), ("scale", '"minmax"')])
def test_bad_policy_value(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(InputError, match=key) as info:
        load_spec(write_spec(tmp_path, f"{key} = {value}\n"))
    assert "drop" in str(info.value) or "standard" in str(info.value)  # the choices are listed


@pytest.mark.parametrize(
    "text,match",
    [
        ('[features]\nx = { expr = "A", log1p = "yes" }\n', "log1p"),
        ('[features]\nx = { expr = "" }\n', "expr"),
        ("[features]\nx = 3\n", "'x'"),
        ("[categorical]\nEducation = { max_levels = 0 }\n", "max_levels"),
        ("[categorical]\nEducation = { max_levels = true }\n", "max_levels"),
        ("[categorical]\nEducation = 4\n", "Education"),
        ('numeric = "Response"\n', "numeric"),
        ("exclude = [1, 2]\n", "exclude"),
        ("id = 3\n", "id"),
        ('features = "age"\n', "features"),
    ],
)
def test_malformed_spec_values(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        load_spec(write_spec(tmp_path, text))


def test_unknown_spec_name_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"customer.*did you mean 'customers'"):
        load_spec("customer")


def test_missing_spec_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.toml"):
        load_spec(tmp_path / "nope.toml")


def test_features_option_is_parsed() -> None:
    spec = spec_from_columns(" Income, Recency ,MntWines,", missing="median", scale="none", id_col="ID")
    assert spec.features == (Feature("Income", "Income"), Feature("Recency", "Recency"), Feature("MntWines", "MntWines"))
    assert spec.missing == "median" and spec.scale == "none" and spec.id_col == "ID"
    assert spec.source == "--features"
    assert not spec.auto


@pytest.mark.parametrize("columns,match", [("", "at least one"), (" , ,", "at least one"), ("a,b,a", "twice: a")])
def test_bad_features_option(columns: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        spec_from_columns(columns)


def test_features_option_rejects_a_bad_policy() -> None:
    with pytest.raises(InputError, match="missing"):
        spec_from_columns("a,b", missing="sometimes")


def resolve_spec(spec, features, **options):
    return resolve_options(FeatureOptions(spec=spec, features=features, **options), InputOptions())


def test_features_and_spec_together_are_an_error() -> None:
    with pytest.raises(InputError, match="not both"):
        resolve_spec("customers", "Income,Recency")


def test_cli_options_override_the_spec() -> None:
    spec = resolve_spec("customers", None, missing="median", scale="robust", id_col=None)
    assert spec.missing == "median" and spec.scale == "robust"
    assert spec.id_col == "ID"  # None means "keep the spec's value"
    assert resolve_spec(None, None).auto


def expression_columns(expr: str) -> set[str]:
    import polars as pl

    return set(pl.sql_expr(expr).meta.root_names())


@pytest.mark.parametrize("name", ["customers", "marketing"])
def test_no_builtin_spec_feeds_the_business_response_into_a_feature(name: str) -> None:
    """Segments built on the response would make the per-segment response lift partly circular."""
    from engine.features.spec import BUILTIN_SPECS

    assert set(BUILTIN_SPECS) == {"customers", "marketing"}  # a new built-in spec gets a case here
    spec = load_spec(name)
    assert spec.business.response is not None
    response = expression_columns(spec.business.response)
    for f in spec.features:
        assert not expression_columns(f.expr) & response, f"{name}: feature {f.name!r} reads the response"
    assert not {c.column for c in spec.categorical} & response


USER_SPEC_WITH_RESPONSE = """
id = "ID"
numeric = ["Response"]

[features]
income = { expr = "Income", clip = [0.0, 0.99] }
recency = "Recency"
engaged = "AcceptedCmp1 + AcceptedCmp2 + Response"

[business]
response = "Response"
"""


def test_a_user_spec_that_feeds_the_response_into_a_feature_gets_a_warning_naming_it(
        tmp_path: Path, data_csv: Path) -> None:
    import engine

    spec = write_spec(tmp_path, USER_SPEC_WITH_RESPONSE)
    logged: list[str] = []
    engine.run([str(data_csv)], 3, tmp_path / "run", spec=str(spec), log=logged.append)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    leaks = [w for w in metrics["warnings"] if "'engaged'" in w]
    assert len(leaks) == 1, metrics["warnings"]
    assert "business response" in leaks[0] and "'Response'" in leaks[0]
    assert "'income'" not in leaks[0] and "'recency'" not in leaks[0]
    assert f"warning: {leaks[0]}" in logged  # and on stderr, where the CLI prints the log


def test_a_spec_without_the_response_in_its_features_gets_no_such_warning(tmp_path: Path, data_csv: Path) -> None:
    import engine

    spec = write_spec(tmp_path, USER_SPEC_WITH_RESPONSE.replace(" + Response", ""))
    engine.run([str(data_csv)], 3, tmp_path / "run", spec=str(spec))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert not [w for w in metrics["warnings"] if "'engaged'" in w], metrics["warnings"]
