"""Generator families and real-image sources: the units of leave-one-family-out.

Holding out one generator of a family flatters (BigGAN held out, its siblings in training):
validation that predicts generalisation holds out whole families. A family comes from the
generator name by the rules below (first match wins), else the generator's first word.
Reals get a *source* kind (camera, web, film scan, ...) so false-positive rates are
reported per kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from noisetrace.data.manifest import FAKE, REAL, Sample, discover

FAKE_FAMILIES: tuple[tuple[str, str], ...] = (
    (r"(?i)tinyae", "aligned-tinyae"),  # the project's own autoencoder (data/tiny_ae.py)
    (r"(?i)taef2|aligned", "aligned-taef2"),
    (r"(?i)dall-?e ?2", "dalle2"),
    (r"(?i)dall-?e ?3", "dalle3"),
    (r"(?i)stable diffusion.*(1\.|sd1)|invokeai|sd ?1\.", "sd1x"),
    (r"(?i)sdxl", "sdxl"),
    (r"(?i)sd ?3|stable diffusion 3", "sd3"),
    (r"(?i)sd ?2|stable diffusion 2", "sd2"),
    (r"(?i)stable diffusion \(version", "sd-unspecified"),
    (r"(?i)flux", "flux"),
    (r"(?i)midjourney", "midjourney"),
    (r"(?i)kolors", "kolors"),
    (r"(?i)hunyuan", "hunyuan"),
    (r"(?i)pixart", "pixart"),
    (r"(?i)deepfloyd", "deepfloyd-if"),
    (r"(?i)cascade|wuerstchen", "stable-cascade"),
    (r"(?i)\bdit\b", "dit"),
    (r"(?i)nano ?banana", "nanobanana"),
    (r"(?i)gpt-?4o|gpt-image", "gpt-image"),
    (r"(?i)imagen", "imagen"),
    (r"(?i)recraft", "recraft"),
    (r"(?i)unspecified", "unspecified-ai"),
    (r"(?i)stylegan", "stylegan"),
    (r"(?i)stargan", "stargan"),
    (r"(?i)dfdc|deepfake|faceswap|face2face", "faceswap"),
)
REAL_SOURCES: tuple[tuple[str, str], ...] = (
    (r"(?i)^camera:|camera", "camera"),
    (r"(?i)web photo|real-web", "web"),
    (r"(?i)cbsd|kodak|mcmaster|rni|film|scan", "film-scan"),
    (r"(?i)dfdc|face", "face"),
)
#: The face corpus (:mod:`noisetrace.data.face_corpus`) names its generators
#: ``face:<source> ...``: each source is its own family ("face-<source>") and each source's
#: reals their own kind ("face-real-<source>"), so a face model is validated by leaving one
#: face-swap source out. No whole-image manifest uses the prefix (their families are unchanged).
FACE_CORPUS = re.compile(r"^face:([A-Za-z0-9_.-]+)")


def family_of(s: Sample) -> str:
    """Fake family of a sample (see module docstring); reals get their source kind."""
    m = FACE_CORPUS.match(s.generator)
    if m:
        return f"face-{m.group(1)}" if s.label == FAKE else f"face-real-{m.group(1)}"
    rules = FAKE_FAMILIES if s.label == FAKE else REAL_SOURCES
    text = s.generator or s.dataset
    for pat, name in rules:
        if re.search(pat, text):
            return name
    if s.label == REAL:
        return "other-real"
    # One family per GAN of CNNDetection's ranking set (each its own architecture).
    return (s.generator.split()[0] if s.generator else s.dataset).lower()


def load_corpus(specs: Iterable[str | Path], whole_images: bool = True) -> list[Sample]:
    """Samples from manifests/folders (``discover``); ``whole_images`` drops face crops and
    face-swap material, which belong to the face model, not the whole-image one."""
    out: list[Sample] = []
    for spec in specs:
        out += discover(spec)
    if whole_images:
        out = [s for s in out if not is_face_family(family_of(s))]
    return out


def is_face_family(family: str) -> bool:
    """True for face material: face swaps, face crops and the face corpus's sources."""
    return family in ("faceswap", "face") or family.startswith("face-")


def families(samples: Sequence[Sample]) -> dict[str, list[int]]:
    """Fake family -> indices into ``samples``."""
    out: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        if s.label == FAKE:
            out.setdefault(family_of(s), []).append(i)
    return dict(sorted(out.items()))
