"""`textclf`: the only argv parser. Every command prints one clear line on a user error and exits non-zero.

Commands import what they use inside their body: `textclf --help`, `config show` or `data add` must not pay
for torch, transformers, MLflow and Great Expectations (seconds each) that only training and evaluation need.
The commands that run flows (`run`, `worker`) are added by textclf_flows.cli, outside the library.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from textclf.errors import TextclfError
from textclf.serve import START_TIMEOUT_S, StackSettings  # stdlib only: cheap at start-up
from textclf.settings import disable_telemetry

app = typer.Typer(
    help="textclf: keep text classifiers fresh (Prefect + MLflow + DVC).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Show the configuration and its schema.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (e.g. params.yaml).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a key: --set train.epochs=2 (repeatable).")]


def load_cli_config(config: Path | None, overrides: list[str] | None):
    from textclf.config import load_config

    return load_config(config, overrides or [])


@app.command()
def predict(
    texts: Annotated[list[str], typer.Argument(help="Texts to classify.")],
    model: Annotated[str | None, typer.Option(help="Model URI; default models:/<registry.model_name>@champion.")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Print label and score for each text."""
    import tempfile

    from textclf.modeling import predict_proba, saved_max_length
    from textclf.registry import champion_uri, load_registered

    cfg = load_cli_config(config, overrides)
    uri = model or champion_uri(cfg.registry_target())
    with tempfile.TemporaryDirectory() as tmp:  # weights from safetensors; the model's code file is not run
        classifier, tokenizer, _ = load_registered(cfg.tracking_target(), uri, Path(tmp))
        preds = predict_proba(classifier, tokenizer, texts, max_length=saved_max_length(tokenizer))
    for text, label, score in zip(texts, preds.names, preds.scores, strict=True):
        typer.echo(f"{label}\t{score:.4f}\t{text}")


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Splits saved by `textclf ingest` (save_to_disk folder).")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, model/, result.json.")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    mlflow_run_id: Annotated[str | None, typer.Option(help="Log metrics into this MLflow run (rank 0 only).")] = None,
    launch: Annotated[bool, typer.Option(help="Start under torchrun (the default outside torchrun).")] = True,
) -> None:
    """Train on saved splits (train.kind: fine-tune, or fit the frozen-encoder probe). Outside torchrun it launches
    itself under torchrun (a probe as one process)."""
    cfg = load_cli_config(config, overrides)
    if launch and "LOCAL_RANK" not in os.environ:
        from textclf import stages
        from textclf.tracking import run_of

        run = run_of(cfg.tracking_target(), mlflow_run_id) if mlflow_run_id else None
        result = stages.train(cfg, stages.DataRef.of_splits(data), out, run)
        typer.echo(json.dumps(asdict(result), indent=2))
        return
    if cfg.train.kind == "probe":
        from textclf.train.probe import run_probe

        run_probe(cfg.train, data, out, cfg.vector_cache_path(), _rank_sink(cfg, out, mlflow_run_id))
        return
    from textclf.train.finetune import run_training

    run_training(cfg.train, data, out, cfg.output_path / "cache" / "tokenized", _rank_sink(cfg, out, mlflow_run_id))


def _rank_sink(cfg, out: Path, mlflow_run_id: str | None):
    """Inside a torchrun rank: metrics to OUT/metrics.jsonl and, with a run id, to MLflow (rank 0 only; what a
    tracking outage holds back is sent later, and is in metrics.jsonl in any case)."""
    from textclf.tracking import FanoutSink, JsonlSink, MetricSink, MlflowSink

    jsonl = out / "metrics.jsonl"
    sinks: list[MetricSink] = [JsonlSink(jsonl)]
    if mlflow_run_id:
        sinks.append(MlflowSink(cfg.mlflow_uri(), mlflow_run_id, kept_in=jsonl))
    return FanoutSink(*sinks)


@app.command()
def ingest(
    out: Annotated[Path, typer.Option(help="Folder for raw/ and splits/ (dvc.yaml: outputs/dvc/data).")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Read the configured source and write the seeded train/validation/test split."""
    from textclf import stages

    cfg = load_cli_config(config, overrides)
    raw = stages.ingest(cfg, out)
    ref = stages.split(cfg, raw, out)
    typer.echo(json.dumps(ref.to_dict()))


@app.command()
def validate(
    data: Annotated[Path, typer.Option(help="Splits folder written by `textclf ingest` (OUT/splits).")],
    out: Annotated[Path, typer.Option(help="Folder for OUT/validation (the report) and OUT/validated (the rows).")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Run the data gate on saved splits (report in OUT/validation); exits non-zero when it fails.

    The data to train on goes to OUT/validated: in quarantine mode without the rows that failed.
    """
    from textclf import stages

    cfg = load_cli_config(config, overrides)
    validated = stages.validate(cfg, stages.DataRef.of_splits(data), out)
    typer.echo(validated.report.markdown())
    typer.echo(f"\ndata to train on: {validated.data.path}")


@app.command()
def augment(
    data: Annotated[Path, typer.Option(help="Splits folder written by `textclf validate` (OUT/validated).")],
    out: Annotated[Path, typer.Option(help="Folder for OUT/augmented (splits) and OUT/augment (report).")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Augment the training split of saved splits (synonyms, back-translation); validation and test stay as they are."""
    from textclf import stages

    cfg = load_cli_config(config, overrides)
    augmented = stages.augment(cfg, stages.DataRef.of_splits(data), out)
    typer.echo(augmented.report.markdown())
    typer.echo(f"\naugmented splits: {augmented.data.path} {augmented.data.rows}")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Option("--model-dir", help="Trained model folder (e.g. OUT/model of `textclf train`).")],
    data: Annotated[Path, typer.Option(help="Splits folder (its test split is scored).")],
    out: Annotated[Path, typer.Option(help="Folder for test_metrics.json and evaluation/ (plots).")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Score a trained model on the test split."""
    from rich.progress import Progress

    from textclf import stages

    cfg = load_cli_config(config, overrides)
    with Progress(transient=True) as bar:
        job = bar.add_task("evaluate", total=None)
        report = stages.evaluate(cfg, str(model_dir), stages.DataRef.of_splits(data), out, progress=lambda n: bar.advance(job, n))
    typer.echo(json.dumps(report.prefixed()))


@config_app.command("show")
def config_show(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Print the effective config as YAML (defaults + file + overrides)."""
    from textclf.config import dump_yaml

    typer.echo(dump_yaml(load_cli_config(config, overrides)), nl=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the config's JSON schema (what the Prefect UI form is built from)."""
    from textclf.config import PipelineConfig

    typer.echo(json.dumps(PipelineConfig.model_json_schema(by_alias=True), indent=2))


@app.command()
def distill(
    data: Annotated[Path, typer.Option(help="Splits saved by `textclf ingest` (save_to_disk folder).")],
    out: Annotated[Path, typer.Option(help="Run folder: distill_plan.json, checkpoints, model/, result.json.")],
    teacher: Annotated[str | None, typer.Option(help="Teacher folder or models:/ URI (overrides distill.teacher).")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    mlflow_run_id: Annotated[
        str | None,
        typer.Option(
            help=(
                "Outside torchrun: the student gets its own MLflow run, a child of this one. Inside: log into this run "
                "(rank 0 only)."
            )
        ),
    ] = None,
    launch: Annotated[bool, typer.Option(help="Start under torchrun (the default outside torchrun).")] = True,
) -> None:
    """Distil a teacher into a smaller student. Outside torchrun it plans, then launches itself under torchrun."""
    cfg = load_cli_config(config, overrides)
    if launch and "LOCAL_RANK" not in os.environ:
        from textclf import stages
        from textclf.tracking import run_of

        if teacher:
            cfg.distill.teacher = teacher
        parent = run_of(cfg.tracking_target(), mlflow_run_id) if mlflow_run_id else None
        outcome = stages.distill(cfg, stages.DataRef.of_splits(data), out, None, parent)
        typer.echo(json.dumps(asdict(outcome), indent=2, default=str))
        return
    from textclf.train.distill import run_distillation

    run_distillation(
        cfg.train, cfg.distill, data, out, cfg.output_path / "cache" / "tokenized", _rank_sink(cfg, out, mlflow_run_id)
    )


registry_app = typer.Typer(
    help="Champion history, verification and human promotion/rollback (all audited).", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")
ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why; stored in the audit trail (required).")]


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@registry_app.command("history")
def registry_history(
    name: Annotated[str | None, typer.Argument(help="Registered model; default registry.model_name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON record per line, every field.")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Every champion decision (gate, promote, rollback), oldest first, with trigger, versions and reason."""
    from textclf.promotion import history, record_json

    cfg = load_cli_config(config, overrides)
    records = history(cfg.registry_target(), name)
    if as_json:
        typer.echo(record_json(records))
        return
    if not records:
        typer.echo(f"no decisions recorded for {name or cfg.registry.model_name} in {cfg.mlflow_uri()}")
        return
    for record in records:
        typer.echo(record.line())


@registry_app.command("verify")
def registry_verify(
    name: Annotated[str | None, typer.Argument(help="Registered model; default registry.model_name.")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Check that every move of the champion alias has a committed audit record; settle interrupted ones.

    Prints one line per reconciled record and per problem; exits 1 when the alias moved without a committed record.
    """
    from textclf.promotion import UnauditedMoves, verify

    cfg = load_cli_config(config, overrides)
    found = verify(cfg.registry_target(), name)
    for record in found.reconciled:
        typer.echo(f"reconciled: seq {record.seq} {record.action} v{record.candidate_version} was pending -> {record.state}")
    for problem in found.problems:
        typer.echo(f"unaudited: {problem}")
    if found.problems:
        raise UnauditedMoves(f"{len(found.problems)} alias move(s) of {found.name} without a committed audit record (above)")
    committed = [r for r in found.records if r.state == "committed"]
    last = f"as committed record seq {committed[-1].seq} left it" if committed else "no committed record and no alias"
    champion = f"v{found.champion}" if found.champion else "none"
    typer.echo(f"ok: @{cfg.registry.champion_alias} of {found.name} is {champion}, {last} ({len(found.records)} records)")


@registry_app.command("promote")
def registry_promote(
    version: Annotated[str, typer.Argument(help="Model version number to make the champion.")],
    reason: ReasonOpt,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Make VERSION the champion by hand (overrides the gate); refused for unknown or unevaluated versions."""
    from textclf.promotion import promote_version

    cfg = load_cli_config(config, overrides)
    record = promote_version(cfg.registry_target(), cfg.evaluate, version, reason, trigger="cli", actor=_actor())
    typer.echo(record.line())


@registry_app.command("rollback")
def registry_rollback(reason: ReasonOpt, config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Give the champion alias back to the version that served before the current one."""
    from textclf.promotion import rollback

    cfg = load_cli_config(config, overrides)
    record = rollback(cfg.registry_target(), cfg.evaluate, reason, trigger="cli", actor=_actor())
    typer.echo(record.line())


data_app = typer.Typer(help="DVC data versions: add drops, seed, restore.", no_args_is_help=True)
# Called after `data add` with (the path given, the DataVersion, the data folder); a returned line is printed.
DATA_ADDED_HOOKS: list[Callable[[Path, Any, Path], str | None]] = []
app.add_typer(data_app, name="data")


@data_app.command("add")
def data_add(
    path: Annotated[Path, typer.Argument(help="A drop file (.csv/.tsv/.jsonl/.parquet) or a folder of drops.")],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Copy new drops into data.data_dir, check the whole version reads, `dvc commit` + `dvc push`."""
    from textclf.versioning import add_data, find_repo

    cfg = load_cli_config(config, overrides)
    version = add_data(path, cfg.data)
    for note in version.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(version.message())
    for hook in DATA_ADDED_HOOKS:  # e.g. the Prefect event that starts monitoring (flows/cli.py)
        try:
            told = hook(path, version, find_repo() / cfg.data.data_dir)
        except Exception as err:  # the version is made; a service that cannot be told is a note, not a failure
            typer.echo(f"note: the data version is recorded, but {hook.__doc__ or hook.__name__} failed: {err}", err=True)
        else:
            if told:
                typer.echo(told)


@data_app.command("seed")
def data_seed(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Set-up: pull the tracked data version, or seed data.data_dir with the packaged corpus."""
    from textclf.versioning import seed_data

    version = seed_data(load_cli_config(config, overrides).data)
    typer.echo(version.message() if version else "data: the tracked folder holds its version")


@data_app.command("demo-drops")
def data_demo_drops(
    dest: Annotated[Path, typer.Argument(help="Folder to write reviews.csv and synopses.csv into.")],
    rows: Annotated[int, typer.Option(min=30, help="Rows per drop (synopses: at most the 156 the corpus has).")] = 500,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Two labelled drops to try monitoring with: reviews like the training data, and film synopses (drifted)."""
    from textclf.monitor.drops import write_demo_drops

    for name, path in write_demo_drops(dest, rows, seed).items():
        typer.echo(f"{name}: {path}")


@data_app.command("restore")
def data_restore(
    md5: Annotated[str, typer.Argument(help="Data version (the data.dvc_md5 lineage tag, e.g. 1a2b...dir).")],
    dest: Annotated[Path, typer.Argument(help="New folder inside the repository to restore into.")],
) -> None:
    """Restore a data version by md5 from the DVC cache or remote."""
    from textclf.versioning import restore_data

    typer.echo(str(restore_data(md5, dest)))


class _CheckByDefault(TyperGroup):
    """`textclf monitor [DROP] [options]` runs `monitor check`; `textclf monitor history` the history."""

    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["check", *args]
        return super().parse_args(ctx, args)


monitor_app = typer.Typer(
    cls=_CheckByDefault,
    help="Judge a new drop with the champion (input drift, prediction drift, decay) and apply the retrain policy "
    "(`textclf monitor DROP`; no DROP: the configured data's rows new since the champion); `history` shows past results.",
)
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("history")
def monitor_history(
    model: Annotated[str | None, typer.Option(help="Registry name (default: the one monitor.model judges).")] = None,
    png: Annotated[Path | None, typer.Option(help="Where to write the plot (default <output_dir>/monitor/history.png).")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Every monitoring result (MLflow experiment `<tracking.experiment>-monitor`) and a PNG of drift and decay over
    time, one series per champion version."""
    from textclf.monitor.core import monitored_name
    from textclf.monitor.history import read_history
    from textclf.monitor.plot import history_table, plot_history

    cfg = load_cli_config(config, overrides)
    name = model or monitored_name(cfg)
    points = read_history(cfg, name)
    typer.echo(history_table(points) if points else f"no monitoring runs of {name} yet: `textclf monitor DROP` makes one")
    path = png or cfg.output_path / "monitor" / "history.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_history(
        points, path, f"{name}: drift and decay", bound=cfg.monitor.embedding_p_value, decay_bound=cfg.monitor.max_accuracy_drop
    )
    typer.echo(f"plot: {path}")


@app.command()
def lineage(
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Where a model came from: run, git commit, DVC data version, dataset digests, flow run, config."""
    from textclf.lineage import describe_lineage

    report = describe_lineage(load_cli_config(config, overrides).tracking_target(), model_uri)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    lines = report.lines()
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key:<{width}}  {value}")


@app.command()
def serve(
    check: Annotated[bool, typer.Option("--check", help="Only report the health of a running stack.")] = False,
    host: Annotated[str, typer.Option(help=StackSettings.describe("host"))] = StackSettings.default("host"),
    prefect_port: Annotated[int, typer.Option(help=StackSettings.describe("prefect_port"))] = StackSettings.default(
        "prefect_port"
    ),
    mlflow_port: Annotated[int, typer.Option(help=StackSettings.describe("mlflow_port"))] = StackSettings.default("mlflow_port"),
    state_dir: Annotated[Path, typer.Option(help=StackSettings.describe("state_dir"))] = StackSettings.default("state_dir"),
    mlflow_backend_uri: Annotated[
        str | None, typer.Option(envvar="TEXTCLF_MLFLOW_BACKEND_URI", help=(StackSettings.describe("mlflow_backend_uri")))
    ] = StackSettings.default("mlflow_backend_uri"),
    mlflow_artifacts: Annotated[
        str | None, typer.Option(envvar="TEXTCLF_MLFLOW_ARTIFACTS", help=(StackSettings.describe("mlflow_artifacts")))
    ] = StackSettings.default("mlflow_artifacts"),
    timeout_s: Annotated[float, typer.Option(help="Longest wait for each service to become healthy.")] = START_TIMEOUT_S,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Start the Prefect server, the MLflow server and the deployments' worker; Ctrl-C stops them all."""
    from textclf.serve import ServiceFailed, Stack, build_services, stop_on_signals
    from textclf.serve import check as check_stack

    cfg = load_cli_config(config, overrides)
    settings = StackSettings(
        host=host,
        prefect_port=prefect_port,
        mlflow_port=mlflow_port,
        state_dir=state_dir,
        mlflow_backend_uri=mlflow_backend_uri,
        mlflow_artifacts=mlflow_artifacts,
        experiment=cfg.tracking.experiment,
    )
    if check:
        results = check_stack(settings)
        for name, ok, detail in results:
            typer.echo(f"{name:<8} {'ok' if ok else 'DOWN'}  {detail}")
        if not all(ok for _, ok, _ in results):
            raise ServiceFailed("some services are down; start them with `textclf serve`")
        return
    worker_args = (["--config", str(config)] if config else []) + [a for o in overrides or [] for a in ("--set", o)]
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(
            f"warning: --host {host} exposes the Prefect and MLflow servers to the network; enable their "
            "auth and TLS first (infra/production.md, 'Security defaults')",
            err=True,
        )
    stack = Stack(build_services(settings, worker_args, dict(os.environ)), Path.cwd(), echo=typer.echo)
    stop_on_signals()
    try:
        stack.start(timeout_s)
    except KeyboardInterrupt:
        typer.echo("stopped while starting (Ctrl-C)")
        raise typer.Exit(130) from None
    typer.echo(f"Prefect UI: {settings.prefect_url}   (deployments retrain/scheduled, retrain/manual)")
    typer.echo(f"MLflow UI:  {settings.mlflow_url}")
    typer.echo(f"logs: {settings.state_dir / 'logs'}; Ctrl-C stops everything")
    try:
        stopped = stack.watch()
        typer.echo(f"{stopped} exited: {stack.services[stopped].log_tail()}; stopping the rest", err=True)
    except KeyboardInterrupt:
        typer.echo("stopping (Ctrl-C)")
    finally:
        stack.stop()
    raise typer.Exit(0)


def main() -> None:
    disable_telemetry()  # before anything imports Prefect or MLflow; a user's own setting wins
    try:
        app(standalone_mode=False)
    except TextclfError as err:
        typer.echo(f"textclf: error: {err}", err=True)
        sys.exit(err.exit_code)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except typer.Abort:
        typer.echo("textclf: aborted", err=True)
        sys.exit(130)
    except Exception as err:  # click usage errors carry their own exit codes
        import click

        # typer >= 0.29 vendors click: its usage errors are TyperException, not click.ClickException.
        if isinstance(err, click.ClickException | typer.TyperException) and hasattr(err, "show"):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
