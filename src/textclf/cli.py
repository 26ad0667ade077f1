"""`textclf`: the only argv parser. Every command prints one clear line on a user error and exits non-zero."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from textclf.errors import TextclfError

app = typer.Typer(help="textclf: keep text classifiers fresh (Prefect + MLflow + DVC).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
config_app = typer.Typer(help="Show the configuration and its schema.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (e.g. params.yaml).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a key: --set train.epochs=2 (repeatable).")]


def _config(config: Path | None, overrides: list[str] | None):
    from textclf.config import load_config

    return load_config(config, overrides or [])


@app.command()
def run(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Run the `retrain` flow: ingest, split, validate, train, evaluate, register."""
    cfg = _config(config, overrides)
    import importlib

    # The CLI is the edge where the library meets the orchestration layer; loaded by name on use.
    retrain = importlib.import_module("flows.retrain").retrain
    summary = retrain(cfg)
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def predict(
    texts: Annotated[list[str], typer.Argument(help="Texts to classify.")],
    model: Annotated[str | None, typer.Option(help="Model URI; default models:/<registry.model_name>@champion.")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Print label and score for each text."""
    from textclf.registry import champion_uri, load_model

    cfg = _config(config, overrides)
    uri = model or champion_uri(cfg)
    classifier = load_model(cfg, uri)
    import pandas as pd

    out = classifier.predict(pd.DataFrame({"text": texts}))
    for text, label, score in zip(texts, out["label"], out["score"]):
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
    """Fine-tune on saved splits. Outside torchrun it launches itself under torchrun."""
    import os

    cfg = _config(config, overrides)
    if launch and "LOCAL_RANK" not in os.environ:
        from textclf import stages

        ref = stages.DataRef(str(data), "", {}, [])
        result = stages.train(cfg, ref, out, mlflow_run_id)
        typer.echo(json.dumps(result.__dict__, indent=2))
        return
    from textclf.train.finetune import run_training
    from textclf.tracking import FanoutSink, JsonlSink, MlflowSink

    sinks = [JsonlSink(out / "metrics.jsonl")]
    if mlflow_run_id:
        sinks.append(MlflowSink(cfg.mlflow_uri(), mlflow_run_id))
    run_training(cfg.train, data, out, cfg.output_path / "cache" / "tokenized", FanoutSink(*sinks))


@app.command()
def ingest(
    out: Annotated[Path, typer.Option(help="Folder for raw/ and splits/.")] = Path("outputs/dvc/data"),
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Read the configured source and write the seeded train/validation/test split."""
    from textclf import stages

    cfg = _config(config, overrides)
    raw = stages.ingest(cfg, out)
    ref = stages.split(cfg, raw, out)
    typer.echo(json.dumps(ref.to_dict()))


@app.command()
def validate(
    data: Annotated[Path, typer.Option(help="Splits folder written by `textclf ingest`.")] = Path("outputs/dvc/data/splits"),
    out: Annotated[Path, typer.Option(help="Folder for the validation report.")] = Path("outputs/dvc"),
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Run the data gate on saved splits; exits non-zero when it fails."""
    from textclf import stages

    cfg = _config(config, overrides)
    report = stages.validate(cfg, stages.DataRef(str(data), "", {}, []), out)
    typer.echo(report.markdown())


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Option("--model-dir", help="Trained model folder.")] = Path("outputs/dvc/train/model"),
    data: Annotated[Path, typer.Option(help="Splits folder.")] = Path("outputs/dvc/data/splits"),
    out: Annotated[Path, typer.Option(help="Folder for test_metrics.json.")] = Path("outputs/dvc"),
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Score a trained model on the test split."""
    from rich.progress import Progress

    from textclf import stages

    cfg = _config(config, overrides)
    ref = stages.DataRef(str(data), "", {}, [])
    with Progress(transient=True) as bar:
        job = bar.add_task("evaluate", total=None)
        report = stages.evaluate(cfg, str(model_dir), ref, out, progress=lambda n: bar.advance(job, n))
    typer.echo(json.dumps(report.prefixed()))


@config_app.command("show")
def config_show(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Print the effective config as YAML (defaults + file + overrides)."""
    from textclf.config import dump_yaml

    typer.echo(dump_yaml(_config(config, overrides)), nl=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the config's JSON schema (what the Prefect UI form is built from)."""
    from textclf.config import PipelineConfig

    typer.echo(json.dumps(PipelineConfig.model_json_schema(by_alias=True), indent=2))


def main() -> None:
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

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
