"""The classes of ``data=custom`` and ``data=image_folder``, read from the data before anything is built
(and, for image_folder, the backbone's feature channels, which size the MLP's input): the model's head
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
    if data is not None and data.get("source") == "image_folder":
        return resolve_image_folder(cfg)
    if data is None or data.get("source") != "custom":
        return
    if data.get("num_classes") is not None and data.get("class_names") is not None:
        return
    from ..data.custom_source import read_custom

    _, names = read_custom(**custom_reader_args(data))
    set_classes(cfg, names)


def set_classes(cfg: DictConfig, names) -> None:
    with open_dict(cfg):
        cfg.data.class_names = list(names)
        cfg.data.num_classes = len(names)
        # a config resolved before the data was read (tests, scripts) holds null where it interpolated it
        model = cfg.get("model")
        for node in (model, (model or {}).get("net")):
            if node is not None and "num_classes" in node and node.get("num_classes") is None:
                node.num_classes = len(names)


def resolve_image_folder(cfg: DictConfig) -> None:
    """``data=image_folder``: the class names from the folder (checked: layout and every picture's header)
    and ``data.feature_channels`` from the backbone (one dummy forward pass), unless given."""
    from ..data.backbones import uses_torchvision_loader
    from ..data.image import NATURAL_CHANNELS, RANDOM_DEFAULT_CHANNELS
    from ..data.image_folder import default_image_size
    from ..data.image_folder_source import check_image_folder
    from ..data.torchvision_backbone import probe_channels

    data = cfg.data
    names = check_image_folder(data.get("path"))
    if data.get("class_names") is None or data.get("num_classes") is None:
        set_classes(cfg, names)
    if data.get("feature_channels") is None:
        backbone, weights = str(data.get("backbone")), data.get("backbone_weights")
        if uses_torchvision_loader(backbone, weights):
            channels = probe_channels(backbone, int(data.get("image_size") or default_image_size(backbone)))
        else:
            channels = NATURAL_CHANNELS.get(backbone, RANDOM_DEFAULT_CHANNELS)
        with open_dict(cfg):
            cfg.data.feature_channels = channels
            net = (cfg.get("model") or {}).get("net")
            if net is not None and "in_channels" in net and net.get("in_channels") is None:
                net.in_channels = channels


def data_set_name(cfg) -> str:
    """What a figure calls the data set: ``data.name`` (text), else ``data.source`` (images: fashion_mnist,
    image_folder, ...), else ``data``."""
    data = cfg.get("data") or {}
    return str(data.get("name") or data.get("source") or "data")
