# batchlab: what batch size and learning rate do to training, on MNIST.
# A table of contents: the rules live in workflow/rules/, the logic in workflow/scripts/batchlab/.


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/equal_updates.smk"
include: "workflow/rules/gradient.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        report_targets(),


onstart:
    write_study_manifest()


onerror:
    name_failed_jobs(log)
