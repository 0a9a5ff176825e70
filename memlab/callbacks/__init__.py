"""Lightning callbacks: thin shells that connect training runs to memlab's caches and drivers.

    scoring      ScoringCallback: memorization scores of every training instance after fit
                 (memlab.pipeline.scoring); its TrainingSetScores result stays on the callback
    attributing  AttributionCallback: Eq. 5 attributions + reduction rate of the top memorized
                 (memlab.pipeline.attributing); finds the ScoringCallback by type, which must run first
    tracin       TracInCallback: TracIn self-influence summed over the training epochs
    prefix_cache FrozenPrefixCache: cached frozen-prefix outputs for text models
    timing       EpochTimer: the wall time of each training epoch
"""
