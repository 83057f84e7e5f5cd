"""Project hooks."""

from kedro.framework.hooks import hook_impl


class ForgetFinishedMlflowRun:
    """kedro-mlflow's hook is one object per process and keeps the id of the last run it
    opened; when a later session in the same process runs a pipeline whose tracking is
    disabled (ingestion, inference), it reopens that finished run before every node and
    leaves it active. Clearing the id before each pipeline run keeps sessions apart
    (tests, notebooks, any long-lived process)."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self) -> None:
        # Imported here, not at module level: settings.py imports this module, and
        # scripts that only read configuration should not pay for importing MLflow.
        from kedro_mlflow.framework.hooks.mlflow_hook import mlflow_hook

        mlflow_hook.run_id = None
