# Aggregate every cell with pandas, then render the self-contained HTML report with Altair.


localrules:
    aggregate,
    report,


rule aggregate:
    input:
        metrics=lambda w: cell_outputs("metrics") + equal_updates_outputs("metrics")(w),
        epochs=lambda w: cell_outputs("epochs") + equal_updates_outputs("epochs")(w),
        losses=lambda w: cell_outputs("losses") + equal_updates_outputs("losses")(w),
        probes=lambda w: cell_outputs("probes") + equal_updates_outputs("probes")(w),
        choice=equal_updates_choice,
        code=code("aggregate.py"),
    output:
        cells="results/summary/cells.parquet",
        cells_csv=report(
            "results/summary/cells.csv",
            caption="../report/cells.rst",
            category="Summary",
        ),
        settings="results/summary/settings.parquet",
        best_lr="results/summary/best_lr.parquet",
        best_lr_csv="results/summary/best_lr.csv",
        loss_curves_csv="results/summary/loss_curves.csv",
        epochs="results/summary/epochs.parquet",
        curves="results/summary/curves.parquet",
        bands="results/summary/bands.parquet",
        probes="results/summary/probes.parquet",
        targets="results/summary/targets.parquet",
        analysis="results/summary/analysis.json",
        metrics="results/summary/metrics.json",
    log:
        "logs/aggregate.log",
    conda:
        "../../envs/batchlab.yaml"
    params:
        # the study's design (which cell plays which role), not the runtime knobs
        study=design_config(config),
        smooth_samples=config["report"]["smooth_samples"],
        loss_target=config["report"]["loss_target"],
        target_val_acc=config["report"]["target_val_acc"],
        noise_smoothing_probes=config["report"]["noise_smoothing_probes"],
        max_points_per_curve=config["report"]["max_points_per_curve"],
    script:
        "../scripts/aggregate.py"


rule report:
    input:
        cells=rules.aggregate.output.cells,
        settings=rules.aggregate.output.settings,
        best_lr=rules.aggregate.output.best_lr,
        epochs=rules.aggregate.output.epochs,
        curves=rules.aggregate.output.curves,
        bands=rules.aggregate.output.bands,
        probes=rules.aggregate.output.probes,
        targets=rules.aggregate.output.targets,
        analysis=rules.aggregate.output.analysis,
        metrics=rules.aggregate.output.metrics,
        checksums=rules.fetch.output.checksums,
        code=code("report.py"),
    output:
        html=report(
            "results/report/index.html",
            caption="../report/study.rst",
            category="Report",
        ),
    log:
        "logs/report.log",
    conda:
        "../../envs/batchlab.yaml"
    params:
        config=config,
        schema=SCHEMA_PATH,
    script:
        "../scripts/report.py"
