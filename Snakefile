# vitwork: "How Do Vision Transformers Work?" as a workflow.
#   snakemake --cores 2 --configfile presets/demo.yaml   (the demo study, CPU, minutes)
#   snakemake --profile slurm                             (the paper-scale study of config.yaml; see README)
from snakemake.utils import min_version

min_version("9.0")


if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/analysis.smk"
include: "rules/figures.smk"
include: "rules/claims.smk"


report: "report/workflow.rst"


onstart:
    start_job_server()


onsuccess:
    stop_job_server()


onerror:
    stop_job_server()


rule all:
    default_target: True
    input:
        all_targets(),
        rules.claims.output,
