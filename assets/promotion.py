"""The promotion pair of a registered model: an evaluation asset with the blocking ``promotion_gate`` check and the
``@champion`` asset that moves the alias only when that check passed. Used by the baseline and the setup meta-model."""

import json
from typing import Callable

import dagster as dg
import pandas as pd

from assets.common import POOL, md_table, rounded
from assets.keys import PROMOTION_GATE
from models.evaluation import decide
from models.trainers import ModelConfig
from pipeline.config import TraderConfig, settings
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import readers, runs


def reconcile_champion(con, mlflow: MlflowTracking, name: str):
    """The ``ModelVersion`` behind ``name@champion`` (or None), after making ``ml.model_runs.promoted`` agree with it
    (:func:`warehouse.runs.sync_promoted`): the registry alias is the truth, so a crash between moving the alias and
    writing the flag (either order) is repaired by the next step that calls this (issue 13, item 2). The store's
    experiments get their UI tags here too (:meth:`MlflowTracking.describe_experiments`), so an old store is repaired
    by the next run even when nothing is retrained."""
    mlflow.describe_experiments()
    current = mlflow.champion(name)
    runs.sync_promoted(con, name, None if current is None else str(current.version))
    return current


def _latest_run(con, name: str) -> pd.Series:
    r = readers.latest_run(con, name)
    if r is None:
        raise dg.Failure(f"no trained version of {name} in ml.model_runs; materialise its training asset first")
    return r


def _check_metadata(scores: dict, reasons: list[str], version, classifier: bool) -> dict:
    """The gate check's metadata: the reasons, the version and its figures (AUC / ECE / Brier of a classifier's
    calibrated scores, else every numeric figure the rule read)."""
    if classifier:
        figures = {
            "auc_cal": scores.get("auc"),
            "ece_cal": scores.get("ece"),
            "brier_cal": scores.get("brier"),
            "brier_base": scores.get("brier_base"),
        }
    else:
        figures = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    return rounded({"reasons": "\n".join(reasons), "model_version": str(version), **figures})


def promotion_assets(
    train_key: dg.AssetKey,
    evaluation_key: dg.AssetKey,
    champion_key: dg.AssetKey,
    group: str,
    section: Callable[[TraderConfig], ModelConfig],
    what: str,
    code_version: str,
    priority: int = 0,
    rule: Callable[[dict, object, dict | None], tuple[bool, list[str]]] | None = None,
    gate_description: str | None = None,
) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """The evaluation asset (blocking ``promotion_gate`` check) and the ``@champion`` asset of one registered model.

    The training asset records each version in ``ml.model_runs`` (``metrics`` JSON with ``cal`` scores). The
    model's configuration is ``section(settings())`` (its ``name`` and ``promotion`` criteria), read at the top of each
    body. The evaluation applies the criteria (``models.evaluation.decide``) to the latest version's out-of-sample calibrated
    scores and compares its Brier with the current champion's; the champion asset runs only when that blocking
    check passed (Dagster skips it otherwise), so a worse model is logged and registered but never served.

    ``rule``: another verdict ``rule(scores, section.promotion, champion_scores) -> (passed, reasons)`` on the same
    stored ``cal`` figures (the alpha models' rank-IC gate, :func:`models.alpha.gate`); the check then shows every
    numeric figure of ``scores``. ``gate_description``: the check's description with such a rule.
    """
    verdict_rule = rule or decide

    @dg.asset(
        key=evaluation_key,
        group_name=group,
        pool=POOL,
        deps=[train_key],
        kinds={"mlflow"},
        code_version=code_version,
        op_tags={"dagster/priority": str(priority)},
        check_specs=[
            dg.AssetCheckSpec(
                PROMOTION_GATE,
                asset=evaluation_key,
                blocking=True,
                description=gate_description
                or "OOS calibrated AUC / ECE / rows and Brier below the base rate meet the "
                "promotion criteria, and Brier is not worse than the current @champion.",
            )
        ],
        description=f"Applies the promotion criteria (data in trader.yaml, rules in models/evaluation.py) to the latest "
        f"{what} version's out-of-sample calibrated scores. Only the champion alias is downstream, so a failed "
        f"gate blocks promotion and nothing else.",
    )
    def _evaluation(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowTracking
    ) -> dg.MaterializeResult:
        m = section(settings())
        name = m.name
        with warehouse.connect() as con:
            champ = reconcile_champion(con, mlflow, name)
            r = _latest_run(con, name)
            scores = json.loads(r.metrics)["cal"]
            champ_metrics = mlflow.champion_scores(name, unless_version=r.model_version)
            passed, reasons = verdict_rule(
                {k: (float("nan") if v is None else v) for k, v in scores.items()}, m.promotion, champ_metrics
            )
            runs.set_promotion_verdict(con, r.mlflow_run_id, passed, reasons)
        mlflow.set_verdict(name, r.model_version, r.mlflow_run_id, passed, reasons)
        verdict = pd.DataFrame({"rule": reasons})
        return dg.MaterializeResult(
            metadata={
                "model_version": r.model_version,
                "mlflow_run_id": r.mlflow_run_id,
                "verdict": "PASS" if passed else "FAIL",
                "rules": md_table(verdict),
                "champion_version": None if champ is None else str(champ.version),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=PROMOTION_GATE,
                    passed=passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata=_check_metadata(scores, reasons, r.model_version, rule is None),
                )
            ],
        )

    @dg.asset(
        key=champion_key,
        group_name=group,
        pool=POOL,
        deps=[evaluation_key],
        kinds={"mlflow"},
        code_version=code_version,
        op_tags={"dagster/priority": str(priority)},
        description=f"Moves the {what}'s @champion alias to the version just trained. Runs only when the blocking "
        f"promotion_gate check passed (Dagster skips it otherwise).",
    )
    def _champion(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowTracking
    ) -> dg.MaterializeResult:
        name = section(settings()).name
        with warehouse.connect() as con:
            r = _latest_run(con, name)
            if not bool(r.promotion_passed):  # defence in depth: the blocking check already stops this step
                raise dg.Failure(f"{name} v{r.model_version} failed the promotion gate; champion unchanged")
            current = reconcile_champion(con, mlflow, name)
            if current is not None and str(current.version) == str(r.model_version):
                return dg.MaterializeResult(
                    metadata=rounded(
                        {
                            "champion": f"models:/{name}@champion",
                            "version": r.model_version,
                            "status": "already champion",
                        }
                    )
                )
            mlflow.promote(name, r.model_version)  # the truth first; a crash before the next line is repaired by
            runs.sync_promoted(con, name, str(r.model_version))  # reconcile_champion on the next run
        return dg.MaterializeResult(
            metadata=rounded(
                {
                    "champion": f"models:/{name}@champion",
                    "version": r.model_version,
                    "previous": None if current is None else str(current.version),
                }
            )
        )

    return _evaluation, _champion
