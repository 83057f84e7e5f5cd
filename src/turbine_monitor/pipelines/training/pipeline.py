"""Training pipeline: window -> normal operation -> time split -> fit (model, IEC
baseline, calibration) -> holdout evaluation -> challenger vs champion. The release is
registered (and promoted, if so decided) by the project's ModelRegistryHooks."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import (
    decide_promotion,
    fit_power_model,
    flag_normal_operation,
    plot_training_figures,
    predict_holdout,
    select_training_window,
    split_by_time,
    summarise_holdout,
)


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(select_training_window, ["scada@history", "current_champion", "params:training"],
                 "training_window", name="select_training_window"),
            node(flag_normal_operation, ["training_window", "asset_table", "params:training"],
                 "flagged_window", name="flag_normal_operation"),
            node(split_by_time, ["flagged_window", "params:training"], "split_window",
                 name="split_by_time"),
            node(fit_power_model, ["split_window", "asset_table", "params:training"], "power_model",
                 name="fit_power_model", tags=["model_fit"]),
            node(predict_holdout, ["power_model", "split_window"], "holdout_predictions",
                 name="predict_holdout"),
            node(summarise_holdout, "holdout_predictions", "holdout_metrics", name="summarise_holdout"),
            node(plot_training_figures, ["power_model", "split_window", "holdout_predictions"],
                 ["power_curves_figure", "residual_distribution_figure", "residuals_over_time_figure"],
                 name="plot_training_figures"),
            node(decide_promotion, ["power_model", "current_champion", "split_window", "holdout_predictions"],
                 ["champion_model@release", "promotion_metrics"], name="decide_promotion"),
        ]
    )
