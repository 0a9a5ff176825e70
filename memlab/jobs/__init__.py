"""The plumbing every job shares, one floor below :mod:`memlab.tasks` (which holds only what ``task=``
runs): the one training loop (``training``), subset models (``subset_training``), the ranking and
removal caches (``ranking_cache``, ``removal_results``, ``removal_record``), the candidate scores of the
validation studies (``candidate_scores``), config checks (``config_checks``), class resolution of custom
data (``data_classes``), failure records (``failed_jobs``) and the W&B run of a job (``wandb_job``).
Reads composed configs; imports nothing from :mod:`memlab.tasks`.
"""
