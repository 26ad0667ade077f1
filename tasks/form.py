"""run-config: a deployment's run trains with the deployment's config and the run's form (textclf.form)."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from textclf.config import PipelineConfig
from textclf.form import RunForm, config_from_form


@task(name="run-config", cache_policy=NO_CACHE)
def run_config(form: RunForm) -> PipelineConfig:  # type: ignore[valid-type]
    """A form that breaks the config fails here in one line naming the field, before any work."""
    return config_from_form(form)
