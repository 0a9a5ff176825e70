"""What a person reads: figures, Markdown / HTML tables and the sweep report, drawn from the numbers
of :mod:`memlab.studies` and the files a run wrote. Files are written atomically
(:mod:`memlab.utils.io`; figures through :func:`memlab.report.figures.save_figure`).

    figures        new_figure (Agg canvas, no pyplot state), save_figure
    plots          score vs. loss, disagreements, reduction rate (Fig. 2), Tables 2-4
    image_figures  memorized images: top/bottom grid per class, attribution heat maps (Fig. 3)
    removal_report the removal sweep's report: summary/stats CSVs, removal_report.md, removal.png (Fig. 1), W&B
    study_figures  typicality (Fig. 4), stability (Table 5), validation, label-noise figures
    wandb_run      what a job's W&B run holds (scores table, histogram, figures, HTML), a sweep's group
    cli            python -m memlab.report RUN_OR_SWEEP_DIR (re-make a run's or a sweep's report); paper, archive
    paper_command  python -m memlab.report paper DIR...: docs/paper_vs_memlab.md (paper_numbers, run_dirs,
                   run_results, paper_rows, agreement, paper_markdown)
    archive        python -m memlab.report archive RUNDIR... --to docs/results/NAME: the small result files
    estimators     python -m memlab.report estimators DIR...: docs/estimators.md + .png, which estimator to use
                   (estimator_runs, estimators_markdown, estimators_figure; the verdict: studies.estimator_choice)
"""
