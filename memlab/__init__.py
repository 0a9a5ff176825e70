"""memlab: what has my model memorized, why, and does it help?

Self-influence memorization scores (Zheng & Jiang, ACL 2022, Eq. 2), their attribution to tokens
and image regions (Eq. 5-6) and the paper's studies, as a Hydra + Lightning experiment framework.
The influence mathematics (:mod:`memlab.influence`) is pure torch and usable from a notebook.
"""
__version__ = "0.1.0"
