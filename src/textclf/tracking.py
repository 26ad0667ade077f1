"""MLflow runs and metric sinks (the lowest layer: imports no registry). One MLflow run per pipeline run;
other code gets its `TrackedRun` handle."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mlflow.entities import Metric, Param, RunTag
from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
    MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_TIMEOUT,
    MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER,
)
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from textclf.config import MlflowTarget

log = logging.getLogger(__name__)


class MetricSink(Protocol):
    """Where training metrics go; only rank 0 ever holds a real one. `close()` once, when training ends."""

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class NullSink:
    def log(self, metrics: dict[str, float], step: int) -> None:
        return None

    def close(self) -> None:
        return None


class JsonlSink:
    """Append-only metrics file in the run folder (the loss curve survives any tracking outage)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")

    def close(self) -> None:
        return None


FLUSH_WAIT_S = 60.0  # at the end of training, how long to wait for a tracking server that is down
MAX_BUFFERED_POINTS = 100_000  # metric points held back during an outage (~20 MB); the oldest go first
_BATCH = 1000  # MLflow's limit of metrics per log_batch request
# Inside the sink MLflow's HTTP client gives up fast (its defaults: 7 retries with exponential backoff and a 120 s
# timeout, i.e. minutes of a blocked training step per call); the sink buffers and retries on its own schedule.
# One retry covers a pooled connection that a restarted server closed. Set only around the sink's own requests.
_SINK_HTTP = (
    (MLFLOW_HTTP_REQUEST_MAX_RETRIES, 1),
    (MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, 1),
    (MLFLOW_HTTP_REQUEST_BACKOFF_JITTER, 0.0),
    (MLFLOW_HTTP_REQUEST_TIMEOUT, 5),
    (MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER, False),  # a 429's Retry-After would block training
)
_RETRY_FIRST_S, _RETRY_MAX_S = 1.0, 30.0  # while down: retry on a log call at most this often (doubling)


@contextmanager
def _sink_http_settings() -> Iterator[None]:
    saved = [(var, var.get_raw()) for var, _ in _SINK_HTTP]
    for var, value in _SINK_HTTP:
        var.set(value)
    try:
        yield
    finally:
        for var, raw in saved:
            if raw is None:
                var.unset()
            else:
                var.set(raw)


def _server_refused(exc: Exception) -> bool:
    """The server answered and will not take these points (4xx but 429); anything else is an outage."""
    if not isinstance(exc, MlflowException):
        return False
    status = exc.get_http_status_code()
    return 400 <= status < 500 and status != 429


def _short(exc: Exception, limit: int = 240) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else "..." + text[-limit:]


class MlflowSink:
    """Metrics into an existing MLflow run, by id; a tracking-server outage never stops training.

    Every point goes through an in-order buffer (bounded: `max_buffered`, the oldest dropped first). While the
    server is unreachable (connection error, timeout, 5xx, 429) the points wait there and go, in order and with
    their own step and time, on a later log call (at most one attempt per 1..30 s, doubling) and at `close()`,
    which waits up to `wait_s` for the server. One warning line when buffering starts, one when it is over, and
    one at `close()` for points that could not be sent (all of them are in `kept_in`, the run's metrics.jsonl).
    """

    def __init__(
        self,
        tracking_uri: str,
        run_id: str,
        kept_in: Path | None = None,
        wait_s: float = FLUSH_WAIT_S,
        max_buffered: int = MAX_BUFFERED_POINTS,
    ):
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.uri = tracking_uri
        self.run_id = run_id
        self.kept_in = kept_in
        self.wait_s = wait_s
        self.buffer: deque[Metric] = deque()
        self.max_buffered = max_buffered
        self.dropped = 0  # pushed out of a full buffer: never sent
        self.refused = 0  # the server answered 4xx for them: never sent
        self._down_since: int | None = None  # the first step held back by the current outage
        self._sent_late = 0  # points held back by the current outage and sent since
        self._retry_s = _RETRY_FIRST_S
        self._next_try = 0.0
        self._warned_refusal = False

    @property
    def pending(self) -> int:
        """Metric points held back, waiting for the server."""
        return len(self.buffer)

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if len(self.buffer) >= self.max_buffered:
                self.buffer.popleft()
                self.dropped += 1
            self.buffer.append(Metric(key=key, value=float(value), timestamp=now, step=step))
        if self._down_since is None or time.monotonic() >= self._next_try:
            self.flush()

    def flush(self) -> bool:
        """Send what is buffered, oldest first; False when the server is down (the rest stays buffered)."""
        while self.buffer:
            batch = [self.buffer[i] for i in range(min(_BATCH, len(self.buffer)))]
            try:
                with _sink_http_settings():
                    self.client.log_batch(self.run_id, metrics=batch)
            except (MlflowException, OSError, ValueError) as exc:  # OSError: requests' errors; ValueError: not JSON
                if not _server_refused(exc):
                    self._went_down(exc, batch[0].step)
                    return False
                self._refused(exc, len(batch))
            for _ in batch:
                self.buffer.popleft()
            if self._down_since is not None:
                self._sent_late += len(batch)
        if self._down_since is not None:
            log.warning(
                "[tracking] MLflow server %s is back: sent the %d metric points held back since step %d",
                self.uri,
                self._sent_late,
                self._down_since,
            )
            self._down_since, self._retry_s, self._sent_late = None, _RETRY_FIRST_S, 0
        return True

    def close(self) -> None:
        """Send what is buffered, waiting up to `wait_s` for the server; warn about what could not be sent."""
        deadline = time.monotonic() + self.wait_s
        if not self.flush() and self.wait_s > 0:
            log.warning(
                "[tracking] training done; waiting up to %.0f s for MLflow server %s to take %d buffered metric points",
                self.wait_s,
                self.uri,
                self.pending,
            )
            while not self.flush() and time.monotonic() < deadline:
                time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        causes = {
            f"held back, the server still unreachable after {self.wait_s:.0f} s": self.pending,
            "dropped from the full buffer": self.dropped,
            "refused by the server": self.refused,
        }
        lost = sum(causes.values())
        if lost:
            why = ", ".join(f"{n} {why}" for why, n in causes.items() if n)
            where = f"; they are in {self.kept_in}" if self.kept_in else ""
            log.warning(
                "[tracking] %d metric points were not sent to MLflow run %s at %s (%s)%s", lost, self.run_id, self.uri, why, where
            )
        self.buffer.clear()

    def _went_down(self, exc: Exception, step: int) -> None:
        if self._down_since is None:
            self._down_since = step
            kept = f" (they are also in {self.kept_in})" if self.kept_in else ""
            log.warning(
                "[tracking] MLflow server %s unreachable (%s): buffering metrics from step %d on and retrying%s",
                self.uri,
                _short(exc),
                step,
                kept,
            )
        else:
            self._retry_s = min(_RETRY_MAX_S, self._retry_s * 2)
        self._next_try = time.monotonic() + self._retry_s

    def _refused(self, exc: Exception, points: int) -> None:
        self.refused += points
        if not self._warned_refusal:
            self._warned_refusal = True
            log.warning(
                "[tracking] MLflow server %s refused %d metric points (%s); not retrying them", self.uri, points, _short(exc)
            )


class FanoutSink:
    def __init__(self, *sinks: MetricSink):
        self.sinks = sinks

    def log(self, metrics: dict[str, float], step: int) -> None:
        for sink in self.sinks:
            sink.log(metrics, step)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def client_for(target: MlflowTarget) -> MlflowClient:
    return MlflowClient(tracking_uri=target.uri, registry_uri=target.uri)


def ensure_experiment(client: MlflowClient, target: MlflowTarget) -> str:
    found = client.get_experiment_by_name(target.experiment)
    if found is not None:
        return found.experiment_id
    if target.uri.startswith("sqlite:///"):
        Path(target.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(target.experiment, artifact_location=target.artifact_root)


def ui_base(uri: str) -> str | None:
    """The MLflow UI behind an http(s) tracking URI; None for a local store."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None


def git_state(cwd: Path | None = None) -> dict[str, str]:
    """Commit and dirty flag of the code that runs, or 'unknown' outside a git checkout."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {"git.commit": commit, "git.dirty": str(bool(dirty)).lower()}


FAILURE_TAG = "failure.reason"


def failure_reason(error: BaseException) -> str:
    """One line for a failed run: `DataError: ...` (the first line of the message, at most 500 characters)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else '(no message)'}"[:500]


@dataclass(frozen=True)
class TrackedRun:
    """A handle on one MLflow run: small and picklable, so tasks hand it on instead of a config + id."""

    uri: str
    run_id: str
    experiment_id: str

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        if metrics:  # straight to the server: a failure raises (the task retries), unlike the training sink
            now = int(time.time() * 1000)
            batch = [Metric(key=k, value=float(v), timestamp=now, step=step) for k, v in metrics.items()]
            self.client().log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, str]) -> None:
        if tags:
            self.client().log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_artifacts(self, local: Path, artifact_path: str | None = None) -> None:
        if Path(local).is_dir():
            self.client().log_artifacts(self.run_id, str(local), artifact_path)
        else:
            self.client().log_artifact(self.run_id, str(local), artifact_path)

    def tags(self) -> dict[str, str]:
        return dict(self.client().get_run(self.run_id).data.tags)

    def end(self, status: str = "FINISHED") -> None:
        self.client().set_terminated(self.run_id, status=status)

    def fail(self, error: BaseException) -> None:
        """End the run FAILED with the reason as tag `failure.reason`: the error's type and first line."""
        self.set_tags({FAILURE_TAG: failure_reason(error)})
        self.end("FAILED")

    @property
    def url(self) -> str | None:
        """The run's page in the MLflow UI of a tracking server; None for a local store."""
        base = ui_base(self.uri)
        return f"{base}/#/experiments/{self.experiment_id}/runs/{self.run_id}" if base else None

    def link(self) -> str:
        """A clickable link for a tracking server, else where to find the run in `make mlflow-ui`."""
        if self.url:
            return f"[{self.run_id}]({self.url})"
        return (
            f"`{self.run_id}` (open http://127.0.0.1:5000/#/experiments/{self.experiment_id}/runs/{self.run_id} "
            f"after `make mlflow-ui`; store {self.uri})"
        )


def start_run(
    target: MlflowTarget,
    params: dict[str, str],
    documents: dict[str, str],
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> TrackedRun:
    """Create a run with `params` (e.g. the whole config, flattened) and text `documents` (name -> text)."""
    client = client_for(target)
    experiment_id = ensure_experiment(client, target)
    run = client.create_run(experiment_id, run_name=run_name, tags={**git_state(), **(tags or {})})
    batch = [Param(k, v[:6000]) for k, v in sorted(params.items())]
    for start in range(0, len(batch), 100):
        client.log_batch(run.info.run_id, params=batch[start : start + 100])
    for name, text in documents.items():
        client.log_text(run.info.run_id, text, name)
    return TrackedRun(target.uri, run.info.run_id, experiment_id)


def run_of(target: MlflowTarget, run_id: str) -> TrackedRun:
    """The handle of an existing run (e.g. `--mlflow-run-id` on the command line)."""
    return TrackedRun(target.uri, run_id, client_for(target).get_run(run_id).info.experiment_id)
