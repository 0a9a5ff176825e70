"""Any torchvision classification model as a frozen grid-feature extractor (``data.backbone=NAME``).

The architecture comes from ``torchvision.models.get_model(NAME, weights=None)``; its weights from a
``torch.save``-d state_dict file (``data.backbone_weights=FILE``, loaded strictly, offline) or, without
a file, torchvision's ``DEFAULT`` weights from the hub. The grid is the tensor fed to the model's last
spatial pooling (the one before its classifier) (ResNet: ``layer4``; EfficientNet, MobileNet, ConvNeXt, VGG: ``features``; DenseNet:
its final ReLU; RegNet: ``trunk_output``; ShuffleNet/MNASNet: the input of ``mean([2, 3])``), found
by tracing the model with torch.fx, so no per-family table is needed. Its channel count is found by
one forward pass of a dummy picture (:func:`probe_channels`). Input: the weights' own size and
normalisation (torchvision's metadata, known offline), else ImageNet's at 224.

Models without a spatial pooling (ViT) have no grid and are refused with one line.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from memlab.errors import DataError
from memlab.utils.fingerprint import file_sha1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 224
# Ops that average away the spatial dims: the grid is what goes into the last of them.
POOL_MODULES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
POOL_FUNCTIONS = ("adaptive_avg_pool2d", "adaptive_max_pool2d")
SPATIAL_DIMS = ({2, 3}, {-2, -1})


@lru_cache(maxsize=1)
def classification_models() -> tuple[str, ...]:
    """Names ``torchvision.models.get_model`` builds as image classifiers."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def check_model_name(name: str) -> None:
    if name not in classification_models():
        raise DataError(f"data.backbone={name!r} is not a torchvision classification model; use one of "
                        f"resnet50, efficientnet_lite0, random or a name of torchvision.models.list_models() "
                        f"(e.g. resnet18, efficientnet_b0, convnext_tiny)")


def weights_file_fingerprint(path: str | os.PathLike) -> str:
    """SHA-1 (12 hex digits) of a weights file's bytes: the feature cache follows the file, not its name."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"data.backbone_weights={path}: no such file; pass a state_dict saved by torch.save")
    stat = file.stat()
    return _file_fingerprint(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _file_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    return file_sha1(path)[:12]  # hashed once per process while the file stays put


def default_weights(name: str):
    """torchvision's ``DEFAULT`` weights enum of ``name`` (metadata only, nothing downloaded), or None."""
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


def weights_tag(name: str, weights_file: str | os.PathLike | None) -> str:
    """Names the weights of a torchvision backbone (part of the feature-cache key)."""
    check_model_name(name)
    if weights_file is not None:
        return f"file-{weights_file_fingerprint(weights_file)}"
    weights = default_weights(name)
    if weights is None:
        raise DataError(f"data.backbone={name} has no pretrained torchvision weights; pass data.backbone_weights=FILE")
    return str(weights)


def input_transform(name: str, input_size: int | None) -> tuple[int, tuple, tuple]:
    """(square input size, mean, std): the weights' own when torchvision knows them, else ImageNet's."""
    weights = default_weights(name)
    transforms = weights.transforms() if weights is not None else None
    mean = tuple(getattr(transforms, "mean", IMAGENET_MEAN))
    std = tuple(getattr(transforms, "std", IMAGENET_STD))
    crop = getattr(transforms, "crop_size", [DEFAULT_INPUT_SIZE])
    return int(input_size or crop[0]), mean, std


def load_weights(net: nn.Module, name: str, weights_file: str | os.PathLike) -> None:
    """A state_dict file into ``net``, strictly; a mismatch is one line with the key counts."""
    fingerprint = weights_file_fingerprint(weights_file)  # also: the file exists
    try:
        state = torch.load(Path(weights_file).expanduser(), map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"data.backbone_weights={weights_file} is not a state_dict saved by torch.save "
                        f"({type(err).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint that wraps its state_dict
    if not isinstance(state, dict):
        raise DataError(f"data.backbone_weights={weights_file} holds a {type(state).__name__}, not a state_dict")
    result = net.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise DataError(f"data.backbone_weights={weights_file} (sha1 {fingerprint}) does not fit data.backbone={name}: "
                        f"{len(missing)} missing and {len(unexpected)} unexpected keys (e.g. {example!r})")


def build_network(name: str, weights_file: str | os.PathLike | None) -> nn.Module:
    """The whole classifier ``name`` with its weights (a file, or torchvision's DEFAULT from the hub)."""
    import torchvision

    check_model_name(name)
    if weights_file is not None:
        net = torchvision.models.get_model(name, weights=None)
        load_weights(net, name, weights_file)
        return net
    try:
        return torchvision.models.get_model(name, weights="DEFAULT")
    except Exception as err:  # offline: the hub download fails
        raise DataError(f"data.backbone={name}: torchvision's weights not in {torch.hub.get_dir()}/checkpoints and "
                        f"offline ({type(err).__name__}); pass data.backbone_weights=FILE (a saved state_dict)") from None


def _is_spatial_pool(node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), POOL_MODULES)
    if node.op == "call_function":
        return getattr(node.target, "__name__", "") in POOL_FUNCTIONS
    if node.op == "call_method" and node.target == "mean":
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return isinstance(dims, (list, tuple)) and set(dims) in SPATIAL_DIMS
    return False


def _traced_grid(net: nn.Module, name: str):
    """(fx graph of ``net`` in eval mode, the node whose output is the grid, the tracer)."""
    from torchvision.models.feature_extraction import NodePathTracer

    tracer = NodePathTracer()
    graph = tracer.trace(net.eval())
    modules = dict(net.named_modules())
    pools = [node for node in graph.nodes if _is_spatial_pool(node, modules)]
    if pools and pools[-1].args[0].op != "placeholder":
        return graph, pools[-1].args[0], tracer
    raise DataError(f"data.backbone={name} has no spatial pooling before its classifier, so no grid of features; "
                    f"use a convolutional model (resnet*, efficientnet_*, convnext_*, mobilenet_*, densenet*, regnet_*)")


def grid_node(net: nn.Module, name: str) -> str:
    """The module path of the node whose output is the grid: the input of the last spatial pooling (the
    one before the classifier; squeeze-excitation blocks pool inside the trunk too)."""
    _, node, tracer = _traced_grid(net, name)
    return tracer.node_to_qualname[node]


def GridTrunk(net: nn.Module, name: str) -> nn.Module:
    """``[B, 3, H, W]`` -> the grid ``[B, C, h, w]`` of a torchvision classifier: its traced graph cut
    after the grid node (pooling and classifier dropped)."""
    import torch.fx

    graph, node, _ = _traced_grid(net, name)
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = (node,)
    trunk = torch.fx.GraphModule(net, graph, class_name=f"{type(net).__name__}Grid")
    trunk.graph.eliminate_dead_code()
    trunk.delete_all_unused_submodules()  # the pooling and the classifier go
    trunk.recompile()
    return trunk


def grid_trunk(name: str, weights_file: str | os.PathLike | None) -> GridTrunk:
    return GridTrunk(build_network(name, weights_file), name)


@lru_cache(maxsize=16)
def probe_channels(name: str, input_size: int | None = None) -> int:
    """C of ``name``'s grid, from one forward pass of a dummy picture through the architecture (random
    weights: the shape does not depend on them; nothing downloaded)."""
    import torchvision

    check_model_name(name)
    size, _, _ = input_transform(name, input_size)
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        trunk = GridTrunk(torchvision.models.get_model(name, weights=None), name)
        grid = trunk(torch.zeros(1, 3, size, size))
    if grid.dim() != 4:
        raise DataError(f"data.backbone={name} gives features of shape {tuple(grid.shape)}, not a grid [C, H, W]")
    return int(grid.shape[1])
