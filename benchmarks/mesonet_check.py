"""Check the MesoNet port against the authors' released Keras weights.

1. Layer by layer: prints each stage's output shape (Keras-style N, H, W, C) for Meso-4 and
   MesoInception-4 at 256x256, and compares the port's output with an independent
   channels-last NumPy implementation of the Keras graph that reads the .h5 arrays as they
   are stored (no transposition), so a wrong kernel/flatten layout shows up as a mismatch.
2. Scores: P(fake) on the DFDC face crops in ../shared/data/dfdc_sample_facecrops_aaronchong888
   (resized to 256x256 with nearest neighbour, as Keras' flow_from_directory does), per
   released weight file, with AUC and accuracy at 0.5, and the label convention check
   (sigmoid output = P(real) if AUC of -z is high).

    .venv/bin/python benchmarks/mesonet_check.py [--weights DIR] [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEF_WEIGHTS = ROOT.parent / "shared" / "weights" / "mesonet"
DEF_DATA = ROOT.parent / "shared" / "data" / "dfdc_sample_facecrops_aaronchong888"


# -- independent Keras-semantics reference (NHWC, NumPy) -----------------------------------
def _conv_nhwc(x: np.ndarray, k: np.ndarray, b: np.ndarray, dil: int = 1) -> np.ndarray:
    """Keras Conv2D 'same', stride 1: x (N,H,W,Ci), k (kh,kw,Ci,Co) -> relu(N,H,W,Co)."""
    kh, kw = k.shape[:2]
    ph, pw = dil * (kh - 1) // 2, dil * (kw - 1) // 2
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, k.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dil : i * dil + h, j * dil : j * dil + w, :]
            out += patch @ k[i, j]
    return np.maximum(out + b, 0.0)


def _bn_nhwc(x: np.ndarray, w: dict) -> np.ndarray:
    return (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + 1e-3) * w["gamma"] + w["beta"]


def _pool_nhwc(x: np.ndarray, s: int) -> np.ndarray:
    n, h, w, c = x.shape
    hp, wp = -(-h // s) * s, -(-w // s) * s
    xp = np.full((n, hp, wp, c), -np.inf)
    xp[:, :h, :w] = x
    return xp.reshape(n, hp // s, s, wp // s, s, c).max(axis=(2, 4))


def keras_reference(h5_path: Path, x_nhwc: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
    """Pre-sigmoid output z (N,) and stage shapes, computed the Keras way from the raw .h5."""
    import h5py

    from noisetrace.models.mesonet import _keras_layers, _weights

    with h5py.File(h5_path, "r") as f:
        convs = [_weights(f, n) for n in _keras_layers(f, "conv2d")]
        bns = [_weights(f, n) for n in _keras_layers(f, "batch_normalization")]
        dense = [_weights(f, n) for n in _keras_layers(f, "dense")]
        names = [n.decode() for n in f.attrs["layer_names"]]
    leaky = any(n.startswith("leaky_re_lu") for n in names)
    x = x_nhwc.astype(np.float64)
    shapes = []
    ci = 0
    for stage, pool in enumerate((2, 2, 2, 4)):
        if len(convs) == 16 and stage < 2:  # Inception block: 7 convs in creation order
            c = convs[ci : ci + 7]
            ci += 7
            def two(i: int, dil: int, c=c, x=x) -> np.ndarray:  # 1x1 then 3x3 (dilated)
                y = _conv_nhwc(x, c[i]["kernel"], c[i]["bias"])
                return _conv_nhwc(y, c[i + 1]["kernel"], c[i + 1]["bias"], dil)

            y1 = _conv_nhwc(x, c[0]["kernel"], c[0]["bias"])
            y2, y3, y4 = two(1, 1), two(3, 2), two(5, 3)
            x = np.concatenate([y1, y2, y3, y4], axis=-1)
        else:
            x = _conv_nhwc(x, convs[ci]["kernel"], convs[ci]["bias"])
            ci += 1
        x = _pool_nhwc(_bn_nhwc(x, bns[stage]), pool)
        shapes.append(x.shape)
    y = x.reshape(len(x), -1) @ dense[0]["kernel"] + dense[0]["bias"]
    if leaky:
        y = np.where(y > 0, y, 0.1 * y)
    z = (y @ dense[1]["kernel"] + dense[1]["bias"])[:, 0]
    return z, shapes


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, default=DEF_WEIGHTS)
    ap.add_argument("--data", type=Path, default=DEF_DATA)
    args = ap.parse_args()
    if not args.weights.is_dir():
        print(f"no MesoNet weights at {args.weights} (expected ../shared/weights/mesonet)")
        return 1
    if not args.data.is_dir():
        print(f"no DFDC face crops at {args.data} (expected ../shared/data/...)")
        return 1
    from PIL import Image

    from noisetrace import models
    from noisetrace.media.image import load_image
    from noisetrace.models.mesonet import load_keras_weights

    files = sorted(args.data.glob("real/*.png")) + sorted(args.data.glob("fake/*.png"))
    labels = np.array([int(p.parent.name == "fake") for p in files])
    imgs = np.stack([np.asarray(Image.fromarray(load_image(p)).resize((256, 256),
                                                                      Image.NEAREST))
                     for p in files]).astype(np.float32) / 255.0
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    print(f"DFDC face crops: {len(files)} ({labels.sum()} fake, {(1 - labels).sum()} real); "
          "reals all come from one source video, fakes from four")

    torch.set_grad_enabled(False)
    rows = []
    for h5 in sorted(args.weights.glob("*.h5")):
        arch = "mesoinception4" if h5.name.startswith("MesoInception") else "mesonet4"
        model = load_keras_weights(models.create(arch), h5).eval()
        z_ref, ref_shapes = keras_reference(h5, imgs[:4])
        stages = [tuple(t.shape) for t in model.features(x[:4])]
        z_port = model.real_logit(x[:4]).double().numpy()
        print(f"\n{h5.name} -> {arch} (hidden activation from the .h5 graph: "
              f"{model.hidden_act})")
        for i, (s, r) in enumerate(zip(stages, ref_shapes, strict=True), 1):
            print(f"  stage {i}: torch {s[1:]} (C,H,W)  keras {r[1:]} (H,W,C)")
        print(f"  flatten 1024 -> dense 16 -> dense 1; max |z_port - z_keras_ref| = "
              f"{np.abs(z_port - z_ref).max():.2e}")
        p_fake = torch.sigmoid(model(x)).numpy()
        auc = _auc(labels, p_fake)
        acc = float(((p_fake >= 0.5) == labels).mean())
        alt = None
        if arch == "mesonet4":  # the code's LeakyReLU instead of the file's linear layer
            model.hidden_act = "leaky_relu"
            alt = _auc(labels, torch.sigmoid(model(x)).numpy())
        rows.append((h5.name, auc, acc, float(p_fake[labels == 1].mean()),
                     float(p_fake[labels == 0].mean()), alt))
    print("\nweights               AUC(P_fake)  acc@0.5  mean P_fake|fake  mean P_fake|real"
          "  AUC with LeakyReLU")
    for name, auc, acc, pf, pr, alt in rows:
        alt_s = "" if alt is None else f"{alt:.3f}"
        print(f"{name:22s} {auc:10.3f} {acc:8.3f} {pf:17.3f} {pr:17.3f}  {alt_s:>12s}")
    print("\nP_fake = sigmoid(-z): the Keras sigmoid is P(real) (class 1 = 'real' in the "
          "authors' flow_from_directory); AUC > 0.5 confirms the orientation.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
