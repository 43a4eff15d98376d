"""ImageNet's per-channel statistics (RGB order), the one definition that image normalisation
(training and test transforms), CRE's fill, exported models and the parser's BGR input read.

A leaf: imports nothing of ccreid, so every package may read it.
"""

#: mean of ImageNet's images per RGB channel, pixel values in [0, 1]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: standard deviation per RGB channel
IMAGENET_STD = (0.229, 0.224, 0.225)
