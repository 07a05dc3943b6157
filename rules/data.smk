rule prepare_data:
    output:
        train=DATA["train"],
        test=DATA["test"],
        meta=META,
    log:
        f"{R}/logs/prepare_data.log",
    benchmark:
        f"{R}/benchmarks/prepare_data.tsv"
    conda:
        "../envs/vitwork.yaml"
    params:
        dataset=STUDY["dataset"],
    script:
        "../workflow/scripts/prepare_data.py"


rule subsample:
    input:
        train=DATA["train"],
    output:
        f"{R}/data/subsets/f{{fraction}}_s{{seed}}.npy",
    log:
        f"{R}/logs/subsample/f{{fraction}}_s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/subsample/f{{fraction}}_s{{seed}}.tsv"
    conda:
        "../envs/vitwork.yaml"
    params:
        fraction=lambda w: float(w.fraction),
        seed=lambda w: int(w.seed),
    script:
        "../workflow/scripts/subsample.py"
