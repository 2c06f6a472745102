"""Backbones for FRN. `build_backbone(name)` picks one by the name used on the command line."""
from network.conv4 import Conv4
from network.resnet12 import ResNet12

BACKBONES = {'ResNet12': ResNet12, 'Conv4': Conv4}


def build_backbone(name):
    from utils import FRNError
    if name not in BACKBONES:
        raise FRNError(f'unknown backbone {name!r}; choose one of {", ".join(BACKBONES)}')
    return BACKBONES[name]()


__all__ = ['BACKBONES', 'Conv4', 'ResNet12', 'build_backbone']
