"""Typed run options, grouped by stage. Every default of a command lives here and only here.

Each group is a frozen dataclass. The CLI builds its options from these fields (flag, help and
choices are in each field's ``metadata``; see ``cli.bind``), ``engine.run`` / ``sweep`` /
``predict`` accept the groups (or keyword arguments, for convenience), and ``metrics.json``'s
``options`` is ``dataclasses.asdict`` of the groups, with the values the run resolved (the spec's
id column, missing policy and scaler, the sniffed separator).

A field's ``None`` means "not given": the spec's value, or the default its help names.

May import: ``engine.errors`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from engine.errors import InputError

#: Choices, shared by the spec parser and the CLI.
MISSING_POLICIES = ("drop", "median", "error")
SCALERS = ("standard", "robust", "none")
OUTPUT_FORMATS = ("table", "csv", "json")
PRESETS = ("rfm",)
COMPARE_ALGORITHMS = ("gmm", "ward", "dbscan", "hdbscan")

CLUSTER_ENV = "SEGMENT_CLUSTER"  # the environment's --cluster (segment run and predict)

#: Defaults the engine's own functions also use (the fit and the sweep take them as keyword defaults).
SILHOUETTE_SAMPLE = 20_000  # a run's silhouette sample when none is given (or all rows, if fewer)
SWEEP_SILHOUETTE_SAMPLE = 10_000  # a sweep's: the bootstrap interval shows the precision
REPEATS = 3  # bootstrap refits per k for the stability score
RUN_KS = "2..10"  # --k auto
SWEEP_KS = "2..12"  # segment sweep
COMPARE_SAMPLE = 20_000  # rows the compared algorithms are fitted on (ward is O(rows^2))
SEED = 0
RULES_DEPTH = 3  # segment explain: deep enough for a rule per segment at k <= 8, short enough to read
RULES_MIN_SHARE = 0.01  # no rule for fewer than 1% of the customers
RULES_SAMPLE = 100_000  # rows the tree is fitted on (its fidelity is measured on every row)
MAX_RULES_DEPTH = 12
MOVE_THRESHOLD = 0.5  # refresh --refit: a centre that moved more (scaled units) is flagged
TOP_MOVES = 5  # movements described in words
ALPHA = 0.05  # segment plan: significance level
POWER = 0.8  # segment plan: power to detect the lift


def option(default: Any = None, help: str = "", *, flag: str | None = None, kind: type | None = None,
           choices: Sequence[str] | None = None, is_flag: bool = False, required: bool = False,
           cli: bool = True) -> Any:
    """A dataclass field with what the CLI needs to offer it (``flag`` defaults to ``--name``)."""
    meta = {"help": help, "flag": flag, "kind": kind, "choices": tuple(choices) if choices else None,
            "is_flag": is_flag, "required": required, "cli": cli}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Preset:
    """``--preset rfm`` and its columns: features from a transaction table."""

    customer: str
    date: str
    amount: str
    order: str | None = None
    name: str = "rfm"

    @classmethod
    def from_mapping(cls, given: Mapping[str, Any] | Preset | None) -> Preset | None:
        """A ``Preset`` from ``{"customer": ..., "date": ..., "amount": ..., "order": ...}``."""
        if given is None or isinstance(given, Preset):
            return given
        if not isinstance(given, Mapping):
            raise InputError(f"preset must be a mapping of columns, not {type(given).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise InputError(f"preset: unknown key {unknown[0]!r} (the keys are {', '.join(sorted(known))})")
        name = given.get("name") or "rfm"
        if name not in PRESETS:
            raise InputError(f"--preset must be one of {', '.join(PRESETS)}, not {name!r}")
        for key in ("customer", "date", "amount"):
            if not given.get(key):
                raise InputError(f"--preset {name} needs --{key}-col")
        return cls(**{k: v for k, v in given.items() if v is not None})

    def columns(self) -> dict[str, str | None]:
        return {"customer": self.customer, "date": self.date, "amount": self.amount, "order": self.order}


@dataclass(frozen=True)
class InputOptions:
    """Where the customers come from and how they are read (run, sweep, predict)."""

    inputs: tuple[str, ...] = option((), cli=False)
    sql: str | None = option(None, "A DuckDB SELECT whose result is the input. Alone it may read any file you "
                                   "name; with INPUT files it reads them as the view `input` and nothing else.")
    as_of: str | None = option(None, "Reference date for SQL sources and --preset rfm (default: the day after "
                                     "the last transaction).")
    separator: str | None = option(None, "CSV separator (default: sniffed from the file).")
    allow_duplicate_ids: bool = option(False, "Accept an id column with repeated values.", is_flag=True)
    memory_limit: str | None = option(None, "Memory the command may use, e.g. 8GiB (default: what is free). "
                                            "segment run streams an input that would not fit.")
    stream: bool = option(False, "segment run: stream the input in blocks of 1,048,576 rows instead of holding it "
                                 "in memory (automatic when it would not fit in --memory-limit).", is_flag=True)
    cluster: str | Any | None = option(None, "segment run and predict: the full passes on a Dask cluster: local or local:N (a "
                                             "LocalCluster of N worker processes on this machine) or a scheduler "
                                             "address tcp://HOST:PORT (default: $SEGMENT_CLUSTER, else none). Needs "
                                             "pip install 'segment-engine[dask]'.")
    preset: Preset | None = option(None, cli=False)


@dataclass(frozen=True)
class TransactionOptions:
    """What a transaction table adds to the RFM preset (``--preset rfm`` or a spec's ``[source]``
    preset): products for offers, and a response for impact and campaign plans."""

    product_col: str | None = option(None, "Transactions: the product column or SQL expression (the spec's "
                                           "product); each segment's top products by lift become its offer.")
    response_window: int | None = option(None, "Transactions: response = a purchase within DAYS after --as-of "
                                               "(those transactions become the outcome, not dropped); makes "
                                               "segment impact and plan work.", kind=int)


@dataclass(frozen=True)
class FeatureOptions:
    """Which columns become features and how they are cleaned (None: the spec's)."""

    spec: str | Any | None = option(None, "Feature spec: a TOML file, or a built-in name (customers, marketing).")
    features: str | None = option(None, "Comma-separated raw columns to use as features.")
    id_col: str | None = option(None, "Id column (default: the spec's, else a column named id/customer_id, else row_id).")
    exclude: tuple[str, ...] | None = option(None, "With neither --features nor --spec: comma-separated columns to "
                                                   "leave out.", kind=tuple)
    missing: str | None = option(None, "Missing-value policy (default: drop).", choices=MISSING_POLICIES)
    scale: str | None = option(None, "Scaler (default: standard).", choices=SCALERS)
    pca: str | None = option(None, "PCA before k-means: N components, or the share of variance to keep such as 0.9 "
                                   "(default: the spec's [pca], else none).")


@dataclass(frozen=True)
class FitOptions:
    """How many segments and how they are fitted (``segment run``)."""

    k: int | str | None = option(None, "Number of segments, or auto to choose it with a sweep first.", required=True)
    k_range: str = option(RUN_KS, "With --k auto: the ks to sweep.")
    repeats: int = option(REPEATS, "With --k auto: bootstrap refits per k for the stability score.", kind=int)
    seed: int = option(SEED, "Random seed: the same seed gives the same segments on any thread count.", kind=int)
    n_init: int | None = option(None, "k-means++ restarts on the init sample (default: 10 on small data, else 8).",
                                kind=int)
    threads: int | None = option(None, "Threads to use (default: all cores).", kind=int)


@dataclass(frozen=True)
class ScoringOptions:
    """How a run's segmentation is scored."""

    silhouette_sample: int | None = option(None, f"Rows in the silhouette sample (default: {SILHOUETTE_SAMPLE:,} "
                                                 "or all rows; 0 to skip).", kind=int)


@dataclass(frozen=True)
class OutputOptions:
    """Where a run's outputs go."""

    out: str | None = option(None, "Output run directory.", required=True)
    overwrite: bool = option(False, "Replace an earlier run directory.", is_flag=True)
    db: str | None = option(None, "Also write a DuckDB database of the results.")
    partition_by_segment: bool = option(False, "Also write OUT/segments/segment=K/part-0.parquet (hive partitions).",
                                        is_flag=True)


@dataclass(frozen=True)
class BusinessOptions:
    """The campaign figures of the impact table (None: the spec's ``[business]`` figures)."""

    cost_per_contact: float | None = option(None, "Cost of contacting one customer (default: the spec's).", kind=float)
    revenue_per_response: float | None = option(None, "Revenue from one response (default: the spec's).", kind=float)


@dataclass(frozen=True)
class PlanOptions:
    """``segment plan``: the campaign test to size and assign (see ``engine.insight.campaign``)."""

    lift: float | None = option(None, "Absolute lift in response rate to detect (0.02 = 2 points).", kind=float,
                                required=True)
    alpha: float = option(ALPHA, "Significance level of the two-sided test.", kind=float)
    power: float = option(POWER, "Power to detect --lift.", kind=float)
    holdout_share: float | None = option(None, "Hold out this share of every segment (default: the smallest "
                                               "holdout that reaches the power).", kind=float)
    seed: int = option(SEED, "Random seed of the assignment.", kind=int)
    out: str | None = option(None, "Output plan file (Parquet).", required=True)
    overwrite: bool = option(False, "Replace an existing plan file.", is_flag=True)


@dataclass(frozen=True)
class MeasureOptions:
    """``segment measure``: how to read the outcomes of a planned campaign."""

    response_col: str | None = option(None, "The 0/1 outcome column.", required=True)
    id_col: str | None = option(None, "The outcomes' id column (default: the plan's).")
    separator: str | None = option(None, "CSV separator (default: sniffed from the file).")
    out: str | None = option(None, "Output Parquet file (default: measure.parquet in the plan's run directory).")
    overwrite: bool = option(False, "Replace an existing --out file.", is_flag=True)


@dataclass(frozen=True)
class SweepFitOptions:
    """The ks a sweep fits and how (``segment sweep``)."""

    ks: str = option(SWEEP_KS, "ks to fit: a range (2..12) or a list (3,5,7).", flag="--k")
    repeats: int = option(REPEATS, "Bootstrap refits per k for the stability score (0 to skip).", kind=int)
    seed: int = option(SEED, "Random seed.", kind=int)
    n_init: int | None = option(None, "k-means++ restarts per k (default: 10 on small data, else 3).", kind=int)
    threads: int | None = option(None, "Threads to use (default: all cores).", kind=int)


@dataclass(frozen=True)
class SweepScoringOptions:
    """How a sweep scores each k, and which other algorithms it compares."""

    silhouette_sample: int = option(SWEEP_SILHOUETTE_SAMPLE, "Rows in the silhouette sample (0 to skip the "
                                                             "silhouette).", kind=int)
    compare: tuple[str, ...] = option((), "Also fit other algorithms at the recommended k: any of "
                                          + ",".join(COMPARE_ALGORITHMS) + ".", kind=tuple)
    compare_sample: int = option(COMPARE_SAMPLE, "Rows the compared algorithms are fitted on (ward needs "
                                                 "O(rows^2) memory).", kind=int)


@dataclass(frozen=True)
class SweepOutputOptions:
    out: str | None = option(None, "Output directory.", required=True)
    overwrite: bool = option(False, "Replace an earlier sweep or run directory.", is_flag=True)


@dataclass(frozen=True)
class PredictOutputOptions:
    """Where ``segment predict`` writes, and on how many threads."""

    out: str | None = option(None, "Output Parquet file.", required=True)
    overwrite: bool = option(False, "Replace an existing output file.", is_flag=True)
    threads: int | None = option(None, "Threads to use (default: all cores).", kind=int)


@dataclass(frozen=True)
class ExplainOptions:
    """``segment explain``: the decision tree read off as rules."""

    depth: int = option(RULES_DEPTH, f"Depth of the decision tree (1 to {MAX_RULES_DEPTH}): deeper rules reproduce "
                                     "more customers' segments but read worse.", kind=int)
    min_share: float = option(RULES_MIN_SHARE, "Smallest share of the customers one rule may describe (0 to 0.5).",
                              kind=float)
    sample: int = option(RULES_SAMPLE, "Rows the tree is fitted on (fidelity is measured on all rows).", kind=int)


@dataclass(frozen=True)
class RefreshFitOptions:
    """``segment refresh``: how the new period is placed in the run's segments."""

    refit: bool = option(False, "Fit the segments again on the new period, warm-started from the run's centres; "
                                "new segments keep the ids of the old ones they are nearest (Hungarian matching).",
                         is_flag=True)
    move_threshold: float = option(MOVE_THRESHOLD, "With --refit: flag a segment whose centre moved further than "
                                                   "this, in the run's scaled units (standard deviations).", kind=float)
    spec: str | None = option(None, "The run's feature spec again, for its [business] columns (default: the spec the "
                                    "run's model names); a spec with other features is refused.")
    top: int = option(TOP_MOVES, "Movements between segments to describe in words.", kind=int)


@dataclass(frozen=True)
class RefreshOutputOptions:
    out: str | None = option(None, "Output run directory for the new period.", required=True)
    overwrite: bool = option(False, "Replace an earlier run directory.", is_flag=True)
    threads: int | None = option(None, "Threads to use (default: all cores).", kind=int)


@dataclass(frozen=True)
class RefreshOptions:
    input: InputOptions = field(default_factory=InputOptions)
    fit: RefreshFitOptions = field(default_factory=RefreshFitOptions)
    outputs: RefreshOutputOptions = field(default_factory=RefreshOutputOptions)
    business: BusinessOptions = field(default_factory=BusinessOptions)


@dataclass(frozen=True)
class CompareOptions:
    """``segment compare``: migration and drift between two runs."""

    out: str | None = option(None, "Also write migration.parquet, drift.parquet, compare.json and compare.html to "
                                   "this directory.")
    overwrite: bool = option(False, "Replace an earlier compare directory.", is_flag=True)
    top: int = option(TOP_MOVES, "Movements between segments to describe in words.", kind=int)


@dataclass(frozen=True)
class PredictOptions:
    input: InputOptions = field(default_factory=InputOptions)
    outputs: PredictOutputOptions = field(default_factory=PredictOutputOptions)


@dataclass(frozen=True)
class RunOptions:
    input: InputOptions = field(default_factory=InputOptions)
    transactions: TransactionOptions = field(default_factory=TransactionOptions)
    features: FeatureOptions = field(default_factory=FeatureOptions)
    fit: FitOptions = field(default_factory=FitOptions)
    scoring: ScoringOptions = field(default_factory=ScoringOptions)
    outputs: OutputOptions = field(default_factory=OutputOptions)
    business: BusinessOptions = field(default_factory=BusinessOptions)


@dataclass(frozen=True)
class SweepOptions:
    input: InputOptions = field(default_factory=InputOptions)
    transactions: TransactionOptions = field(default_factory=TransactionOptions)
    features: FeatureOptions = field(default_factory=FeatureOptions)
    fit: SweepFitOptions = field(default_factory=SweepFitOptions)
    scoring: SweepScoringOptions = field(default_factory=SweepScoringOptions)
    outputs: SweepOutputOptions = field(default_factory=SweepOutputOptions)


def group_fields(options_type: type) -> dict[str, type]:
    """``{group name: group class}`` of a ``RunOptions``-like class."""
    return {f.name: f.default_factory for f in fields(options_type)}  # type: ignore[misc]


def from_flat(options_type: type, given: Mapping[str, Any]) -> Any:
    """Options from flat keyword arguments (``k=5, seed=1, out="run"``): each goes to the group that
    has a field of its name; an unknown name is an error (a typo must not be ignored)."""
    groups: dict[str, dict[str, Any]] = {name: {} for name in group_fields(options_type)}
    owner = {f.name: name for name, cls in group_fields(options_type).items() for f in fields(cls)}
    for key, value in given.items():
        if key not in owner:
            raise InputError(f"unknown option {key!r}")
        if value is not None:  # None: not given, the field's default
            groups[owner[key]][key] = normalise(key, value)
    return options_type(**{name: cls(**groups[name]) for name, cls in group_fields(options_type).items()})


def normalise(key: str, value: Any) -> Any:
    """Sequences as tuples (hashable, frozen; ``"a, b"`` is split at commas), a preset mapping as a
    ``Preset``."""
    if key == "preset":
        return Preset.from_mapping(value)
    if key == "inputs":
        return (str(value),) if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) else \
            tuple(str(v) for v in value)
    if key in ("exclude", "compare") and value is not None:
        parts = value.split(",") if isinstance(value, str) else value
        return tuple(str(v).strip() for v in parts if str(v).strip())
    return value


def flatten(options: Any) -> dict[str, Any]:
    """The fields of every group of ``options`` as one flat mapping (``from_flat``'s inverse)."""
    return {f.name: getattr(getattr(options, group), f.name)
            for group, cls in group_fields(type(options)).items() for f in fields(cls)}
