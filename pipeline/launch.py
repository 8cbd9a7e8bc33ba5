"""Runs launched by ``trader …`` belong to the job of the code location (issue 14, item 2).

The Dagster UI lists a run under a job (the job's page, the Overview timeline, the asset views) by the run's
*remote origin*: the ``.dagster/repository`` tag ``<repository>@<location>`` that Dagster derives from
``DagsterRun.remote_job_origin`` when the run is created (``DagsterRun.tags_for_storage``), plus the
``dagster/code_location`` tag. A run the UI launches gets it from the workspace (``RemoteJob.get_remote_origin()``);
``JobDefinition.execute_in_process`` creates its run without one, so CLI runs were invisible in those views.

:func:`workspace_origins` builds, without starting a code server, the same origins the UI gives a run of the job:
the code-location origin parsed from ``workspace.yaml`` exactly as ``dagster dev -w workspace.yaml`` (run from the
repository root by ``trader ui``) parses it, repository ``__repository__`` (a ``Definitions`` object), and the
job's Python origin (module ``pipeline.definitions``, attribute ``defs``). :func:`runs_created_with_origin` makes
the instance attach them to the run that ``execute_in_process`` creates, so the execution itself (in this process,
interruptible, with the CLI's resources) is unchanged.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import dagster as dg
import yaml

from pipeline.config import REPO_ROOT

WORKSPACE_FILE = "workspace.yaml"  # relative to the repository root, as `trader ui` passes it to `dagster dev`
DEFS_ATTRIBUTE = "defs"  # the Definitions object of the module named in workspace.yaml


def workspace_origins(job_name: str):
    """``(RemoteJobOrigin, JobPythonOrigin)`` of ``job_name`` in the single code location of ``workspace.yaml``.

    Raises:
        ValueError: the workspace does not declare exactly one Python-module code location.
    """
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
    from dagster._core.origin import DEFAULT_DAGSTER_ENTRY_POINT, JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.workspace.load import location_origins_from_config

    config = yaml.safe_load((REPO_ROOT / WORKSPACE_FILE).read_text())
    origins = list(location_origins_from_config(config, WORKSPACE_FILE).values())
    target = getattr(origins[0], "loadable_target_origin", None) if len(origins) == 1 else None
    if target is None or not target.module_name:
        raise ValueError(f"{WORKSPACE_FILE} must declare one python_module code location, got {origins}")
    remote = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=origins[0], repository_name=SINGLETON_REPOSITORY_NAME
        ),
        job_name=job_name,
    )
    code = JobPythonOrigin(
        job_name=job_name,
        repository_origin=RepositoryPythonOrigin(
            executable_path=target.executable_path or sys.executable,
            code_pointer=ModuleCodePointer(target.module_name, DEFS_ATTRIBUTE, target.working_directory),
            entry_point=DEFAULT_DAGSTER_ENTRY_POINT,
            container_context={},
        ),
    )
    return remote, code


@contextmanager
def runs_created_with_origin(instance: dg.DagsterInstance, job_name: str) -> Iterator[None]:
    """Inside this block, runs of ``job_name`` created on ``instance`` (e.g. by ``execute_in_process``) carry the
    code location's origins (:func:`workspace_origins`); the instance is restored afterwards."""
    remote, code = workspace_origins(job_name)
    create = instance.create_run_for_job

    def create_with_origin(job_def, *args, **kwargs):
        if job_def.name == job_name:
            kwargs.setdefault("remote_job_origin", remote)
            kwargs.setdefault("job_code_origin", code)
        return create(job_def, *args, **kwargs)

    instance.create_run_for_job = create_with_origin  # an attribute of this instance object only
    try:
        yield
    finally:
        del instance.create_run_for_job
