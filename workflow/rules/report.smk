# Aggregate every cell with pandas, then render the self-contained HTML report with Altair.


localrules:
    aggregate,
    report,


rule aggregate:
    input:
        metrics=every_cell("metrics"),
        epochs=every_cell("epochs"),
        losses=every_cell("losses"),
        probes=every_cell("probes"),
        choice=equal_updates_choice,
        # the gradient at shared weights, where the study measures it
        gradient=gradient_tables(),
        # committed reruns of this study (report.reruns), compared with it
        rerun_analyses=[f"{d}/analysis.json" for d in study.rerun_folders(config)],
        rerun_best=[f"{d}/best_lr.csv" for d in study.rerun_folders(config)],
        code=code("aggregate.py"),
    output:
        **summary_outputs(),
    log:
        "logs/aggregate.log",
    conda:
        "../../envs/batchlab.yaml"
    params:
        # the study's design (which cell plays which role) and the report's knobs the tables
        # need, not the runtime knobs
        **study.aggregate_params(config),
    script:
        "../scripts/aggregate.py"


rule report:
    input:
        **summary_inputs(),
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
