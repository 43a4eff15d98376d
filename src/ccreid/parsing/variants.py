"""The three SCHP label sets: classes, input size and the released checkpoint of each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from ccreid.data.labels import BUILTIN, LabelSet


@dataclass(frozen=True)
class SCHPVariant:
    """One released SCHP model: its label set (clothes / body split for CRE and BSGA),
    class names, network input size (H, W) and official checkpoint file name."""

    name: str
    class_names: Tuple[str, ...]
    input_size: Tuple[int, int]
    checkpoint: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def label_set(self) -> LabelSet:
        return BUILTIN[self.name]


VARIANTS: Dict[str, SCHPVariant] = {v.name: v for v in (
    SCHPVariant("lip", ("Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat",
                        "Socks", "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm",
                        "Left-leg", "Right-leg", "Left-shoe", "Right-shoe"),
                (473, 473), "exp-schp-201908261155-lip.pth"),
    SCHPVariant("atr", ("Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress",
                        "Belt", "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm",
                        "Right-arm", "Bag", "Scarf"),
                (512, 512), "exp-schp-201908301523-atr.pth"),
    SCHPVariant("pascal", ("Background", "Head", "Torso", "Upper Arms", "Lower Arms", "Upper Legs", "Lower Legs"),
                (512, 512), "exp-schp-201908270938-pascal-person-part.pth"),
)}


def variant_for_classes(num_classes: int) -> SCHPVariant | None:
    """The variant whose classifier has ``num_classes`` outputs (None if no released one has)."""
    return next((v for v in VARIANTS.values() if v.num_classes == num_classes), None)
