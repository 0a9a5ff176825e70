"""Data modules: text (SST-2, SNLI, Yahoo! Answers) and image features (CIFAR-10 and stand-ins)."""
from .base import DataError, ListDataset, MemlabDataModule

__all__ = ["DataError", "ListDataset", "MemlabDataModule"]
