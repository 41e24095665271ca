"""Feature specs: which columns become features and how they are cleaned, declared in TOML.

```toml
id = "ID"                       # id column (optional)
missing = "drop"                # drop | median | error
scale = "standard"              # standard | robust | none
numeric = ["Response"]          # text columns to read as numbers (stray spaces are stripped)

[features]                      # name = expression, or name = { expr, clip, log1p }
age = "2014 - Year_Birth"
income = { expr = "Income", clip = [0.0, 0.99] }
spending = { expr = "MntWines + MntFruits", log1p = true }

[categorical]                   # one-hot, keeping the most frequent levels
Education = { max_levels = 4 }

[pca]                           # optional: k-means on principal components of the scaled features
variance = 0.9                  # the fewest components that keep 90% of the variance (or components = 4)

[source]                        # optional: features come from a DuckDB query over the inputs
sql = "SELECT customer_id, count(*) AS orders FROM input GROUP BY 1"
# or: preset = "rfm", customer = "customer_id", date = "ts", amount = "Quantity * UnitPrice", order = "order_id",
#     product = "StockCode", response_window = 30     (each column: a name or an SQL expression)
```
Expressions are SQL (Polars' SQL dialect): arithmetic, CASE WHEN, GREATEST, LN, COALESCE, ...
A ``[source]`` query runs in DuckDB with the inputs as the view ``input`` and no other file
readable (see engine/duck/source.py).
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.features.business import Business, parse_business
from engine.errors import InputError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MISSING_POLICIES = ("drop", "median", "error")
SCALERS = ("standard", "robust", "none")
TOP_KEYS = ("id", "missing", "scale", "numeric", "exclude", "features", "categorical", "source", "business", "pca")
PCA_KEYS = ("components", "variance")
SOURCE_KEYS = ("sql", "preset", "customer", "date", "amount", "order", "product", "response_window")
PRESETS = ("rfm",)
PRESET_COLUMNS = ("customer", "date", "amount", "order", "product")  # order and product are optional
FEATURE_KEYS = ("expr", "clip", "log1p")
CATEGORICAL_KEYS = ("max_levels",)
DEFAULT_MAX_LEVELS = 8
BUILTIN_SPECS = ("customers", "marketing")
SPEC_DIR = Path(__file__).parent / "specs"


@dataclass(frozen=True)
class Feature:
    """One numeric feature: an expression over input columns, then optional clip and log1p."""

    name: str
    expr: str
    clip: tuple[float, float] | None = None  # lower and upper quantile
    log1p: bool = False


@dataclass(frozen=True)
class Categorical:
    """A text column one-hot encoded into its ``max_levels`` most frequent levels."""

    column: str
    max_levels: int = DEFAULT_MAX_LEVELS


@dataclass(frozen=True)
class PCASetting:
    """PCA before k-means: ``components`` principal components, or the fewest that keep a share
    ``variance`` of the scaled features' variance. ``where`` names the origin in error messages."""

    components: int | None = None
    variance: float | None = None
    where: str = field(default="--pca", compare=False)

    @property
    def text(self) -> str:
        """As ``--pca`` takes it: ``4`` or ``0.9``."""
        return str(self.components) if self.components is not None else f"{self.variance:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"components": self.components} if self.components is not None else {"variance": self.variance}


def parse_pca_option(value: Any, where: str = "--pca") -> PCASetting:
    """``--pca N`` (a whole number of components, 1 or more) or ``--pca 0.9`` (a share of variance
    strictly between 0 and 1); anything else is a one-line error naming the value."""
    problem = (f"{where} must be a whole number of components (1 or more) or a share of variance between 0 and 1 "
               f"(such as 0.9), not {value!r}")
    if isinstance(value, bool):
        raise InputError(problem)
    if isinstance(value, int):
        number: float = value
    else:
        text = str(value).strip()
        try:
            number = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
        except ValueError:
            raise InputError(problem) from None
    if isinstance(number, int):
        if number < 1:
            raise InputError(problem)
        return PCASetting(components=number, where=where)
    if not (math.isfinite(number) and 0.0 < number < 1.0):
        raise InputError(problem)
    return PCASetting(variance=float(number), where=where)


def parse_pca_table(table: Any, where: str) -> PCASetting:
    """A spec's ``[pca]``: ``components = N`` or ``variance = 0.9``, exactly one of them."""
    if not isinstance(table, dict):
        raise InputError(f"{where}: [pca] must be a table such as {{ variance = 0.9 }}")
    check_keys(f"{where}: [pca]", table, PCA_KEYS)
    if len(table) != 1:
        raise InputError(f"{where}: [pca] takes components = N or variance = 0.9 (one of them)")
    key, value = next(iter(table.items()))
    if key == "components" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise InputError(f"{where}: [pca] components must be a whole number (1 or more), not {value!r}")
    if key == "variance" and (not isinstance(value, float) or not 0.0 < value < 1.0):
        raise InputError(f"{where}: [pca] variance must be a share between 0 and 1 (such as 0.9), not {value!r}")
    return parse_pca_option(value, f"{where}: [pca] {key}")


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that turns input columns into the feature matrix (before fitting statistics)."""

    features: tuple[Feature, ...] = ()
    categorical: tuple[Categorical, ...] = ()
    numeric: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    id_col: str | None = None
    missing: str = "drop"
    scale: str = "standard"
    source: str = "auto"  # where it came from: a file, a built-in name, "--features" or "auto"
    skipped: tuple[str, ...] = ()  # auto mode: non-numeric columns left out (reported, not saved)
    sql: str | None = None  # [source] sql: a DuckDB query over the inputs (view ``input``)
    preset: dict[str, str] | None = None  # [source] preset: {"preset": "rfm", "customer": ..., ...}
    business: Business = Business()  # [business]: profiles, names, actions, impact (not saved in the model)
    pca: PCASetting | None = None  # [pca] or --pca: k-means on principal components (saved only when set)
    flagged: tuple[str, ...] = ()  # preset keys given by a flag over a spec's [source] (for errors; not saved)

    @property
    def auto(self) -> bool:
        """True when no features were declared: every numeric column except the id is used."""
        return not self.features and not self.categorical

    def with_options(self, **options: Any) -> FeatureSpec:
        """A copy with the CLI options that were given (``None`` means keep the spec's value)."""
        given = {k: v for k, v in options.items() if v is not None}
        if "missing" in given:
            check_choice("missing", given["missing"], MISSING_POLICIES)
        if "scale" in given:
            check_choice("scale", given["scale"], SCALERS)
        return replace(self, **given)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("skipped")
        data.pop("business")
        data.pop("flagged")
        data.pop("pca")
        if self.pca is not None:  # only when set: a spec without PCA saves what it always saved
            data["pca"] = self.pca.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> FeatureSpec:
        """The spec saved in a model file, checked as strictly as a TOML spec."""
        if not isinstance(data, dict):
            raise InputError("model feature spec must be an object")
        try:
            features = tuple(
                Feature(str_field(f, "name"), str_field(f, "expr"), clip_field(f.get("clip")), bool_field(f, "log1p"))
                for f in list_field(data, "features")
            )
            categorical = tuple(
                Categorical(str_field(c, "column"), int_field(c, "max_levels")) for c in list_field(data, "categorical")
            )
            names = {key: tuple(str_field({"v": v}, "v") for v in list_field(data, key)) for key in ("numeric", "exclude")}
        except (AttributeError, TypeError) as exc:
            raise InputError(f"model feature spec is malformed: {exc}") from exc
        id_col = data.get("id_col")
        if id_col is not None and not isinstance(id_col, str):
            raise InputError("model feature spec: id_col must be a column name or null")
        missing, scale = data.get("missing", "drop"), data.get("scale", "standard")
        check_choice("model feature spec: missing", missing, MISSING_POLICIES)
        check_choice("model feature spec: scale", scale, SCALERS)
        source = data.get("source", "model")
        sql = data.get("sql")
        if sql is not None and not isinstance(sql, str):
            raise InputError("model feature spec: sql must be a string or null")
        preset = data.get("preset")
        if preset is not None:
            preset = parse_source({"sql": None, **preset}, "model feature spec")[1] if isinstance(preset, dict) else None
            if preset is None:
                raise InputError("model feature spec: preset must be an object")
        pca = parse_pca_table(data["pca"], "model feature spec") if data.get("pca") is not None else None
        return cls(features, categorical, names["numeric"], names["exclude"], id_col, missing, scale,
                   source if isinstance(source, str) else "model", sql=sql, preset=preset, pca=pca)


def list_field(data: dict, key: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise TypeError(f"{key} must be a list")
    return value


def str_field(data: dict, key: str) -> str:
    value = data[key] if isinstance(data, dict) and key in data else None
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def bool_field(data: dict, key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false")
    return value


def int_field(data: dict, key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError(f"{key} must be a positive integer")
    return value


def clip_field(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(q, (int, float)) and not isinstance(q, bool) for q in value)
            or not 0.0 <= value[0] < value[1] <= 1.0):
        raise TypeError("clip must be two quantiles 0 <= low < high <= 1")
    return float(value[0]), float(value[1])


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{key} must be one of {', '.join(choices)}, not {value!r}")


def check_keys(where: str, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            raise InputError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}")


def parse_feature(name: str, value: Any, where: str) -> Feature:
    if isinstance(value, str):
        return Feature(name, value)
    if value is True:
        return Feature(name, name)
    if not isinstance(value, dict):
        raise InputError(f"{where}: feature {name!r} must be an expression string or a table")
    check_keys(f"{where}: feature {name!r}", value, FEATURE_KEYS)
    expr = value.get("expr", name)
    if not isinstance(expr, str) or not expr.strip():
        raise InputError(f"{where}: feature {name!r}: expr must be a non-empty string")
    clip = value.get("clip")
    if clip is not None:
        if (
            not isinstance(clip, list)
            or len(clip) != 2
            or not all(isinstance(q, (int, float)) and not isinstance(q, bool) for q in clip)
            or not 0.0 <= clip[0] < clip[1] <= 1.0
        ):
            raise InputError(f"{where}: feature {name!r}: clip must be two quantiles 0 <= low < high <= 1, not {clip!r}")
        clip = (float(clip[0]), float(clip[1]))
    log1p = value.get("log1p", False)
    if not isinstance(log1p, bool):
        raise InputError(f"{where}: feature {name!r}: log1p must be true or false")
    return Feature(name, expr, clip, log1p)


def parse_categorical(column: str, value: Any, where: str) -> Categorical:
    if value is True or value == {}:
        return Categorical(column)
    if not isinstance(value, dict):
        raise InputError(f"{where}: categorical {column!r} must be a table such as {{ max_levels = 5 }}")
    check_keys(f"{where}: categorical {column!r}", value, CATEGORICAL_KEYS)
    levels = value.get("max_levels", DEFAULT_MAX_LEVELS)
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
        raise InputError(f"{where}: categorical {column!r}: max_levels must be a positive integer, not {levels!r}")
    return Categorical(column, levels)


def string_list(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: {key} must be a list of column names")
    return tuple(value)


def parse_source(table: Any, where: str) -> tuple[str | None, dict[str, str] | None]:
    """A ``[source]`` table: ``sql = "..."``, or ``preset = "rfm"`` with its column names."""
    if not isinstance(table, dict):
        raise InputError(f"{where}: [source] must be a table")
    check_keys(f"{where}: [source]", table, SOURCE_KEYS)
    table = {k: v for k, v in table.items() if v is not None}
    for key, value in table.items():
        if key == "response_window":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{where}: [source] response_window must be a whole number of days, 1 or more, "
                                 f"not {value!r}")
        elif not isinstance(value, str) or not value.strip():
            raise InputError(f"{where}: [source] {key} must be a non-empty string")
    sql, preset = table.get("sql"), table.get("preset")
    columns = {k: table[k] for k in (*PRESET_COLUMNS, "response_window") if k in table}
    if sql is not None and (preset is not None or columns):
        raise InputError(f"{where}: [source] takes sql, or preset with its columns, not both")
    if sql is not None:
        return sql, None
    if preset is None:
        raise InputError(f"{where}: [source] needs sql = \"SELECT ...\" or preset = \"rfm\"")
    check_choice(f"{where}: [source] preset", preset, PRESETS)
    for key in ("customer", "date", "amount"):
        if key not in columns:
            raise InputError(f"{where}: [source] preset {preset!r} needs {key} = \"COLUMN\"")
    return None, {"preset": preset, **columns}


def spec_from_toml(data: dict[str, Any], where: str) -> FeatureSpec:
    """Validate a parsed TOML document and build the spec."""
    check_keys(where, data, TOP_KEYS)
    features_table = data.get("features", {})
    categorical_table = data.get("categorical", {})
    if not isinstance(features_table, dict) or not isinstance(categorical_table, dict):
        raise InputError(f"{where}: [features] and [categorical] must be tables")
    missing = data.get("missing", "drop")
    scale = data.get("scale", "standard")
    check_choice(f"{where}: missing", missing, MISSING_POLICIES)
    check_choice(f"{where}: scale", scale, SCALERS)
    id_col = data.get("id")
    if id_col is not None and not isinstance(id_col, str):
        raise InputError(f"{where}: id must be a column name")
    features = tuple(parse_feature(n, v, where) for n, v in features_table.items())
    categorical = tuple(parse_categorical(c, v, where) for c, v in categorical_table.items())
    sql, preset = parse_source(data["source"], where) if "source" in data else (None, None)
    return FeatureSpec(
        sql=sql,
        preset=preset,
        features=features,
        categorical=categorical,
        numeric=string_list(where, "numeric", data.get("numeric", [])),
        exclude=string_list(where, "exclude", data.get("exclude", [])),
        id_col=id_col,
        missing=missing,
        scale=scale,
        source=where,
        business=parse_business(data.get("business", {}), where),
        pca=parse_pca_table(data["pca"], where) if "pca" in data else None,
    )


def load_spec(path_or_name: str | Path) -> FeatureSpec:
    """Read a spec from a TOML file, or a built-in spec by name (``customers``, ``marketing``)."""
    path = Path(path_or_name)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        where = str(path)
    elif str(path_or_name) in BUILTIN_SPECS:
        text = (SPEC_DIR / f"{path_or_name}.toml").read_text(encoding="utf-8")
        where = f"built-in spec {path_or_name!r}"
    else:
        hint = did_you_mean(str(path_or_name), BUILTIN_SPECS)
        raise InputError(f"spec not found: {path_or_name}{hint} (give a TOML file or one of: {', '.join(BUILTIN_SPECS)})")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: TOML syntax error: {exc}") from exc
    return spec_from_toml(data, where)


def spec_from_columns(columns: str, **options: Any) -> FeatureSpec:
    """The spec for ``--features a,b,c``: raw columns, no transforms."""
    names = [c.strip() for c in columns.split(",") if c.strip()]
    if not names:
        raise InputError("--features needs at least one column name")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"--features names a column twice: {', '.join(dupes)}")
    features = tuple(Feature(n, n) for n in names)
    return FeatureSpec(features=features, source="--features").with_options(**options)




def reload_spec(source: str) -> FeatureSpec | None:
    """The spec a model names as its ``source`` (``built-in spec 'marketing'`` or a TOML file),
    read again; None when it was none (auto, ``--features``, a preset) or its file is gone."""
    builtin = re.fullmatch(r"built-in spec '([^']+)'", source)
    if builtin and builtin.group(1) in BUILTIN_SPECS:
        return load_spec(builtin.group(1))
    if source not in ("auto", "--features", "model") and Path(source).is_file():
        return load_spec(source)
    return None
