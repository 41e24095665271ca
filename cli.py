"""`segment`: the command-line interface. Thin by design: parse options, call `engine`, print.

Progress and warnings go to stderr; data and --json go to stdout. Exit codes: 0 success,
2 bad usage or bad input (one line `Error: ...`), 1 unexpected internal failure.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import gc
import json
import os
import sys
import traceback

# numpy asks the kernel for transparent huge pages for every large array. Where the kernel compacts
# memory to find them (THP defrag "madvise", Linux's default) and memory is fragmented, as a page
# cache full of input files leaves it, each first touch of a new array waits: filling a new
# 1.25 GiB array took 2.7 to 3.2 s in 4 of 6 new processes here, against 0.54 to 0.91 s with 4 KiB
# pages (and 0.20 s with huge pages when free ones were at hand). A run allocates some 2 GiB per
# 10M rows, so the CLI's process uses plain pages unless NUMPY_MADVISE_HUGEPAGE says otherwise.
# Set before numpy is imported (it reads this once); the engine as a library leaves it to the caller.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import click

from engine.options import (PRESETS, BusinessOptions, CompareOptions, ExplainOptions, FeatureOptions, FitOptions,
                            InputOptions, MeasureOptions, OUTPUT_FORMATS, OutputOptions, PlanOptions,
                            PredictOutputOptions, RefreshFitOptions, RefreshOutputOptions, RunOptions,
                            ScoringOptions, SweepFitOptions, SweepOptions, SweepOutputOptions,
                            SweepScoringOptions, TransactionOptions)
from engine.progress import SILENT, for_terminal


# At exit the interpreter's collector walks every object numba, Polars and the engine made: 0.2 to
# 0.3 s after a small run. Frozen objects are left to the operating system instead; every output
# is written and closed by then (the engine writes through context managers).
atexit.register(gc.freeze)


@contextlib.contextmanager
def loading():
    """Import the engine for a command (the engine loads when a command runs, never for --help) with
    the collector paused, then freeze what the imports made: numba, Polars and the engine create
    some 150,000 long-lived objects, and the collections they set off, during the imports and at
    the first full collection after them, cost a warm small run about 0.13 s (0.52 against 0.66 s
    for the imports and the first kernel load, fastest of 15 new processes each). Frozen only when something new
    was imported, so a process that runs many commands (the tests) freezes a few times at most."""
    enabled, known = gc.isenabled(), len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) > known:
            gc.freeze()
        if enabled:
            gc.enable()


class InputProblem(click.ClickException):
    """Bad input or usage: one line, exit code 2."""

    exit_code = 2


def engine_errors(func):
    """Turn engine errors into clean CLI errors; --debug shows the traceback of internal ones."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        set_threads(kwargs.get("threads"))  # before the engine (and Polars) is imported
        from engine.errors import InputError, SegmentError  # the engine loads when a command runs, not for --help

        try:
            return func(*args, **kwargs)
        except InputError as exc:
            raise InputProblem(str(exc)) from None
        except SegmentError as exc:  # e.g. the disk filled: one line, exit 1, earlier outputs intact
            raise click.ClickException(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except MemoryError:
            raise click.ClickException("out of memory; try fewer rows or features") from None
        except Exception as exc:  # an internal failure: short message, traceback on request
            if click.get_current_context().find_root().params.get("debug"):
                traceback.print_exc()
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise click.ClickException(f"internal error: {message} (run `segment --debug ...` for the traceback)") from None

    return wrapper


def set_threads(threads: int | None) -> None:
    """Limit Polars too; it reads POLARS_MAX_THREADS once, at import."""
    if threads is not None and threads >= 1 and "polars" not in sys.modules:
        os.environ["POLARS_MAX_THREADS"] = str(threads)


def logger(quiet: bool):
    if quiet:
        return lambda _msg: None
    return lambda msg: click.echo(msg, err=True)


def reporters(quiet: bool):
    """The log and the progress of a long command: progress bars (``engine.progress.Bars``) only when
    stderr is a terminal and ``--quiet`` is not given; then the log lines are written around them."""
    progress = for_terminal(quiet)
    return (logger(quiet) if progress is SILENT else progress.echo), progress


def bind(group, *, skip: tuple[str, ...] = ()):
    """The click options of an ``engine.options`` group: flag, help, type, choices and default all
    come from the dataclass field, so each default lives in one place."""
    def decorate(func):
        for f in reversed(dataclasses.fields(group)):
            meta = f.metadata
            if not meta.get("cli", True) or f.name in skip:
                continue
            flag = meta.get("flag") or "--" + f.name.replace("_", "-")
            kwargs = {"help": meta.get("help"), "required": meta.get("required", False)}
            if meta.get("is_flag"):
                kwargs.update(is_flag=True, default=bool(f.default))
            elif meta.get("choices"):
                kwargs["type"] = click.Choice(meta["choices"])
            elif meta.get("kind") in (int, float):
                kwargs["type"] = meta["kind"]
            if f.default is not None and f.default != () and not meta.get("is_flag"):
                kwargs.update(default=f.default, show_default=True)
            func = click.option(flag, f.name, **kwargs)(func)
        return func
    return decorate


def preset_options(func):
    """--preset rfm and its columns, for run and sweep (``engine.options.Preset``)."""
    options = [
        click.option("--preset", type=click.Choice(PRESETS),
                     help="Features from transactions: rfm = recency, frequency, monetary, tenure, basket."),
        click.option("--customer-col", help="--preset rfm: the customer id column (each column option: a name or "
                                            "an SQL expression over the input columns)."),
        click.option("--date-col", help="--preset rfm: the date or timestamp column (text dates are parsed)."),
        click.option("--amount-col", help="--preset rfm: the amount column (negative = refund), or an expression "
                                          "such as \"Quantity * UnitPrice\"."),
        click.option("--order-col", help="--preset rfm: the order id column (default: every row is an order)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def preset_of(options: dict) -> dict:
    """The CLI's preset flags folded into the engine's ``preset`` option (None without --preset)."""
    name = options.pop("preset")
    columns = {key: options.pop(f"{key}_col") for key in ("customer", "date", "amount", "order")}
    if name is None:
        given = [f"--{k}-col" for k, v in columns.items() if v is not None]
        if given:
            raise InputProblem(f"{given[0]} needs --preset rfm")
        return options
    return {**options, "preset": {"name": name, **columns}}


def comma_list(text: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; None stays None."""
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def quiet_option(func):
    return click.option("--quiet", is_flag=True, help="No progress on stderr.")(func)


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(package_name="segment-engine", prog_name="segment")
def main(debug: bool) -> None:
    """Customer segmentation: features from Parquet or CSV, numba MiniBatch k-means on every core,
    segments and profiles back to Parquet.

    \b
    Example:
      segment generate --rows 1000000 --out customers.parquet
      segment run customers.parquet --spec customers --k 5 --out run/
      segment predict run/ new_customers.parquet --out new_segments.parquet
    """


@main.command()
@click.option("--rows", type=int, help="Number of customers (--kind customers).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output Parquet file (or .csv for "
              "--kind retail and outcome).")
@click.option("--segments", type=int, default=5, show_default=True, help="Planted ground-truth segments.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--spread", type=float, default=1.0, show_default=True,
              help="Noise within segments: 1 is realistic overlap, 0.25 well separated.")
@click.option("--kind", type=click.Choice(["customers", "transactions", "retail", "outcome"]), default="customers",
              show_default=True)
@click.option("--customers", type=int, help="--kind transactions or retail: number of customers.")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False), help="--kind outcome: the plan (segment plan).")
@click.option("--true-lift", help="--kind outcome: the planted lift, one value or one per segment (0.01,0.03).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@engine_errors
def generate(rows, out, segments, seed, spread, kind, customers, plan_file, true_lift, overwrite, as_json, quiet):
    """Write synthetic customers shaped like the marketing_campaign dataset, with planted
    segments in a `true_segment` column. Streams in chunks: 100,000,000 rows fit in bounded memory.

    With --kind transactions: orders of --customers customers in planted behaviour groups
    (`true_group`), with refunds and some null customer ids, for --preset rfm. With --kind
    retail: invoice lines in the public online-retail format (InvoiceNo, StockCode, Description,
    Quantity, InvoiceDate, UnitPrice, CustomerID, Country). With --kind outcome: a simulated
    campaign outcome for a --plan, with a known --true-lift per segment, for segment measure.

    \b
    Example:
      segment generate --rows 1000000 --segments 5 --out customers.parquet
      segment generate --kind transactions --customers 50000 --out tx.parquet
      segment generate --kind retail --customers 4000 --out tx.csv
      segment generate --kind outcome --plan plan.parquet --true-lift 0.03 --out outcomes.parquet
    """
    log = logger(quiet)
    if kind != "customers":
        if rows is not None:
            raise InputProblem(f"--kind {kind} does not take --rows" + (" (it takes --customers N)"
                                                                         if kind != "outcome" else ""))
        summary = generate_other(kind, out, customers, seed, plan_file, true_lift, overwrite, log)
        click.echo(json.dumps(summary, indent=2) if as_json else
                   f"wrote {summary['rows']:,} {GENERATED[kind]} to {out} ({summary['seconds']:.2f} s)")
        return
    if rows is None or customers is not None:
        raise InputProblem("--kind customers takes --rows N (not --customers)")
    with loading():
        from engine.synth.customers import generate_customers

    summary = generate_customers(out, rows, segments=segments, seed=seed, spread=spread, overwrite=overwrite,
                                 progress=lambda done, total: log(f"generated {done:,} / {total:,} rows"))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"wrote {summary['rows']:,} customers in {summary['segments']} segments to {out} "
                   f"({summary['seconds']:.2f} s)")


GENERATED = {"transactions": "transactions", "retail": "invoice lines", "outcome": "simulated outcomes"}


def generate_other(kind, out, customers, seed, plan_file, true_lift, overwrite, log) -> dict:
    """``segment generate --kind transactions | retail | outcome``."""
    if kind == "outcome":
        with loading():
            from engine.synth.campaign import generate_outcome

        if customers is not None:
            raise InputProblem("--kind outcome takes --plan and --true-lift (not --customers)")
        return generate_outcome(plan_file, out, true_lift, seed=seed, overwrite=overwrite)
    if customers is None:
        raise InputProblem(f"--kind {kind} takes --customers N (not --rows)")
    if plan_file is not None or true_lift is not None:
        raise InputProblem("--plan and --true-lift go with --kind outcome")
    if kind == "retail":
        with loading():
            from engine.synth.retail import generate_retail

        return generate_retail(out, customers, seed=seed, overwrite=overwrite)
    with loading():
        from engine.synth.transactions import generate_transactions

    return generate_transactions(out, customers, seed=seed, overwrite=overwrite,
                                 progress=lambda done, total: log(f"generated {done:,} / {total:,} customers"))


@main.command()
@click.argument("inputs", nargs=-1)
@bind(FitOptions)
@bind(OutputOptions)
@bind(FeatureOptions)
@bind(InputOptions)
@preset_options
@bind(TransactionOptions)
@bind(ScoringOptions)
@bind(BusinessOptions)
@json_option
@quiet_option
@engine_errors
def run(inputs, as_json, quiet, **options):
    """Segment customers into K segments. INPUT is Parquet (file, directory or glob) or CSV/TSV,
    or --sql "SELECT ..." (DuckDB); with --preset rfm, INPUT is transactions.

    Writes OUT/segments.parquet, profiles.parquet, model.json and metrics.json (and sweep.*
    with --k auto; segments/ with --partition-by-segment; a DuckDB file with --db; offers.parquet
    with [business.offers] or --product-col). Each --preset column may be an SQL expression
    over the input columns; --sql with --preset rfm is the transaction table.

    \b
    Example:
      segment run customers.parquet --spec customers --k 5 --out run/
      segment run --sql "SELECT * FROM read_parquet('c/*.parquet')" --id-col ID --k 5 --out run/
      segment run tx.parquet --preset rfm --customer-col customer_id --date-col ts --amount-col amount --k 5 --out run/
      segment run tx.csv --preset rfm --customer-col CustomerID --date-col InvoiceDate --amount-col "Quantity * UnitPrice"
          --order-col InvoiceNo --response-window 30 --as-of 2011-11-08 --k 4 --out r/
      segment run data.csv --features Income,Recency,MntWines --k 4 --out run/
      segment run customers.parquet --spec customers --k auto --k-range 2..8 --out run/
    """
    with loading():
        import engine.api
        from engine import present

    log, progress = reporters(quiet)
    result = engine.api.run(inputs, log=log, progress=progress, **preset_of(options))
    if as_json:
        click.echo(json.dumps(result.metrics, indent=2))
        return
    click.echo(present.profiles(result.profiles))
    click.echo(present.names(result.profiles))
    written = result.written + ([f"and {options['db']}"] if options["db"] else [])
    click.echo(present.run_summary(result.metrics, options["out"], written))


@main.command()
@click.argument("inputs", nargs=-1)
@bind(SweepFitOptions)
@bind(SweepOutputOptions)
@bind(FeatureOptions)
@bind(InputOptions, skip=("stream", "cluster"))
@preset_options
@bind(TransactionOptions)
@bind(SweepScoringOptions)
@json_option
@quiet_option
@engine_errors
def sweep(inputs, as_json, quiet, **options):
    """Fit k-means for every k and judge each: SSE (elbow), silhouette with a 95% interval,
    Calinski-Harabasz, Davies-Bouldin and stability; recommend a k and say why.

    Writes OUT/sweep.parquet, sweep.json (with recommended_k and the reason) and sweep.html.

    \b
    Example:
      segment sweep customers.parquet --spec customers --k 2..12 --out sweep/
      segment sweep data.csv --features Income,Recency --k 2..8 --compare gmm,ward,dbscan --out sweep/
    """
    with loading():
        import engine.api
        from engine import present

    log, progress = reporters(quiet)
    result = engine.api.sweep(inputs, log=log, progress=progress, **preset_of(options))
    if as_json:
        click.echo(json.dumps(result.summary, indent=2))
        return
    click.echo(present.table(result.outcome.table))
    click.echo(f"recommended k={result.summary['recommended_k']}: {result.summary['reason']}")
    click.echo(f"wrote {options['out'].rstrip('/')}/: {', '.join(result.written)}")


@main.command()
@click.argument("model")
@click.argument("inputs", nargs=-1)
@bind(PredictOutputOptions)
@bind(InputOptions, skip=("stream",))
@json_option
@quiet_option
@engine_errors
def predict(model, inputs, as_json, quiet, **options):
    """Assign new customers to the segments of a saved model (MODEL: model.json or a run directory).

    The same feature pipeline, scaler and assignment kernel as the run are used; a model made
    with --preset rfm or a [source] query builds its features from the new INPUT the same way.

    \b
    Example:
      segment predict run/ new_customers.parquet --out new_segments.parquet
    """
    with loading():
        import engine.api
        from engine import present

    log, progress = reporters(quiet)
    result = engine.api.predict(model, inputs, log=log, progress=progress, **options)
    click.echo(json.dumps(result, indent=2) if as_json else present.predict_summary(result, options["out"]))


@main.command()
@click.argument("run_dir", metavar="RUN_DIR")
@bind(ExplainOptions)
@json_option
@engine_errors
def explain(run_dir, as_json, **options):
    """Each segment of a run as rules a CRM can filter on: a shallow decision tree on the input
    columns the spec uses, in their own units, read off as conditions such as
    `income > 68,000 and spending > 1,100`, with the share of customers they put back in their
    segment (fidelity), measured on every row.

    Writes RUN_DIR/rules.json and rules.sql (one CASE WHEN ... THEN segment expression, one WHERE
    clause per segment, over the input's own columns); `segment report` then shows the rules.

    \b
    Example:
      segment explain run/
      segment explain run/ --depth 4 --min-share 0.02
    """
    with loading():
        from engine import present
        from engine.insight.rules import explain as explain_run

    found = explain_run(run_dir, **options)
    click.echo(json.dumps(found, indent=2) if as_json else present.rules(found))


@main.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.argument("inputs", nargs=-1)
@bind(RefreshFitOptions)
@bind(RefreshOutputOptions)
@bind(InputOptions, skip=("allow_duplicate_ids", "stream", "cluster"))
@bind(BusinessOptions)
@json_option
@quiet_option
@engine_errors
def refresh(run_dir, inputs, as_json, quiet, **options):
    """Segment a new period's customers (INPUT) against an earlier run: the same segment ids and
    names, a migration matrix (who moved where) and the drift of every segment.

    Without --refit the run's model assigns them (no new fit). With --refit the segments are fitted
    again from the run's centres, each new segment keeps the id of the old one nearest to it, and a
    centre that moved more than --move-threshold is flagged. OUT is a run directory (segments,
    profiles, model, metrics...) with migration.parquet and drift.parquet.

    \b
    Example:
      segment refresh run/ next_quarter.csv --out run_q2/
      segment refresh run/ next_quarter.csv --out run_q2/ --refit
    """
    with loading():
        import engine.api
        from engine import present
        from engine.insight.migration import matrix

    result = engine.api.refresh(run_dir, inputs, log=logger(quiet), **options)
    if as_json:
        click.echo(json.dumps(result.metrics, indent=2))
        return
    summary = result.comparison.summary
    click.echo(present.names(result.profiles))
    click.echo(present.migration(matrix(result.comparison.migration)))
    click.echo(present.movements(summary))
    click.echo(present.drift(result.comparison.drift, summary["features"]))
    click.echo(f"wrote {options['out']}/: {', '.join(result.written)}")


@main.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@bind(CompareOptions)
@json_option
@quiet_option
@engine_errors
def compare(run_a, run_b, as_json, quiet, **options):
    """Compare two runs of the same customers in two periods: the migration matrix (joined on the id
    column, with new and gone customers), the largest movements in words, and each segment's drift
    (size, share, mean shift per feature, PSI). Runs with different feature specs are compared on
    the features they share, with a warning.

    \b
    Example:
      segment compare run_q1/ run_q2/
      segment compare run_q1/ run_q2/ --out q1_vs_q2/
    """
    with loading():
        from engine import present
        from engine.insight.migration import compare as compare_runs, matrix

    result = compare_runs(run_a, run_b, log=logger(quiet), **options)
    if as_json:
        click.echo(json.dumps(result.summary, indent=2))
        return
    click.echo(present.migration(matrix(result.migration)))
    click.echo(present.movements(result.summary))
    click.echo(present.drift(result.drift, result.summary["features"]))
    if options["out"]:
        click.echo(f"wrote {options['out']}/: {', '.join(result.summary['written'])}")


@main.command("sql")
@click.argument("run_dir", metavar="DIR")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True,
              help="json: an array of row objects.")
@click.option("--threads", type=int, help="DuckDB threads (default: all cores).")
@engine_errors
def sql_command(run_dir, query, fmt, threads):
    """Query a run directory with DuckDB, read-only. Relations: segments, profiles, centroids,
    metrics (one row) and customers (the input joined with its segment, read from the input files).

    \b
    Example:
      segment sql run/ "SELECT segment, count(*) FROM segments GROUP BY 1 ORDER BY 1"
      segment sql run/ "SELECT * FROM customers WHERE segment = 3" --format csv > campaign.csv
    """
    with loading():
        from engine.duck.views import id_columns, query_run, render

    click.echo(render(query_run(run_dir, query, threads), fmt, id_columns(run_dir)))


@main.command()
@click.argument("inputs", nargs=-1)
@click.option("--columns", help="Comma-separated columns to describe (default: all).")
@bind(InputOptions, skip=("allow_duplicate_ids", "memory_limit", "stream", "cluster"))
@json_option
@engine_errors
def describe(inputs, columns, separator, sql, as_of, as_json):
    """Summarise the input: per column its type, nulls, distinct values, min, max, mean, standard
    deviation, quantiles and skew; then the correlation matrix of the numeric columns. One lazy
    Polars query: 10,000,000 rows take seconds.

    \b
    Example:
      segment describe customers.parquet
      segment describe ../shared/data/marketing_campaign.csv --columns Income,Recency --json
      segment describe --sql "SELECT * FROM read_parquet('tx/*.parquet')"
    """
    with loading():
        from engine import present
        from engine.insight.describe import describe as describe_inputs

    summary = describe_inputs(list(inputs), comma_list(columns), separator, sql, as_of)
    click.echo(json.dumps(summary, indent=2) if as_json else present.describe(summary))


@main.command()
@click.argument("run_dir", metavar="DIR")
@bind(BusinessOptions)
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the table to this Parquet file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print the table and summary as JSON on stdout.")
@engine_errors
def impact(run_dir, cost_per_contact, revenue_per_response, out, overwrite, as_json):
    """The targeting table of a run again, with other campaign figures: per segment the expected
    responses, cost, revenue, profit and ROI, in order of ROI, with cumulative gains against a
    mass campaign to everyone.

    \b
    Example:
      segment impact run/ --cost-per-contact 2 --revenue-per-response 15
    """
    with loading():
        from engine import present
        from engine.insight.impact import recompute, write_impact

    table, summary = recompute(run_dir, cost_per_contact, revenue_per_response)
    if out:
        write_impact(table, out, overwrite)
    if as_json:
        click.echo(json.dumps({**summary, "table": table.to_dicts()}, indent=2))
    else:
        click.echo(present.impact(table, summary))


@main.command()
@click.argument("run_dir", metavar="DIR")
@bind(PlanOptions)
@json_option
@engine_errors
def plan(run_dir, as_json, **options):
    """Plan a campaign test with a holdout: per segment its base response rate, the holdout needed
    to detect --lift (a two-proportion test at --alpha with --power) and whether the segment is
    large enough; then a seeded random assignment of every segmented customer to treat or
    holdout, stratified by segment, written to --out with the id column.

    \b
    Example:
      segment plan run/ --lift 0.02 --out plan.parquet
      segment plan run/ --lift 0.03 --holdout-share 0.1 --power 0.9 --seed 7 --out plan.parquet
    """
    with loading():
        from engine import present
        from engine.insight.campaign import check_test, plan_campaign

    test = check_test(options["lift"], options["alpha"], options["power"], options["holdout_share"], options["seed"])
    table, summary = plan_campaign(run_dir, options["out"], test, options["overwrite"])
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(present.plan(table, summary, options["out"]))


@main.command()
@click.argument("plan_file", metavar="PLAN")
@click.argument("outcomes", nargs=-1)
@bind(MeasureOptions)
@bind(BusinessOptions)
@json_option
@engine_errors
def measure(plan_file, outcomes, as_json, **options):
    """Measure a planned campaign: per segment the treated and holdout response rates, the lift with
    a 95% confidence interval, the p-value, the incremental revenue and ROI at the cost and revenue
    per response (the run's unless given); segments whose holdout is too small are flagged.
    Writes measure.parquet into the plan's run directory (or --out), where report and the
    dashboard find it.

    \b
    Example:
      segment measure plan.parquet outcomes.csv --response-col responded
    """
    with loading():
        from engine import present
        from engine.insight.campaign import measure_campaign, write_measure

    table, summary = measure_campaign(plan_file, list(outcomes), options["response_col"], options["id_col"],
                                      options["cost_per_contact"], options["revenue_per_response"],
                                      options["separator"])
    path = write_measure(table, summary, options["out"], options["overwrite"])
    if as_json:
        click.echo(json.dumps({**summary, "out": str(path), "table": table.to_dicts()}, indent=2))
    else:
        click.echo(present.measure(table, summary, str(path)))


@main.command()
@click.argument("run_dir", metavar="DIR")
@click.option("--out", type=click.Path(dir_okay=False), help="Output HTML file (default: DIR/report.html).")
@click.option("--overwrite", is_flag=True, help="Replace an existing report file.")
@engine_errors
def report(run_dir, out, overwrite):
    """Write one self-contained HTML report of a run (works offline: Plotly's JavaScript is
    embedded once): summary and metrics, EDA, segment sizes, profile heatmap, PCA projection,
    the sweep chart when there is one, names and actions, the impact table and gains curve,
    the offers, and the campaign test's measured lifts when segment measure wrote them.

    \b
    Example:
      segment report run/ --out run/report.html
    """
    with loading():
        from engine.insight.report import write_report

    path = write_report(run_dir, out, overwrite=overwrite or out is None)
    click.echo(f"wrote {path}")


@main.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--port", type=int, default=8501, show_default=True, help="Port to serve on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; another than 127.0.0.1 makes the data visible to that network.")
@click.option("--compare", type=click.Path(), help="Another run directory: sizes side by side and the migration.")
@engine_errors
def dashboard(run_dir, port, host, compare):
    """Serve a run as a dashboard in the browser (needs the dashboard extra: pip install
    'segment-engine[dashboard]'): overview, customer table with filters and CSV export, campaign
    what-if, a predict form, and with --compare the comparison of two runs. Serves until Ctrl-C.

    \b
    Example:
      segment dashboard run/
      segment dashboard run/ --port 8502 --compare last_quarter/
    """
    with loading():
        from engine.dashboard.serve import serve

    code = serve(run_dir, port=port, host=host, compare=compare, echo=click.echo,
                 warn=lambda msg: click.echo(msg, err=True))
    if code:
        raise click.exceptions.Exit(code)


if __name__ == "__main__":
    main()
