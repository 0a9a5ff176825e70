"""The analyses behind the paper's studies: plain functions on files and DataFrames.

    ranking        the one order by memorization (ties: smaller sample_index first), load_scores
    diagnostics    is the score more than the loss? rank agreement, zero fractions, λ vs. the spectrum
    removal_selection  Fig. 1: which instances a removal job drops, and the sweep's summary
    removal_stats  Fig. 1's paired differences to random-removed, intervals and power
    typicality     Table 1, Fig. 4, Appendix D: positive-phrase fraction of SST sentences
    stability      Table 5: Spearman between score rankings
    feldman_zhang  the subsampling memorization estimator of Feldman & Zhang (2020)
    validation     each score's Spearman with that reference, against its reliability ceiling
    estimator_choice  which estimator: the leader, the ones tied with it, the cheapest; across data sets
    label_noise    the label-error benchmark: seeded flips, AUROC / AP / precision, cleanlab

No Hydra, no Lightning, no figures here: numpy, pandas and scipy (scikit-learn and cleanlab where
label_noise uses them). The Hydra tasks that run a study live in :mod:`memlab.tasks`; the figures,
Markdown / HTML tables and the sweep report that show a study's results live in :mod:`memlab.report`;
files are written with :mod:`memlab.utils.io` (atomic).
"""
