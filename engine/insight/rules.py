"""``segment explain``: each segment as rules a CRM can filter on.

A shallow scikit-learn decision tree is fitted on a uniform sample of the run's segmented
customers (``--sample``), predicting their segment from the input columns the spec uses, in their
own units: every derived feature (``spending``, ``tenure_days``), every numeric input column a
feature reads (``MntWines``, ``Kidhome``), and each one-hot level of a categorical column as the
category it names (``Education = 'PhD'``). Its leaves are read off as rules:

* a subtree whose leaves all predict one segment becomes one leaf;
* each split's threshold is rounded to 2 significant figures where that still splits the
  sample where the tree did (between the two neighbouring sample values), else to 3;
* along a leaf's path, the conditions on one column merge into at most a lower and an upper bound;
* a segment's rule is the disjunction of its leaves' conjunctions.

The published (rounded) rules are then measured on every row of the input, in one lazy Polars
pass: each row's leaf (none when a value it tests is missing) against the run's segment, grouped.
That gives every leaf's support (its share of the segmented customers) and purity (the share of
its customers in the segment it predicts), and every segment's fidelity (the share of its
customers the rules put back in it) and precision; the overall fidelity is the share of all
segmented customers whose segment the rules reproduce.

``rules.json`` and ``rules.sql`` (``engine.duck.rules``) are written into the run directory, each
through a temporary file and a rename, so the run directory is complete at every moment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine import present
from engine.duck.open import reopen_source
from engine.duck.rules import rules_sql
from engine.errors import InputError, first_line
from engine.features.build import ROW_ID, cleaned_frame, is_numeric, parse_expr
from engine.features.spec import Feature, FeatureSpec
from engine.fit.model import load_model
from engine.input.files import Input
from engine.options import MAX_RULES_DEPTH, ExplainOptions
from engine.outputs import rundir
from engine.outputs.write import atomic_file, write_json

FORMAT_VERSION = "1"
LEAF = "@leaf"
SEGMENT = "@segment"
SAME_ID = "@same_id"


@dataclass(frozen=True)
class Variables:
    """What the tree may split on: ``entries`` as saved in rules.json (name, kind, expression or
    column, level), ``columns`` the input columns they read with the type the engine read them as
    (number, text, text number), and ``exprs`` their float64 values (null where missing)."""

    entries: list[dict[str, Any]]
    columns: dict[str, str]
    exprs: list[pl.Expr]
    frame: pl.LazyFrame  # the input, text numbers parsed and numeric columns widened


def column_kind(name: str, schema: pl.Schema, numeric: set[str]) -> str:
    if name in numeric and not is_numeric(schema[name]):
        return "text number"
    return "number" if is_numeric(schema[name]) else "text"


def finite(expr: pl.Expr, name: str) -> pl.Expr:
    return pl.when(expr.is_finite()).then(expr).alias(name)


def variables_of(inp: Input, spec: FeatureSpec, levels: dict[str, tuple[str, ...]]) -> Variables:
    """The derived features, the numeric input columns they read (once each, and not when a feature
    is that column alone) and the one-hot levels, in spec order."""
    schema, where, numeric = inp.schema(), inp.label, set(spec.numeric)
    feature_exprs = [parse_expr(f, schema, numeric, where) for f in spec.features]
    entries, exprs, columns = [], [], {}
    raw: list[str] = []
    for f, expr in zip(spec.features, feature_exprs):
        roots = list(dict.fromkeys(expr.meta.root_names()))
        columns.update({c: column_kind(c, schema, numeric) for c in roots})
        entries.append({"name": f.name, "kind": "expression", "expr": f.expr, "columns": roots})
        exprs.append(finite(expr, f.name))
        bare = len(roots) == 1 and f.expr.strip().strip('"') == roots[0]
        raw += [c for c in roots if not bare and columns[c] != "text" and c not in raw]
    bare_columns = {e["columns"][0] for e in entries if e["expr"].strip().strip('"') in e["columns"]}
    names = {e["name"] for e in entries}
    for c in raw:
        if c in names or c in bare_columns:
            continue  # a feature already is this column, or has its name
        entries.append({"name": c, "kind": "column", "column": c})
        exprs.append(finite(parse_expr(Feature(c, f'"{c}"' if not c.isidentifier() else c), schema, numeric, where), c))
    for column, lvls in levels.items():
        columns[column] = "text"
        for lvl in lvls:
            name = f"{column}={lvl}"
            entries.append({"name": name, "kind": "level", "column": column, "level": lvl})
            exprs.append((pl.col(column).cast(pl.String) == lvl).fill_null(False).cast(pl.Float64).alias(name))
    frame = cleaned_frame(inp.frame, schema, numeric, feature_exprs)
    return Variables(entries, columns, exprs, frame)


def run_labels(run: Path) -> tuple[pl.Series, np.ndarray]:
    """The run's ids and segments (-1 where the row was dropped), in input order."""
    frame = rundir.read_parquet(run / rundir.SEGMENTS)
    segment = frame["segment"]
    return frame[frame.columns[0]], segment.fill_null(-1).to_numpy().astype(np.int64)


def training_sample(variables: Variables, labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A uniform sample of the segmented rows (at most ``size``), read lazily: values and segments
    (rows with a missing value dropped)."""
    segmented = np.flatnonzero(labels >= 0)
    rng = np.random.default_rng([seed, 13])
    rows = segmented if segmented.size <= size else np.sort(rng.choice(segmented, size=size, replace=False))
    chosen = np.zeros(labels.size, dtype=bool)
    chosen[rows] = True
    try:
        values = variables.frame.filter(pl.Series(chosen)).select(variables.exprs).collect().to_numpy()
    except pl.exceptions.ShapeError:
        raise InputError(f"the run's input has changed: it no longer has the {labels.size:,} rows the run "
                         "segmented") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read the run's input again: {first_line(exc)}") from exc
    values = values.astype(np.float64)
    complete = ~np.isnan(values).any(axis=1)
    if not complete.any():
        raise InputError("no sampled customer has every column the rules may use")
    return values[complete], labels[rows][complete]


def fit_tree(X: np.ndarray, y: np.ndarray, depth: int, min_share: float, seed: int):
    """A shallow decision tree (scikit-learn) predicting the segment."""
    from sklearn.tree import DecisionTreeClassifier  # scikit-learn: off the CLI's start-up path

    min_leaf = max(1, math.ceil(min_share * X.shape[0]))
    return DecisionTreeClassifier(max_depth=depth, min_samples_leaf=min_leaf, random_state=seed).fit(X, y)


def rounded(threshold: float, below: float, above: float) -> float:
    """The split at 2 significant figures if that keeps every sample value on its side
    (``below <= r < above``), else at 3."""
    for digits in (2, 3):
        value = float(f"{threshold:.{digits}g}")
        if below <= value < above:
            return value
    return float(f"{threshold:.3g}")


def split_values(tree, X: np.ndarray) -> dict[int, float]:
    """The rounded threshold of every split node."""
    t = tree.tree_
    out = {}
    for node in np.flatnonzero(t.children_left >= 0):
        column, thr = X[:, t.feature[node]], float(t.threshold[node])
        lower, upper = column[column <= thr], column[column > thr]
        out[int(node)] = rounded(thr, float(lower.max()) if lower.size else -math.inf,
                                 float(upper.min()) if upper.size else math.inf)
    return out


def tree_paths(tree, splits: dict[int, float], node: int = 0, path: tuple = ()) -> list[tuple[tuple, int]]:
    """(path, segment) of each leaf; a subtree whose leaves all predict one segment is one leaf.
    A path is a tuple of (variable index, "<=" or ">", threshold)."""
    t = tree.tree_
    if t.children_left[node] < 0:
        return [(path, int(tree.classes_[int(np.argmax(t.value[node][0]))]))]
    var, thr = int(t.feature[node]), splits[node]
    found = (tree_paths(tree, splits, int(t.children_left[node]), path + ((var, "<=", thr),))
             + tree_paths(tree, splits, int(t.children_right[node]), path + ((var, ">", thr),)))
    segments = {s for _, s in found}
    return [(path, segments.pop())] if len(segments) == 1 else found


def conditions(path: tuple, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A path as its simplest conditions: per numeric variable at most a lower and an upper bound;
    per categorical column its level, or the levels it is not."""
    lower: dict[int, float] = {}
    upper: dict[int, float] = {}
    for var, op, thr in path:
        bounds, pick = (upper, min) if op == "<=" else (lower, max)
        bounds[var] = pick(bounds.get(var, thr), thr)
    out, equal = [], set()
    for var in sorted(set(lower) | set(upper)):
        entry = entries[var]
        if entry["kind"] == "level":
            if var in lower:  # indicator > 0.5: this level
                out.append({"variable": entry["name"], "op": "=", "value": entry["level"]})
                equal.add(entry["column"])
            continue
        if var in lower:
            out.append({"variable": entry["name"], "op": ">", "value": lower[var]})
        if var in upper:
            out.append({"variable": entry["name"], "op": "<=", "value": upper[var]})
    for var in sorted(v for v in upper if entries[v]["kind"] == "level" and v not in lower):
        if entries[var]["column"] not in equal:  # "not PhD" says nothing once "= Master" holds
            out.append({"variable": entries[var]["name"], "op": "!=", "value": entries[var]["level"]})
    return out


def condition_text(c: dict[str, Any], entries: dict[str, dict[str, Any]]) -> str:
    entry = entries[c["variable"]]
    if c["op"] in ("=", "!="):
        return f"{entry['column']} {'=' if c['op'] == '=' else 'is not'} {c['value']}"
    return f"{c['variable']} {c['op']} {present.threshold(float(c['value']))}"


def leaf_text(conds: list[dict[str, Any]], entries: dict[str, dict[str, Any]]) -> str:
    return " and ".join(condition_text(c, entries) for c in conds) or "every customer"


def leaf_expr(leaves: list[dict[str, Any]], entries: dict[str, dict[str, Any]]) -> pl.Expr:
    """Each row's leaf number (null when none matches: a tested value is missing)."""
    chosen: pl.Expr = pl.lit(None, pl.Int32)
    for leaf in reversed(leaves):
        test: pl.Expr = pl.lit(True)
        for c in leaf["conditions"]:
            col = pl.col(c["variable"])
            if c["op"] == "=":
                test = test & (col == 1.0)
            elif c["op"] == "!=":
                test = test & (col == 0.0)
            else:
                test = test & (col <= c["value"] if c["op"] == "<=" else col > c["value"])
        chosen = pl.when(test).then(pl.lit(leaf["leaf"], pl.Int32)).otherwise(chosen)
    return chosen.alias(LEAF)


def measure(variables: Variables, leaves: list[dict[str, Any]], ids: pl.Series, labels: np.ndarray,
            id_col: str | None) -> pl.DataFrame:
    """One pass over every input row: customers per (leaf, segment), and whether the input's ids
    are still the run's, row by row."""
    entries = {e["name"]: e for e in variables.entries}
    used = {c["variable"] for leaf in leaves for c in leaf["conditions"]}
    exprs = [e for e in variables.exprs if e.meta.output_name() in used]
    segment = pl.Series(SEGMENT, np.where(labels >= 0, labels, -1), dtype=pl.Int64)
    same = (pl.col(id_col) == ids) if id_col else pl.lit(True)
    query = (variables.frame.select([*exprs, same.alias(SAME_ID)]).with_columns(leaf_expr(leaves, entries), segment)
             .group_by([LEAF, SEGMENT]).agg(pl.len().alias("customers"), pl.col(SAME_ID).all()))
    try:
        counts = query.collect()
    except pl.exceptions.ShapeError:
        raise InputError(f"the run's input has changed: it no longer has the {labels.size:,} rows the run "
                         "segmented") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot read the run's input again: {first_line(exc)}") from exc
    if not counts[SAME_ID].all():
        raise InputError(f"the run's input has changed: its {id_col!r} values are not the run's, row by row")
    return counts.filter(pl.col(SEGMENT) >= 0).drop(SAME_ID)


def leaf_table(tree, X: np.ndarray, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The leaves as rules, in segment order (then as the tree has them), numbered from 0."""
    splits = split_values(tree, X)
    by_name = {e["name"]: e for e in entries}
    paths = sorted(tree_paths(tree, splits), key=lambda p: p[1])
    leaves = []
    for i, (path, segment) in enumerate(paths):
        conds = conditions(path, entries)
        leaves.append({"leaf": i, "segment": segment, "conditions": conds, "rule": leaf_text(conds, by_name)})
    return leaves


def score(leaves: list[dict[str, Any]], counts: pl.DataFrame, k: int) -> tuple[list[dict], dict[str, Any]]:
    """Support and purity per leaf, fidelity and precision per segment, and overall."""
    cells = {(r[LEAF], r[SEGMENT]): r["customers"] for r in counts.iter_rows(named=True)}
    rows = sum(cells.values())
    per_segment = [sum(n for (_, s), n in cells.items() if s == j) for j in range(k)]
    for leaf in leaves:
        inside = sum(n for (lf, _), n in cells.items() if lf == leaf["leaf"])
        right = cells.get((leaf["leaf"], leaf["segment"]), 0)
        leaf.update(customers=inside, support=inside / rows if rows else 0.0,
                    purity=right / inside if inside else None)
    segments = []
    for j in range(k):
        mine = [leaf for leaf in leaves if leaf["segment"] == j]
        reproduced = sum(cells.get((leaf["leaf"], j), 0) for leaf in mine)
        selected = sum(leaf["customers"] for leaf in mine)
        segments.append({"segment": j, "leaves": [leaf["leaf"] for leaf in mine], "customers": per_segment[j],
                         "selected": selected, "reproduced": reproduced,
                         "fidelity": reproduced / per_segment[j] if per_segment[j] else None,
                         "precision": reproduced / selected if selected else None,
                         "rule": " or ".join(f"({leaf['rule']})" if len(mine) > 1 else leaf["rule"] for leaf in mine)})
    reproduced = sum(s["reproduced"] for s in segments)
    unassigned = sum(n for (lf, _), n in cells.items() if lf is None)
    return segments, {"rows": rows, "reproduced": reproduced, "fidelity": reproduced / rows if rows else None,
                      "unassigned": unassigned}


def check_options(opts: ExplainOptions) -> None:
    if isinstance(opts.depth, bool) or not isinstance(opts.depth, int) or not 1 <= opts.depth <= MAX_RULES_DEPTH:
        raise InputError(f"--depth must be a whole number from 1 to {MAX_RULES_DEPTH}, not {opts.depth!r}")
    if not (isinstance(opts.min_share, (int, float)) and 0.0 <= opts.min_share < 0.5):
        raise InputError(f"--min-share must be a share from 0 up to 0.5, not {opts.min_share!r}")
    if isinstance(opts.sample, bool) or not isinstance(opts.sample, int) or opts.sample < 2:
        raise InputError(f"--sample must be 2 rows or more, not {opts.sample!r}")


def options_of(options: ExplainOptions | None, given: dict[str, Any]) -> ExplainOptions:
    known = {f.name for f in fields(ExplainOptions)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InputError(f"unknown option {unknown[0]!r}")
    base = options or ExplainOptions()
    return ExplainOptions(**{f: given.get(f) if given.get(f) is not None else getattr(base, f) for f in known})


def explain(run_dir: str | Path, options: ExplainOptions | None = None, **given: Any) -> dict[str, Any]:
    """Fit the rules of a run's segments, measure them on every row, and write ``rules.json`` and
    ``rules.sql`` into the run directory; returns what rules.json holds."""
    opts = options_of(options, given)
    check_options(opts)
    run = rundir.read_run(run_dir, need=rundir.RUN_FILES)
    model = load_model(run.path)
    seed = int(run.metrics.get("seed") or 0)
    inp = reopen_source(run.metrics.get("input"), model.spec, str(run.path))
    variables = variables_of(inp, model.spec, model.fitted.levels)
    ids, labels = run_labels(run.path)
    X, y = training_sample(variables, labels, opts.sample, seed)
    tree = fit_tree(X, y, opts.depth, opts.min_share, seed)
    leaves = leaf_table(tree, X, variables.entries)
    id_col = model.spec.id_col if model.spec.id_col not in (None, ROW_ID) else None
    counts = measure(variables, leaves, ids, labels, id_col)
    segments, overall = score(leaves, counts, model.k)
    names = run.profiles["name"].to_list() if "name" in run.profiles.columns else [str(j) for j in range(model.k)]
    for entry in segments:
        entry["name"] = names[entry["segment"]]
    rules = {"format_version": FORMAT_VERSION, "depth": opts.depth, "min_share": opts.min_share,
             "sample": int(X.shape[0]), "seed": seed, "id_col": model.spec.id_col, **overall,
             "variables": variables.entries, "columns": variables.columns, "leaves": leaves, "segments": segments}
    write_rules(run.path, rules, rules_sql(rules, run.metrics.get("input") or {}, names))
    return rules


def write_rules(run: Path, rules: dict[str, Any], sql: str) -> None:
    """rules.sql, then rules.json, each into place in one rename (the run directory stays whole)."""
    with atomic_file(run / rundir.RULES_SQL, overwrite=True) as tmp:
        tmp.write_text(sql, encoding="utf-8")
    with atomic_file(run / rundir.RULES_JSON, overwrite=True) as tmp:
        write_json(tmp, rules)


def rule_segments(run_dir: str | Path) -> pl.DataFrame:
    """The id and the rules' segment of every input row of a run with rules.json (null where no
    rule matches): the engine's own evaluation of the published rules."""
    run = rundir.read_run(run_dir, need=(*rundir.RUN_FILES, rundir.RULES_JSON))
    model = load_model(run.path)
    inp = reopen_source(run.metrics.get("input"), model.spec, str(run.path))
    variables = variables_of(inp, model.spec, model.fitted.levels)
    entries = {e["name"]: e for e in variables.entries}
    ids, _ = run_labels(run.path)
    frame = variables.frame.select(variables.exprs).with_columns(leaf_expr(run.rules["leaves"], entries)).collect()
    segment_of = {leaf["leaf"]: leaf["segment"] for leaf in run.rules["leaves"]}
    return pl.DataFrame([ids, frame[LEAF].replace_strict(segment_of, default=None, return_dtype=pl.Int32)
                         .alias("segment")])
