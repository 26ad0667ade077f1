"""Orchestration overhead: the `retrain` flow vs the same library stages called directly.

Same config, same data (a seeded sample of the real corpus), separate output folders so both
tokenise from scratch. "Plain" calls textclf.stages in order with no Prefect and no MLflow;
the flow adds Prefect tasks, artifacts, MLflow tracking, model logging and registration.
Prefect's local mode starts a temporary server once per process: that start-up is timed on its
own (a trivial flow run first) and reported separately.

    .venv/bin/python bench/overhead.py [--rows 3000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import comparison, write_results


def plain(cfg, out: Path) -> float:
    from textclf import stages

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    raw = stages.ingest(cfg, out)
    data = stages.split(cfg, raw, out)
    data = stages.validate(cfg, data, out).data
    trained = stages.train(cfg, data, out, log_line=lambda line: None)
    stages.evaluate(cfg, trained.model_dir, data, out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    args = parser.parse_args()

    from prefect import flow

    from textclf.config import build_config
    from textclf_flows.retrain import retrain

    @flow(name="warm-up")
    def warm_up() -> int:
        return 1

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        tmp = Path(tmp)

        def config(name: str):
            return build_config(
                {
                    "output_dir": str(tmp / name),
                    "data": {"max_rows": args.rows},
                    "augment": {"enabled": False},
                    "distill": {"enabled": False},
                }
            )

        plain_s = plain(config("plain"), tmp / "plain" / "run")
        print(f"plain stages: {plain_s:.1f}s", flush=True)
        started = time.perf_counter()
        warm_up()
        startup_s = time.perf_counter() - started
        print(f"Prefect local start-up: {startup_s:.1f}s", flush=True)
        started = time.perf_counter()
        summary = retrain(config("flow"))
        flow_s = time.perf_counter() - started
        print(
            f"retrain flow: {flow_s:.1f}s (+{startup_s:.1f}s start-up), test accuracy {summary['metrics'].get('test_accuracy')}",
            flush=True,
        )
    write_results(
        "overhead",
        {"rows": args.rows, "augment": False, "distill": False},
        {
            "flow_vs_plain": comparison(plain_s, flow_s, "s", higher_is_better=False),
            "flow_with_startup_vs_plain": comparison(plain_s, flow_s + startup_s, "s", higher_is_better=False),
            "startup": comparison(None, startup_s, "s", higher_is_better=False),
        },
    )


if __name__ == "__main__":
    main()
