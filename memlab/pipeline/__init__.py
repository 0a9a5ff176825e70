"""Data-aware drivers over :mod:`memlab.influence`: they take a trained module and its batches, run the
maths over a whole training set (chunked, resumable, sharded across ranks) and return tables and
records. No Lightning, no Hydra: the callbacks in :mod:`memlab.callbacks` wrap them.

    scoring      score_training_set: every training instance's memorization score -> scores.csv's table
    attributing  attribute_text / attribute_images / text_reduction_rate / image_reduction_rate for the top
                 memorized instances

How names tell the layer (one concept, one name per layer):

    layer                  memorization scores (Eq. 2)          attribution (Eq. 5, 6)
    influence/  maths      memorization_scores                  memorization_attribution(s),
                           (module self_influence: the paper's  reduction_curve, image_reduction_curve
                           "self-influence" with its own term)  (modules influence.attribution, .reduction)
    pipeline/   drivers    score_training_set                   attribute_text, attribute_images,
                           (module pipeline.scoring)            text_reduction_rate, image_reduction_rate
                                                                (pipeline.attributing)
    callbacks/  Lightning  ScoringCallback -> TrainingSetScores AttributionCallback
                           (module callbacks.scoring)           (module callbacks.attributing)
    studies/    analysis   rank_by_memorization, score_diagnostics (studies.ranking, studies.diagnostics)
    report/     for people plots, tables, the sweep report (python -m memlab.report)

The maths keeps the paper's names; a driver is a verb phrase on what it processes; a callback's name
ends in ``Callback``; the result the scoring callback shares with later callbacks is the dataclass
``TrainingSetScores``, found by type (:func:`memlab.callbacks.scoring.find_scoring_callback`). The
config keys stay ``callbacks.memorization`` / ``callbacks.attribution`` and the output folder
``<run>/memorization/``.
"""
