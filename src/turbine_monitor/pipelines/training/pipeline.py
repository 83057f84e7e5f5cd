"""Training pipeline, for one farm (`--params farm=<farm_id>`): window -> normal
operation -> time split -> fit (model, IEC baseline, calibration) -> holdout evaluation
-> challenger vs the farm's champion. The release is registered as a version of the
farm's model (and promoted, if so decided) by the project's ModelRegistryHooks.

The training plan lists the farms whose retraining gate is open, for a round of the
fleet (`kedro run-fleet`, the Prefect training flow)."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import (
    decide_promotion,
    fit_power_model,
    flag_normal_operation,
    plan_training,
    plot_training_figures,
    predict_holdout,
    select_farm,
    select_training_window,
    split_by_time,
    summarise_holdout,
)


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(select_farm, ["fleet", "farm_assets", "params:farm"], "training_farm",
                 name="select_farm"),
            node(select_training_window, ["scada@history", "training_farm", "current_champions",
                                          "params:training"],
                 "training_window", name="select_training_window"),
            node(flag_normal_operation, ["training_window", "training_farm", "params:training"],
                 "flagged_window", name="flag_normal_operation"),
            node(split_by_time, ["flagged_window", "params:training"], "split_window",
                 name="split_by_time"),
            node(fit_power_model, ["split_window", "training_farm", "params:training"], "power_model",
                 name="fit_power_model", tags=["model_fit"]),
            node(predict_holdout, ["power_model", "split_window"], "holdout_predictions",
                 name="predict_holdout"),
            node(summarise_holdout, "holdout_predictions", "holdout_metrics", name="summarise_holdout"),
            node(plot_training_figures, ["power_model", "split_window", "holdout_predictions"],
                 ["power_curves_figure", "residual_distribution_figure", "residuals_over_time_figure"],
                 name="plot_training_figures"),
            node(decide_promotion, ["power_model", "current_champions", "split_window", "holdout_predictions",
                                    "training_farm"],
                 ["champions@release", "promotion_metrics"], name="decide_promotion"),
        ]
    )


def create_plan_pipeline(**kwargs) -> Pipeline:
    return pipeline([
        node(plan_training, ["newest_records", "current_champions", "params:training"], "farms_to_train",
             name="plan_training"),
    ])
