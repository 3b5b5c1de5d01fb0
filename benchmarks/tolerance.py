"""Where early stopping would stop, and what the picture is worth there: one run per pair, read at every chunk.

    python3 benchmarks/tolerance.py [--sizes 256] [--pairs tubingen:starry_night ...]
        [--tv-weight 1e6] [--content-weight 1] [--iterations 500] [--tolerances 1e-4 3e-4 1e-3 3e-3 1e-2]

Each (content, style) pair from ``../shared/images`` is painted with the defaults before issue 15
(``defaults.BEFORE``, the baseline) and once with the candidate's weights and ``tolerance=0`` (all the iterations), keeping
the candidate's picture and loss after every chunk of 10. For each tolerance T the run would have
stopped after the first chunk whose loss fell by no more than T of the loss before it
(``OptimizerConfig.tolerance``, read here from the chunk ends, so a chunk of 10 counts the step
into it too; T = 0: all the iterations). The table gives that iteration count and the picture's
figures there over the baseline's: grain (``benchmarks/defaults.py``'s mean |Laplacian|) and the
paper's content and style terms at γ = 0. Choose a tolerance here, then confirm it with a real run
of ``benchmarks/defaults.py`` (wall time side by side). A figure printer, not a test.
"""

from __future__ import annotations

import argparse
import statistics

import jax.numpy as jnp
import numpy as np
from defaults import BEFORE, PAIRS, _path, fitted, laplacian_energy

import jaxstyle
from jaxstyle.objective import loss_terms


def stop_index(losses: list[float], tolerance: float) -> int:
    """The chunk after which a run with this tolerance stops (the last one if none)."""
    for i in range(1, len(losses)):
        if losses[i - 1] - losses[i] <= tolerance * abs(losses[i - 1]):
            return i
    return len(losses) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--pairs", nargs="+", default=PAIRS, help="content:style names in ../shared/images")
    parser.add_argument("--tv-weight", type=float, default=1e6)
    parser.add_argument("--content-weight", type=float, default=1.0)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--tolerances", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    args = parser.parse_args()
    summary: dict[float, list[tuple[float, ...]]] = {t: [] for t in [0.0, *args.tolerances]}
    print(f"{'size':>5} {'pair':<38} {'tolerance':>9} {'its':>4} {'grain':>6} {'content':>8} {'style':>8}  (over the baseline's)")
    for size in args.sizes:
        for pair in args.pairs:
            content, style = (_path(name) for name in pair.split(":"))
            measure = jaxstyle.prepare(content, style, size=size, tv_weight=0.0, content_weight=1.0, iterations=0).item()
            photo = fitted(content, size)
            baseline = np.asarray(jaxstyle.stylize(content, style, size=size, iterations=args.iterations, **BEFORE), np.float32) / 255
            trace: list[tuple[int, float, np.ndarray]] = []
            jaxstyle.stylize(content, style, size=size, tv_weight=args.tv_weight, content_weight=args.content_weight,
                             tolerance=0.0, iterations=args.iterations,
                             callback=lambda p: trace.append((p.iteration, p.loss, np.asarray(p.image))))  # fmt: skip

            def figures(image: np.ndarray) -> tuple[float, float, float]:
                x = np.round(np.clip(image, 0, 1) * 255) / 255  # as saved
                terms = loss_terms(jnp.asarray(x, jnp.float32), measure.params, measure.terms, measure.objective.layers)
                return laplacian_energy(x) / laplacian_energy(photo), float(terms["content"]), float(terms["style"])

            full = figures(baseline)
            for tolerance in [0.0, *args.tolerances]:
                i = stop_index([loss for _, loss, _ in trace], tolerance) if tolerance else len(trace) - 1
                mine = figures(trace[i][2])
                rel = (trace[i][0] / args.iterations,) + tuple(a / b for a, b in zip(mine, full))
                summary[tolerance].append(rel)
                print(f"{size:>5} {pair:<38} {tolerance:>9.0e} {trace[i][0]:>4} {rel[1]:>6.3f} {rel[2]:>8.3f} {rel[3]:>8.3f}",
                      flush=True)  # fmt: skip
    print(f"\nmedians over the pairs and sizes, over the baseline's (γ = {args.tv_weight:g}, α = {args.content_weight:g})")
    print(f"{'tolerance':>9} {'its':>6} {'grain':>6} {'content':>8} {'style':>8}")
    for tolerance, rows in summary.items():
        med = [statistics.median(r[j] for r in rows) for j in range(4)]
        print(f"{tolerance:>9.0e} {med[0]:>6.2f} {med[1]:>6.3f} {med[2]:>8.3f} {med[3]:>8.3f}")


if __name__ == "__main__":
    main()
