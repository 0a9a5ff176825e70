"""The classes of ``data=custom``, read from the data before anything is built: the model's head
(``model.num_classes: ${data.num_classes}``), scores.csv, metrics.json and the W&B config then all
see the data set's own class names. Reading the data here is also its check: a missing column, an
unknown label or an unreadable file stops the job in seconds, before any model loads.
"""
from __future__ import annotations

from omegaconf import DictConfig, open_dict


def custom_reader_args(data: DictConfig) -> dict:
    """:func:`memlab.data.custom_source.read_custom`'s arguments from ``cfg.data``."""
    from ..data.custom_source import CustomColumns

    columns = CustomColumns(data.get("text_column") or "text", data.get("label_column") or "label",
                            data.get("text_pair_column"), data.get("id_column"))
    return dict(path=data.get("path"), columns=columns, class_names=data.get("class_names"),
                num_classes=data.get("num_classes"), hub_config=data.get("hub_config"),
                split_names=dict(data.get("split_names") or {}), seed=int(data.get("seed", 0)),
                val_size=data.get("val_size", 0.1), test_size=data.get("test_size", 0.1),
                split_from_train=bool(data.get("split_from_train", False)), cache_dir=data.get("cache_dir"),
                drop_empty=bool(data.get("drop_empty", False)))


def resolve_data_classes(cfg: DictConfig) -> None:
    """Fill ``cfg.data.num_classes`` and ``cfg.data.class_names`` from a custom data set (in place);
    nothing to do for other data or when both are already set."""
    data = cfg.get("data")
    if data is None or data.get("source") != "custom":
        return
    if data.get("num_classes") is not None and data.get("class_names") is not None:
        return
    from ..data.custom_source import read_custom

    _, names = read_custom(**custom_reader_args(data))
    with open_dict(cfg):
        cfg.data.class_names = list(names)
        cfg.data.num_classes = len(names)
        # a config resolved before the data was read (tests, scripts) holds null where it interpolated it
        model = cfg.get("model")
        for node in (model, (model or {}).get("net")):
            if node is not None and "num_classes" in node and node.get("num_classes") is None:
                node.num_classes = len(names)
