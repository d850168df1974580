# Large batches given as many updates as a small one (Hoffer et al. 2017): after the grid, a
# checkpoint picks each such batch size's lr on validation; its long run is then one more cell.


localrules:
    select_lr,


checkpoint select_lr:
    input:
        metrics=[
            cell_output("metrics", c)
            for run in study.equal_updates_plan(config)
            for c in study.grid_cells_at(config, run.batch_size)
        ],
        code=code("select_lr.py"),
    output:
        choice="results/summary/equal_updates.json",
    log:
        "logs/select_lr.log",
    conda:
        "../../envs/batchlab.yaml"
    params:
        batch_sizes=[run.batch_size for run in study.equal_updates_plan(config)],
    script:
        "../scripts/select_lr.py"


def equal_updates_choice(wildcards=None):
    """The checkpoint's output, once the grid cells it reads are done (a study without
    equal-updates runs writes an empty choice, so the file DVC tracks always exists)."""
    return [checkpoints.select_lr.get().output.choice]


def equal_updates_outputs(name):
    """One training output of every equal-updates cell, at the lr the checkpoint chose."""

    def outputs(wildcards):
        paths = equal_updates_choice()
        if not paths:
            return []
        with open(paths[0]) as f:
            chosen = json.load(f)["chosen"]
        return [cell_output(name, c) for c in study.equal_updates_cells(config, chosen)]

    return outputs
