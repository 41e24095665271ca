"""`segment`: the command-line interface. Thin by design: parse options, call `engine`, print.

Progress and warnings go to stderr; data and --json go to stdout. Exit codes: 0 success,
2 bad usage or bad input (one line `Error: ...`), 1 unexpected internal failure.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback

import click


class InputProblem(click.ClickException):
    """Bad input or usage: one line, exit code 2."""

    exit_code = 2


def engine_errors(func):
    """Turn engine errors into clean CLI errors; --debug shows the traceback of internal ones."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        set_threads(kwargs.get("threads"))  # before the engine (and Polars) is imported
        from engine.errors import InputError, SegmentError

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


def feature_options(func):
    """The feature options shared by every command that builds features."""
    options = [
        click.option("--features", help="Comma-separated raw columns to use as features."),
        click.option("--spec", "spec", help="Feature spec: a TOML file, or a built-in name (customers)."),
        click.option("--id-col", help="Id column (default: the spec's, else a column named id/customer_id, else row_id)."),
        click.option("--exclude", help="With neither --features nor --spec: comma-separated columns to leave out."),
        click.option("--missing", type=click.Choice(["drop", "median", "error"]), help="Missing-value policy (default: drop)."),
        click.option("--scale", type=click.Choice(["standard", "robust", "none"]), help="Scaler (default: standard)."),
    ]
    for option in reversed(options):
        func = option(func)
    return input_options(func)


def input_options(func):
    """How inputs are read, shared by run, sweep and predict."""
    options = [
        click.option("--separator", help="CSV separator (default: sniffed from the file)."),
        click.option("--allow-duplicate-ids", is_flag=True, help="Accept an id column with repeated values."),
        click.option("--memory-limit", help="Memory the command may use, e.g. 8GiB (default: what is free)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def sql_input_options(func):
    """INPUT as a DuckDB query: shared by every command that takes INPUT (run, sweep, predict, describe)."""
    options = [
        click.option("--sql", help="A DuckDB SELECT whose result is the input. Alone it may read any file you "
                                   "name; with INPUT files it reads them as the view `input` and nothing else."),
        click.option("--as-of", help="Reference date for SQL sources and --preset rfm (default: the day after "
                                     "the last transaction)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def preset_options(func):
    """--preset rfm and its columns, for run and sweep."""
    options = [
        click.option("--preset", type=click.Choice(["rfm"]),
                     help="Features from transactions: rfm = recency, frequency, monetary, tenure, basket."),
        click.option("--customer-col", help="--preset rfm: the customer id column."),
        click.option("--date-col", help="--preset rfm: the date or timestamp column (text dates are parsed)."),
        click.option("--amount-col", help="--preset rfm: the amount column (negative = refund)."),
        click.option("--order-col", help="--preset rfm: the order id column (default: every row is an order)."),
    ]
    for option in reversed(options):
        func = option(func)
    return sql_input_options(func)


def preset_of(preset, customer_col, date_col, amount_col, order_col) -> dict | None:
    """The preset options as the engine's ``preset`` argument (None without --preset)."""
    columns = {"customer": customer_col, "date": date_col, "amount": amount_col, "order": order_col}
    if preset is None:
        given = [f"--{k}-col" for k, v in columns.items() if v is not None]
        if given:
            raise InputProblem(f"{given[0]} needs --preset rfm")
        return None
    for key in ("customer", "date", "amount"):
        if not columns[key]:
            raise InputProblem(f"--preset {preset} needs --{key}-col")
    return columns


def comma_list(text: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; None stays None."""
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def campaign_options(func):
    """The campaign figures of the impact table (default: the spec's [business] figures)."""
    options = [
        click.option("--cost-per-contact", type=float, help="Cost of contacting one customer (default: the spec's)."),
        click.option("--revenue-per-response", type=float, help="Revenue from one response (default: the spec's)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def common_options(func):
    options = [
        click.option("--threads", type=int, help="Threads to use (default: all cores)."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
        click.option("--quiet", is_flag=True, help="No progress on stderr."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


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
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output Parquet file.")
@click.option("--segments", type=int, default=5, show_default=True, help="Planted ground-truth segments.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--spread", type=float, default=1.0, show_default=True,
              help="Noise within segments: 1 is realistic overlap, 0.25 well separated.")
@click.option("--kind", type=click.Choice(["customers", "transactions"]), default="customers", show_default=True)
@click.option("--customers", type=int, help="--kind transactions: number of customers (about 22 rows each).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@engine_errors
def generate(rows, out, segments, seed, spread, kind, customers, overwrite, as_json, quiet):
    """Write synthetic customers shaped like the marketing_campaign dataset, with planted
    segments in a `true_segment` column. Streams in chunks: 100,000,000 rows fit in bounded memory.

    With --kind transactions: orders of --customers customers in planted behaviour groups
    (`true_group`), with refunds and some null customer ids, for --preset rfm.

    \b
    Example:
      segment generate --rows 1000000 --segments 5 --out customers.parquet
      segment generate --kind transactions --customers 50000 --out tx.parquet
    """
    log = logger(quiet)
    if kind == "transactions":
        from engine.synth.transactions import generate_transactions

        if customers is None or rows is not None:
            raise InputProblem("--kind transactions takes --customers N (not --rows)")
        summary = generate_transactions(out, customers, seed=seed, overwrite=overwrite,
                                        progress=lambda done, total: log(f"generated {done:,} / {total:,} customers"))
        click.echo(json.dumps(summary, indent=2) if as_json else
                   f"wrote {summary['rows']:,} transactions of {customers:,} customers to {out} "
                   f"({summary['seconds']:.2f} s)")
        return
    if rows is None or customers is not None:
        raise InputProblem("--kind customers takes --rows N (not --customers)")
    from engine.synth.customers import generate_customers

    summary = generate_customers(out, rows, segments=segments, seed=seed, spread=spread, overwrite=overwrite,
                                 progress=lambda done, total: log(f"generated {done:,} / {total:,} rows"))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"wrote {summary['rows']:,} customers in {summary['segments']} segments to {out} "
                   f"({summary['seconds']:.2f} s)")


@main.command()
@click.argument("inputs", nargs=-1)
@click.option("--k", "k", required=True, help="Number of segments, or auto to choose it with a sweep first.")
@click.option("--k-range", default="2..10", show_default=True, help="With --k auto: the ks to sweep.")
@click.option("--repeats", type=int, default=3, show_default=True,
              help="With --k auto: bootstrap refits per k for the stability score.")
@click.option("--out", required=True, type=click.Path(), help="Output run directory.")
@feature_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-init", type=int, help="k-means++ restarts on the init sample (default: 10 on small data, else 8).")
@click.option("--silhouette-sample", type=int,
              help="Rows in the silhouette sample (default: 20,000 or all rows; 0 to skip).")
@campaign_options
@click.option("--overwrite", is_flag=True, help="Replace an earlier run directory.")
@preset_options
@click.option("--db", type=click.Path(dir_okay=False), help="Also write a DuckDB database of the results.")
@click.option("--partition-by-segment", is_flag=True,
              help="Also write OUT/segments/segment=K/part-0.parquet (hive partitions).")
@common_options
@engine_errors
def run(inputs, k, k_range, repeats, out, features, spec, id_col, exclude, missing, scale, separator,
        allow_duplicate_ids, memory_limit, seed, n_init, silhouette_sample, cost_per_contact, revenue_per_response,
        overwrite, sql, as_of, preset, customer_col, date_col, amount_col, order_col, db, partition_by_segment,
        threads, as_json, quiet):
    """Segment customers into K segments. INPUT is Parquet (file, directory or glob) or CSV/TSV,
    or --sql "SELECT ..." (DuckDB); with --preset rfm, INPUT is transactions.

    Writes OUT/segments.parquet, profiles.parquet, model.json and metrics.json (and sweep.*
    with --k auto; segments/ with --partition-by-segment; a DuckDB file with --db).

    \b
    Example:
      segment run customers.parquet --spec customers --k 5 --out run/
      segment run --sql "SELECT * FROM read_parquet('c/*.parquet')" --id-col ID --k 5 --out run/
      segment run tx.parquet --preset rfm --customer-col customer_id --date-col ts --amount-col amount --k 5 --out run/
      segment run data.csv --features Income,Recency,MntWines --k 4 --out run/
      segment run customers.parquet --spec customers --k auto --k-range 2..8 --out run/
    """
    import engine
    from engine.insight.profiles import format_names, format_profiles

    result = engine.run(
        list(inputs), k, out, k_range=k_range, repeats=repeats, spec=spec, features=features, id_col=id_col, missing=missing, scale=scale,
        exclude=comma_list(exclude), seed=seed, threads=threads, n_init=n_init, silhouette_sample=silhouette_sample,
        separator=separator, overwrite=overwrite, allow_duplicate_ids=allow_duplicate_ids, memory_limit=memory_limit,
        sql=sql, as_of=as_of, preset=preset_of(preset, customer_col, date_col, amount_col, order_col), db=db,
        partition_by_segment=partition_by_segment, cost_per_contact=cost_per_contact,
        revenue_per_response=revenue_per_response, log=logger(quiet),
    )
    if as_json:
        click.echo(json.dumps(result.metrics, indent=2))
        return
    m = result.metrics
    click.echo(format_profiles(result.profiles))
    click.echo(format_names(result.profiles))
    sil = "n/a" if m["silhouette"] is None else f"{m['silhouette']:.4f}"
    click.echo(
        f"k={m['k']}  rows={m['rows']:,}  dropped={m['rows_dropped']:,}  inertia={m['inertia']:.6g}  "
        f"silhouette={sil} (sample {m['silhouette_sample']:,})  iterations={m['n_iter']}  "
        f"time={m['seconds']['total']:.2f} s"
    )
    if m["sweep"]:
        click.echo(f"k chosen by sweep: {m['sweep']['reason']}")
    impact = m["insight"].get("impact")
    if impact:
        e, best = impact["everyone"], impact["best_segment"]
        click.echo(f"mass campaign: {e['customers']:,} contacted, {e['responses']:,} responses, profit {e['profit']:,.0f}, "
                   f"ROI {e['roi']:.1%}; best segment {best['segment']}: profit {best['profit']:,.0f}, ROI {best['roi']:.1%}")
    click.echo(f"wrote {out}/: segments.parquet, profiles.parquet, model.json, metrics.json, describe.json, "
               "projection.parquet" + (", impact.parquet" if impact else "")
               + (", sweep.parquet, sweep.json, sweep.html" if m["sweep"] else "")
               + (", segments/" if partition_by_segment else "") + (f"; and {db}" if db else ""))


@main.command()
@click.argument("inputs", nargs=-1)
@click.option("--k", "ks", default="2..12", show_default=True, help="ks to fit: a range (2..12) or a list (3,5,7).")
@click.option("--out", required=True, type=click.Path(), help="Output directory.")
@feature_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-init", type=int, help="k-means++ restarts per k (default: 10 on small data, else 3).")
@click.option("--repeats", type=int, default=3, show_default=True,
              help="Bootstrap refits per k for the stability score (0 to skip).")
@click.option("--silhouette-sample", type=int, help="Rows in the silhouette sample (default: 10,000 or all rows).")
@click.option("--compare", help="Also fit other algorithms at the recommended k: any of gmm,ward,dbscan,hdbscan.")
@click.option("--compare-sample", type=int, default=20_000, show_default=True,
              help="Rows the compared algorithms are fitted on (ward needs O(rows^2) memory).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier sweep or run directory.")
@preset_options
@common_options
@engine_errors
def sweep(inputs, ks, out, features, spec, id_col, exclude, missing, scale, separator, allow_duplicate_ids,
          memory_limit, seed, n_init, repeats, silhouette_sample, compare, compare_sample, overwrite, sql, as_of,
          preset, customer_col, date_col, amount_col, order_col, threads, as_json, quiet):
    """Fit k-means for every k and judge each: SSE (elbow), silhouette with a 95% interval,
    Calinski-Harabasz, Davies-Bouldin and stability; recommend a k and say why.

    Writes OUT/sweep.parquet, sweep.json (with recommended_k and the reason) and sweep.html.

    \b
    Example:
      segment sweep customers.parquet --spec customers --k 2..12 --out sweep/
      segment sweep data.csv --features Income,Recency --k 2..8 --compare gmm,ward,dbscan --out sweep/
    """
    import engine

    result = engine.sweep(
        list(inputs), ks, out, spec=spec, features=features, id_col=id_col, missing=missing, scale=scale,
        exclude=comma_list(exclude), seed=seed, threads=threads, n_init=n_init, repeats=repeats,
        silhouette_sample=silhouette_sample, compare=comma_list(compare) or (),
        compare_sample=compare_sample, allow_duplicate_ids=allow_duplicate_ids, memory_limit=memory_limit,
        separator=separator, overwrite=overwrite, sql=sql, as_of=as_of,
        preset=preset_of(preset, customer_col, date_col, amount_col, order_col), log=logger(quiet),
    )
    if as_json:
        click.echo(json.dumps(result.summary, indent=2))
        return
    from engine.insight.profiles import format_table

    click.echo(format_table(result.outcome.table))
    click.echo(f"recommended k={result.summary['recommended_k']}: {result.summary['reason']}")
    click.echo(f"wrote {out}/: sweep.parquet, sweep.json, sweep.html")


@main.command()
@click.argument("model")
@click.argument("inputs", nargs=-1)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output Parquet file.")
@input_options
@sql_input_options
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@common_options
@engine_errors
def predict(model, inputs, out, separator, allow_duplicate_ids, memory_limit, sql, as_of, overwrite, threads,
            as_json, quiet):
    """Assign new customers to the segments of a saved model (MODEL: model.json or a run directory).

    The same feature pipeline, scaler and assignment kernel as the run are used; a model made
    with --preset rfm or a [source] query builds its features from the new INPUT the same way.

    \b
    Example:
      segment predict run/ new_customers.parquet --out new_segments.parquet
    """
    import engine

    result = engine.predict(model, list(inputs), out, threads=threads, separator=separator, overwrite=overwrite,
                            allow_duplicate_ids=allow_duplicate_ids, memory_limit=memory_limit, sql=sql, as_of=as_of,
                            log=logger(quiet))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        sizes = ", ".join(f"{j}: {s:,}" for j, s in enumerate(result["segment_sizes"]))
        click.echo(f"assigned {result['rows_used']:,} of {result['rows']:,} rows to {result['k']} segments "
                   f"({sizes}); wrote {out}")


@main.command("sql")
@click.argument("run_dir", metavar="DIR")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
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
    from engine.duck.views import query_run, render

    click.echo(render(query_run(run_dir, query, threads), fmt))


@main.command()
@click.argument("inputs", nargs=-1)
@click.option("--columns", help="Comma-separated columns to describe (default: all).")
@click.option("--separator", help="CSV separator (default: sniffed from the file).")
@sql_input_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
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
    from engine.insight.describe import describe as describe_inputs
    from engine.insight.describe import format_describe

    summary = describe_inputs(list(inputs), comma_list(columns), separator, sql, as_of)
    click.echo(json.dumps(summary, indent=2) if as_json else format_describe(summary))


@main.command()
@click.argument("run_dir", metavar="DIR")
@campaign_options
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
    from engine.insight.impact import format_impact, recompute, write_impact

    table, summary = recompute(run_dir, cost_per_contact, revenue_per_response)
    if out:
        write_impact(table, out, overwrite)
    if as_json:
        click.echo(json.dumps({**summary, "table": table.to_dicts()}, indent=2))
    else:
        click.echo(format_impact(table, summary))


@main.command()
@click.argument("run_dir", metavar="DIR")
@click.option("--out", type=click.Path(dir_okay=False), help="Output HTML file (default: DIR/report.html).")
@click.option("--overwrite", is_flag=True, help="Replace an existing report file.")
@engine_errors
def report(run_dir, out, overwrite):
    """Write one self-contained HTML report of a run (works offline: Plotly's JavaScript is
    embedded once): summary and metrics, EDA, segment sizes, profile heatmap, PCA projection,
    the sweep chart when there is one, names and actions, the impact table and gains curve.

    \b
    Example:
      segment report run/ --out run/report.html
    """
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
    from engine.dashboard.serve import serve

    code = serve(run_dir, port=port, host=host, compare=compare, echo=click.echo,
                 warn=lambda msg: click.echo(msg, err=True))
    if code:
        raise click.exceptions.Exit(code)


if __name__ == "__main__":
    main()
