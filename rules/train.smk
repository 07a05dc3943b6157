rule train:
    input:
        train=DATA["train"],
        test=DATA["test"],
        meta=META,
        subset=lambda w: subset_path(RUNS[w.run]),
    output:
        **analysed_epoch_outputs(),
        run_json=f"{R}/runs/{{run}}/run.json",
        metrics=f"{R}/runs/{{run}}/metrics.jsonl",
        init=f"{R}/runs/{{run}}/checkpoints/init.pt",
        warmup=f"{R}/runs/{{run}}/checkpoints/warmup.pt",
        last=f"{R}/runs/{{run}}/checkpoints/last.pt",
    log:
        f"{R}/logs/train/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{run}}.tsv"
    conda:
        "../envs/vitwork.yaml"
    threads: STUDY["threads"]
    resources:
        gpu=1,
    params:
        spec=lambda w: RUNS[w.run],
        run_dir=lambda w: run_dir(w.run),
        device=STUDY["device"],
    script:
        "../workflow/scripts/train.py"
