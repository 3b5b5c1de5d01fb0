"""Candidates for the default picture, measured side by side: grain, the paper's terms, time.

    python3 benchmarks/defaults.py [--sizes 256 512] [--pairs tubingen:starry_night ...]
        [--candidates before defaults tv1e6 ...] [--iterations 500] [--sheets DIR] [--json out.json]

For every (content, style) pair from ``../shared/images`` and every size, each candidate
(a set of options, ``CANDIDATES``: ``before`` is the defaults until issue 15 — γ = 0, α = 1, no
early stop — ``defaults`` whatever they are now, the others options over ``before``) paints the
pair, and the output gets:

- grain: the mean |discrete Laplacian| of the RGB image in [0, 1], divided by the content
  photo's own at the same size (1 = as grainy as the photo);
- the content and style terms of one fixed objective, the paper's with α = 1, γ = 0 (the default
  layers, max pooling, w_l = 1/5), so that candidates with other weights or schedules compare on the
  same scale;
- the wall time of the ``stylize`` call, each candidate compiled beforehand (a short run),
  so that the times compare the runs; and the iterations it ran (early stopping).

It prints a row per run and a summary per candidate (medians over the pairs of grain,
content and style relative to ``before``, and time), and writes one contact sheet per pair
and size (content, style, then each candidate, captioned) into ``--sheets``: look at them.
A figure printer, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import jaxstyle
from jaxstyle.images import fit_size, grid, load_image, to_array
from jaxstyle.objective import loss_terms

IMAGES = Path(__file__).resolve().parent.parent.parent / "shared" / "images"
PAIRS = ["tubingen:starry_night", "tubingen:the_scream", "tubingen:great_wave_hokusai", "shipwreck:composition_vii_kandinsky"]

#: The defaults until issue 15 chose new ones.
BEFORE = dict(tv_weight=0.0, content_weight=1.0, tolerance=0.0)
#: Each candidate: options over ``BEFORE`` (``defaults``: today's defaults, as they are).
CANDIDATES = {
    "before": BEFORE,
    "defaults": {},
    "tv1e5": {**BEFORE, "tv_weight": 1e5},
    "tv1e6": {**BEFORE, "tv_weight": 1e6},
    "tv1e7": {**BEFORE, "tv_weight": 1e7},
    "avg": {**BEFORE, "average_decay": 0.9},
    "tv1e6+avg": {**BEFORE, "tv_weight": 1e6, "average_decay": 0.9},
    "c2f": {**BEFORE, "scales": 2},  # iterations split over the scales: the same budget
    "tol": {**BEFORE, "tolerance": 3e-3},
    "tv1e6+tol": {**BEFORE, "tv_weight": 1e6, "tolerance": 3e-3},
    # How much content weight buys back the content an early stop leaves (issue 15's last
    # round; spelled out over BEFORE, so that they mean the same whatever the defaults become).
    "tv1e6+a1.1+tol3e-3": {**BEFORE, "tv_weight": 1e6, "content_weight": 1.1, "tolerance": 3e-3},
    "tv1e6+a1.15+tol3e-3": {**BEFORE, "tv_weight": 1e6, "content_weight": 1.15, "tolerance": 3e-3},
    "tv1e6+a1.2+tol3e-3": {**BEFORE, "tv_weight": 1e6, "content_weight": 1.2, "tolerance": 3e-3},
    "tv1e6+a1.15+tol2e-3": {**BEFORE, "tv_weight": 1e6, "content_weight": 1.15, "tolerance": 2e-3},
}


def laplacian_energy(image: np.ndarray) -> float:
    """Mean |4·x − (up + down + left + right)| over the interior pixels and channels, x in [0, 1]."""
    x = np.asarray(image, np.float64)
    lap = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    return float(np.mean(np.abs(lap)))


def fitted(path: Path, size: int) -> np.ndarray:
    """The image at ``path`` as the run sees it: longer side ``size``, RGB in [0, 1]."""
    image = load_image(path)
    return to_array(image, fit_size(*image.size, size))


def _path(name: str) -> Path:
    for suffix in (".jpg", ".png", ".jpeg"):
        if (IMAGES / f"{name}{suffix}").exists():
            return IMAGES / f"{name}{suffix}"
    raise SystemExit(f"no image {name} in {IMAGES}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--pairs", nargs="+", default=PAIRS, help="content:style names in ../shared/images")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--iterations", type=int, default=500, help="the iteration count (candidates may change it)")
    parser.add_argument("--sheets", type=Path, default=Path("defaults-sheets"), help="contact sheets go here")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    args.sheets.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'size':>5} {'pair':<38} {'candidate':<20} {'grain':>6} {'content':>10} {'style':>10} {'its':>4} {'time s':>7}")
    for size in args.sizes:
        for pair in args.pairs:
            content_name, style_name = pair.split(":")
            content, style = _path(content_name), _path(style_name)
            # The one objective every candidate is measured with: the paper's, α = 1, γ = 0.
            measure = jaxstyle.prepare(content, style, size=size, tv_weight=0.0, content_weight=1.0, iterations=0).item()
            photo = fitted(content, size)
            pictures, captions = [photo, fitted(style, size)], ["content", "style"]
            for name in args.candidates:  # compile first, so that the times compare runs, not compilers
                jaxstyle.stylize(content, style, **{"size": size, **CANDIDATES[name], "iterations": 10})
            for name in args.candidates:
                options = {"size": size, **CANDIDATES[name]}
                options["iterations"] = args.iterations // options.get("scales", 1)
                seen = []
                start = time.perf_counter()
                image = jaxstyle.stylize(content, style, callback=lambda p: seen.append(p.iteration), **options)
                seconds = time.perf_counter() - start
                x = np.asarray(image, np.float32) / 255
                terms = loss_terms(jnp.asarray(x), measure.params, measure.terms, measure.objective.layers)
                row = dict(size=size, pair=pair, candidate=name, grain=laplacian_energy(x) / laplacian_energy(photo),
                           content=float(terms["content"]), style=float(terms["style"]),
                           iterations=seen[-1] if seen else 0, seconds=seconds)  # fmt: skip
                rows.append(row)
                print(f"{size:>5} {pair:<38} {name:<20} {row['grain']:>6.2f} {row['content']:>10.4g} {row['style']:>10.4g} "
                      f"{row['iterations']:>4} {seconds:>7.1f}", flush=True)  # fmt: skip
                pictures.append(x)
                captions.append(f"{name} grain {row['grain']:.2f}")
            sheet = grid(pictures, captions=captions, columns=len(pictures))
            sheet.save(args.sheets / f"{size}-{pair.replace(':', '-')}.png")
    print("\nmedians over the pairs, relative to before (grain: the output's over the content's)")
    print(f"{'size':>5} {'candidate':<20} {'grain':>6} {'vs before':>9} {'content':>8} {'style':>8} {'time':>8}")
    for size in args.sizes:
        before = {r["pair"]: r for r in rows if r["size"] == size and r["candidate"] == "before"}
        for name in args.candidates:
            mine = [r for r in rows if r["size"] == size and r["candidate"] == name]
            rel = lambda key: statistics.median(r[key] / before[r["pair"]][key] for r in mine) if before else float("nan")  # noqa: E731
            print(f"{size:>5} {name:<20} {statistics.median(r['grain'] for r in mine):>6.2f} {rel('grain'):>9.2f} "
                  f"{rel('content'):>8.2f} {rel('style'):>8.2f} {rel('seconds'):>8.2f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
