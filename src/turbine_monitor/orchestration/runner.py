"""A Kedro runner that runs each node as a Prefect task run, inside a Prefect flow run."""

from __future__ import annotations

import queue
from collections import Counter
from itertools import chain
from typing import Any

from kedro.io import CatalogProtocol
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from kedro.runner import AbstractRunner
from kedro.runner.task import Task
from pluggy import PluginManager
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture

from turbine_monitor.values import Partitions


@task(cache_policy=NO_CACHE, persist_result=False)
def run_node(node: Node, catalog: CatalogProtocol, hook_manager: PluginManager, run_id: str | None,
             partition_parallelism: int) -> None:
    """Run one Kedro node the way Kedro's own runners do: load its inputs, call it, save
    its outputs, with the node and dataset hooks (kedro-mlflow's among them) firing. An
    output of `values.Partitions` is saved one task run per partition."""
    partitioned = PartitionTaskRuns(catalog, node.name, partition_parallelism)
    Task(node=node, catalog=partitioned, is_async=False, hook_manager=hook_manager, run_id=run_id).execute()


@task(cache_policy=NO_CACHE, persist_result=False)
def save_partition(catalog: CatalogProtocol, name: str, partitions: Partitions) -> list[dict[str, Any]]:
    """Produce and save one partition of a node's output; returns what was saved."""
    catalog.save(name, partitions)
    return partitions.saved


class PartitionTaskRuns:
    """The catalog as a node's task run uses it: `values.Partitions` are saved one
    `save_partition` task run per partition (named `<node> [<partition>]`), at most
    `parallelism` at once. Everything else is the catalog's."""

    def __init__(self, catalog: CatalogProtocol, node_name: str, parallelism: int):
        self._catalog, self._node_name, self._parallelism = catalog, node_name, max(1, parallelism)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._catalog, name)

    def save(self, name: str, data: Any) -> None:
        if not isinstance(data, Partitions):
            self._catalog.save(name, data)
            return
        pending, running, errors = list(data.values()), 0, []
        finished: queue.Queue[PrefectFuture] = queue.Queue()
        while pending or running:
            while pending and running < self._parallelism:
                partition = pending.pop(0)
                task_run = save_partition.with_options(task_run_name=f"{self._node_name} [{partition.name}]")
                future = task_run.submit(self._catalog, name, Partitions({partition.name: partition}))
                future.add_done_callback(finished.put)
                running += 1
            done = finished.get()
            running -= 1
            try:
                data.saved.extend(done.result())
            except Exception as error:  # noqa: BLE001 - the other partitions' saves go on first
                errors.append(error)
        if errors:
            raise errors[0]


class PrefectTaskRunner(AbstractRunner):
    """Runs every node of a Kedro pipeline as a Prefect task run named after the node,
    on the flow run's task runner (a thread pool by default). A node is submitted as
    soon as the nodes it depends on have finished, so independent nodes run at once.

    Retries and timeouts come from `tasks`, as in `conf/base/prefect.yml`::

        default: {retries: 0}
        by_tag: {io: {retries: 2, retry_delay_seconds: 1}, model_fit: {timeout_seconds: 1800}}

    A node gets the `default` options updated with those of each of its tags listed
    under `by_tag`; the keys are `prefect.Task.with_options` arguments.
    """

    def __init__(self, tasks: dict[str, Any] | None = None, partition_parallelism: int = 1):
        # Data is loaded and saved in the node's own thread: kedro-mlflow's datasets
        # need the MLflow run that its hook reopens in that thread.
        super().__init__(is_async=False)
        self._tasks = tasks or {}
        self._partition_parallelism = partition_parallelism

    def task_options(self, node: Node) -> dict[str, Any]:
        """The Prefect task options for `node`: defaults, then its tags' overrides."""
        options = dict(self._tasks.get("default") or {})
        for tag, overrides in (self._tasks.get("by_tag") or {}).items():
            if tag in node.tags:
                options.update(overrides)
        return {**options, "name": node.name, "task_run_name": node.name}

    def _get_executor(self, max_workers: int) -> None:
        return None  # Prefect's task runner runs the nodes

    def _run(self, pipeline: Pipeline, catalog: CatalogProtocol, hook_manager: PluginManager | None = None,
             run_id: str | None = None) -> None:
        """Submit every node whose dependencies are done, wait for any one to finish,
        repeat. The first failure (after the node's retries) stops submitting; the
        nodes still running are waited for, then the error is raised."""
        if FlowRunContext.get() is None:
            raise RuntimeError("PrefectTaskRunner runs nodes as Prefect task runs: use it inside a Prefect "
                               "flow run.")
        load_counts = Counter(chain.from_iterable(n.inputs for n in pipeline.nodes))
        dependencies = pipeline.node_dependencies
        todo, done = set(pipeline.nodes), set()
        running: dict[PrefectFuture, Node] = {}
        finished: queue.Queue[PrefectFuture] = queue.Queue()
        while todo or running:
            for node in [n for n in todo if dependencies[n] <= done]:
                todo.remove(node)
                future = run_node.with_options(**self.task_options(node)).submit(
                    node, catalog, hook_manager, run_id, self._partition_parallelism)
                running[future] = node
                future.add_done_callback(finished.put)
            future = finished.get()
            node = running.pop(future)
            try:
                future.result()
            except Exception:
                for other in running:
                    other.wait()
                self._suggest_resume_scenario(pipeline, done, catalog)
                raise
            done.add(node)
            self._logger.info("Completed node %s (%d of %d).", node.name, len(done), len(pipeline.nodes))
            self._release_datasets(node, catalog, load_counts, pipeline)
