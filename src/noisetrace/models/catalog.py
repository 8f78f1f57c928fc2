"""One line per registered architecture, for ``noisetrace models``.

Pure data on purpose: the command lists architectures without importing torch (importing
:mod:`noisetrace.models` imports every architecture). ``tests/test_cli_help.py`` checks that
this table names exactly the architectures of :func:`noisetrace.models.list_models`, so add
a line here when you register a model.
"""

from __future__ import annotations

# name -> (input it scores, one line: what it is and where it comes from)
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "srm-cnn": ("image", "SRM high-pass filters + light CNN; any size, tiled (bundled fast)"),
    "djin": ("image", "SRNet on noise residuals (DJIN); any size, tiled"),
    "corvi-resnet50": ("image", "ResNet-50 without early down-sampling (Corvi et al. 2023)"),
    "cffn": ("image", "Common Fake Feature Network, triplet then classifier phase; 224 px"),
    "mesonet4": ("face", "Meso-4 (Afchar et al. 2018); loads the authors' Keras weights"),
    "mesoinception4": ("face", "MesoInception-4 (Afchar et al. 2018); bundled `faces`"),
    "xception-rgb": ("face", "Xception on RGB face crops, 224 px"),
    "xception-srm": ("face", "Xception on SRM residuals of face crops, 224 px"),
    "xception-rgb-lstm": ("face sequence", "Xception RGB features + LSTM over a face track"),
    "xception-srm-lstm": ("face sequence", "Xception SRM features + LSTM over a face track"),
    "siamese-dncnn": ("face + background", "Siamese DnCNN: face noise vs background noise"),
}
