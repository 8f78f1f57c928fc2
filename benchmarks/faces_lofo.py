"""Leave one face-swap source out: a fitted face recipe beside the bundled MesoNet (issue 17).

    python benchmarks/faces_lofo.py --config configs/faces.yaml --cache /work/data/cache \\
        --out /work/data/runs/faces-clip/compare

For each fake family F of the recipe's corpus (face-<source>, :mod:`noisetrace.data.
face_corpus`) the recipe is refitted without F and without each fold of the reals, exactly as
``noisetrace fit`` validates (:func:`noisetrace.heads.fit.leave_one_family_out`), but every
held-out score is kept, so the table also has video-level AUC (a video's frame scores
aggregated as the fitted model aggregates them, the recipe's ``video_aggregate``;
DeepFaceLive's halves are separate videos) and per-source real false-positive rates, of crops
and of videos.

Two video AUCs per source. Against **all reals** (every real crop of the corpus, out of fold):
what the pooled figure says, and flattering, because most of those reals are of other kinds
(256 px still faces, CelebA-HQ) than the held-out fakes. Against **the source's own reals**
(``face-real-<source>``, where it has at least ``MIN_OWN_VIDEOS`` real videos): fakes and
reals of one tool, one capture and one compression (DeepFaceLive's real feed and its swap are
the two halves of the same clips), the comparison the issue's "formats and compression
matched" asks for. The
peer, the bundled ``faces`` model (MesoNet), scores the very same crops under the same
transforms; it was never trained on any of them, so its scores need no refitting. Bootstrap
intervals (by video) go with the candidate's video AUC. Features
come from the cache ``noisetrace fit`` filled (the MesoNet logits are cached there too).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from noisetrace.data.manifest import FAKE, REAL
from noisetrace.heads.fit import Features, HeadRecipe, held_out_scores
from noisetrace.metrics import aggregate_by_group, binary_metrics, bootstrap_ci


def lofo_scores(recipe: HeadRecipe, feats: Features) -> dict[str, dict[str, np.ndarray]]:
    """family -> transform -> held-out probabilities (NaN where not scored) and thresholds:
    the refits of ``noisetrace fit``'s validation (:func:`held_out_scores`), every score kept."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for F, _fake, scores, thr_of, _used in held_out_scores(recipe, feats):
        out[F] = {**scores, **{f"thr:{t}": thr_of for t in scores}}
        print(f"lofo {F}: done", flush=True)
    return out


#: Fewest real videos of a source's own for its own-reals AUC (fewer cannot rank anything).
MIN_OWN_VIDEOS = 20


def own_reals(feats: Features, family: str, keys: np.ndarray) -> np.ndarray | None:
    """Indices of the real crops of ``family``'s own source (face-<s> -> face-real-<s>), or
    None when it has fewer than :data:`MIN_OWN_VIDEOS` real videos."""
    own = np.flatnonzero((feats.family == family.replace("face-", "face-real-", 1))
                         & (feats.y == REAL))  # fmt: skip
    return own if len(set(keys[own])) >= MIN_OWN_VIDEOS else None


def own_reals_weak(rows: list[dict], below: float = 0.85) -> list[str]:
    """The card's warnings: held-out sources its own reals cannot be told from (AUC < below)."""
    aucs: dict[str, list[tuple[float, str]]] = {}
    for r in rows:
        if not isinstance(r["cand_own_video_auc"], str):
            aucs.setdefault(r["family"], []).append((r["cand_own_video_auc"], r["transform"]))
    return [f"Held out, {F}'s fakes against the same source's real videos (same capture and "
            f"compression): video AUC {', '.join(f'{a:.2f} at {t}' for a, t in v)}; its "
            "figure against all reals is higher because most of those are easier, other "
            "kinds of real image."
            for F, v in aucs.items() if min(a for a, _ in v) < below]  # fmt: skip


def video_keys(feats: Features) -> np.ndarray:
    """A video's frames share a key (label too: DeepFaceLive's two halves are two videos);
    crops without a video column share their group (DFDC crops: the video they came from)."""
    return np.array([f"{s.label}|{s.video or s.group or s.path}" for s in feats.samples])


def by_video(y: np.ndarray, s: np.ndarray, keys: np.ndarray, how: str = "mean"
             ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(V,) labels and (V,) scores per video, its frames aggregated as the model does."""
    u, vs = aggregate_by_group(keys, s, how)
    label = dict(zip(keys, y, strict=True))
    return np.array([label[k] for k in u], int), vs


NAMES = {"family": "held-out source", "transform": "transform", "fake_crops": "fake crops",
         "fake_videos": "fake videos", "cand_auc": "crop AUC",
         "cand_video_auc": "video AUC vs all reals",
         "cand_video_auc_95ci": "video AUC 95% CI", "cand_detected": "detected",
         "peer_auc": "peer crop AUC", "peer_video_auc": "peer video AUC",
         "peer_detected": "peer detected", "cand_own_video_auc": "video AUC vs own reals",
         "peer_own_video_auc": "peer video AUC vs own reals",
         "own_real_videos": "own real videos", "kind": "real source", "n": "crops",
         "cand_fpr": "crops called fake", "peer_fpr": "peer crops called fake",
         "videos": "videos", "cand_video_fpr": "videos called fake"}  # fmt: skip


def render(rows: list[dict], fpr_rows: list[dict]) -> str:
    """Markdown: per held-out source (with the mean per transform), then reals called fake."""
    cols = list(rows[0])
    md = ["| " + " | ".join(NAMES.get(c, c) for c in cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    for t in dict.fromkeys(r["transform"] for r in rows):
        r = [x for x in rows if x["transform"] == t]
        means = []
        for c in cols[4:]:  # "-" where a source has no such figure: the mean is over the rest
            v = [x[c] for x in r if not isinstance(x[c], str)]
            means.append(f"**{np.mean(v):.3f}**" if v and c != "own_real_videos" else "")
        md.append(f"| **mean** | {t} | | | " + " | ".join(means) + " |")
    cols2 = list(fpr_rows[0])
    md += ["", "| " + " | ".join(NAMES.get(c, c) for c in cols2) + " |",
           "|" + "---|" * len(cols2)]  # fmt: skip
    md += ["| " + " | ".join(str(r[c]) for c in cols2) + " |" for r in fpr_rows]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/faces.yaml")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--peer", required=True,
                    help="model folder to compare with (benchmarks/select_faces.py builds MesoNet)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--card", help="also add the table to this fitted model's card")
    ap.add_argument("--reuse", action="store_true", help="take the table of an earlier run "
                    "from --out (faces_lofo.json) instead of refitting, e.g. with --card")
    a = ap.parse_args()
    if a.reuse:
        got = json.loads((Path(a.out) / "faces_lofo.json").read_text())
        md = render(got["rows"], got["real_fpr"])
        print(md)
        if a.card:
            add_to_card(a, got["rows"], md)
        return
    recipe = HeadRecipe.from_yaml(a.config, cache=a.cache)
    samples = recipe.corpus()
    feats = Features(recipe, samples, verbose=False)
    peer_recipe = HeadRecipe.from_yaml(a.config, cache=a.cache,
                                       branches={"peer": {"model": a.peer}})  # fmt: skip
    pf = Features(peer_recipe, feats.samples, verbose=True)
    assert [s.path for s in pf.samples] == [s.path for s in feats.samples]
    from noisetrace.zoo import load_detector

    peer = load_detector(a.peer)
    keys = video_keys(feats)
    scores = lofo_scores(recipe, feats)
    real_idx = np.flatnonzero(feats.y == REAL)
    rows, fpr_rows = [], []
    for t in recipe.test_transforms:
        peer_p = peer.calibrate(pf.x[("peer", t)][:, 0, 0])
        for F, sc in scores.items():
            fake_F = np.flatnonzero((feats.family == F) & (feats.y == FAKE))
            sel = np.concatenate([fake_F, real_idx])
            y = feats.y[sel]
            row = {"family": F, "transform": t, "fake_crops": len(fake_F),
                   "fake_videos": len(set(keys[fake_F]))}  # fmt: skip
            peer_thr = np.full(len(sel), peer.threshold)
            for name, s, thr, how in (
                    ("cand", sc[t][sel], sc[f"thr:{t}"][sel], recipe.video_aggregate),
                    ("peer", peer_p[sel], peer_thr, peer.config.video_aggregate)):  # fmt: skip
                row[f"{name}_auc"] = round(binary_metrics(y, s, 0.5)["auc"], 4)
                vy, vs = by_video(y, s, keys[sel], how)
                row[f"{name}_video_auc"] = round(binary_metrics(vy, vs, 0.5)["auc"], 4)
                if name == "cand":  # resampled by video: frames of one video are not independent
                    lo, hi = bootstrap_ci(vy, vs, "auc", n=500)
                    row["cand_video_auc_95ci"] = f"{lo:.2f}-{hi:.2f}"
                row[f"{name}_detected"] = round(float(np.mean(s[y == FAKE] >= thr[y == FAKE])), 4)
            own = own_reals(feats, F, keys)
            row["own_real_videos"] = "-" if own is None else len(set(keys[own]))
            for name, s, how in (("cand", sc[t], recipe.video_aggregate),
                                 ("peer", peer_p, peer.config.video_aggregate)):  # fmt: skip
                if own is None:
                    row[f"{name}_own_video_auc"] = "-"
                    continue
                o = np.concatenate([fake_F, own])
                vy, vs = by_video(feats.y[o], s[o], keys[o], how)
                row[f"{name}_own_video_auc"] = round(binary_metrics(vy, vs, 0.5)["auc"], 4)
            rows.append(row)
        # Reals: called fake in the share of held-out-family models that called them fake.
        calls = np.mean([scores[F][t][real_idx] >= scores[F][f"thr:{t}"][real_idx]
                         for F in scores], axis=0)  # fmt: skip
        # Real videos (frames aggregated as the model aggregates a video) called fake.
        rk = keys[real_idx]
        video_calls: dict[str, list[bool]] = {}
        for F in scores:
            u, vs = aggregate_by_group(rk, scores[F][t][real_idx], recipe.video_aggregate)
            thr_of = dict(zip(rk, scores[F][f"thr:{t}"][real_idx], strict=True))
            for k, v in zip(u, vs, strict=True):
                video_calls.setdefault(k, []).append(bool(v >= thr_of[k]))
        for kind in sorted(set(feats.family[real_idx])):
            m = feats.family[real_idx] == kind
            vids = sorted(set(rk[m]))
            fpr_rows.append({"kind": kind, "transform": t, "n": int(m.sum()),
                             "cand_fpr": round(float(calls[m].mean()), 4),
                             "peer_fpr": round(float(np.mean(peer_p[real_idx][m]
                                                             >= peer.threshold)), 4),
                             "videos": len(vids),
                             "cand_video_fpr": round(float(np.mean(
                                 [np.mean(video_calls[k]) for k in vids])), 4)})  # fmt: skip
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "faces_lofo.json").write_text(json.dumps({"rows": rows, "real_fpr": fpr_rows},
                                                    indent=2) + "\n")  # fmt: skip
    # Every held-out score, so other video aggregations can be studied without refitting.
    np.savez_compressed(out / "scores.npz", keys=keys, y=feats.y, family=feats.family,
                        **{f"{F}|{t}": v for F, sc in scores.items() for t, v in sc.items()})
    md = render(rows, fpr_rows)
    (out / "faces_lofo.md").write_text(md)
    print(md)
    if a.card:
        add_to_card(a, rows, md)


def add_to_card(a: argparse.Namespace, rows: list[dict], md: str) -> None:
    """The fitted model's card gets this table (card.json and MODEL_CARD.md)."""
    from noisetrace.heads.fit import write_card

    card = json.loads((Path(a.card) / "card.json").read_text())
    card["video_lofo"] = {"command": "python benchmarks/faces_lofo.py --config "
                                     f"{a.config} --peer <MesoNet model folder>",
                          "markdown": md, "weak": own_reals_weak(rows)}  # fmt: skip
    write_card(a.card, card)


if __name__ == "__main__":
    main()
