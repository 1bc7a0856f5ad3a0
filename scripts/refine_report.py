"""Tables of the refinement study (scripts/refine_quality.py): means over sets, paired time ratios,
the printed tables and the README markdown. Cells are ``cells[set][noise][method] -> {miou, gain, bf,
band, thin, time_s}`` as run_study returns them; NaN is "not measured" and becomes null in JSON.
"""

from __future__ import annotations

import numpy as np
from refine_sets import MAX_SIDE

BASELINE = "none"  # the coarse input itself, the row every gain is measured against


def _num(x):
    """A float, or None for NaN (strict JSON)."""
    return None if x is None or not np.isfinite(x) else float(x)


def _nanmean(values) -> float:
    v = np.array([x for x in values if x is not None], np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def mean_over_sets(cells, noise: str, method: str, key: str) -> float:
    return _nanmean([cells[s][noise][method][key] for s in cells])


def time_ratios(records, reference: str = "densecrf") -> dict:
    """method -> median over inputs of its time / ``reference``'s time on the same input (paired, so
    robust to the machine's load drifting during the run); empty without the reference."""
    ref = {(r["set"], r["id"], r["noise"]): r["time_s"] for r in records if r["method"] == reference}
    ratios = {}
    for r in records:
        t = ref.get((r["set"], r["id"], r["noise"]))
        if t:
            ratios.setdefault(r["method"], []).append(r["time_s"] / t)
    return {m: float(np.median(v)) for m, v in ratios.items()}


def summary_rows(cells, noise_models, methods, records, mem) -> dict:
    out = {}
    ratio = time_ratios(records)
    for m in methods:
        times = [r["time_s"] for r in records if r["method"] == m]
        out[m] = {
            "gain": {n: mean_over_sets(cells, n, m, "gain") for n in noise_models},
            "miou": {n: mean_over_sets(cells, n, m, "miou") for n in noise_models},
            "mean_gain": _nanmean([mean_over_sets(cells, n, m, "gain") for n in noise_models]),
            "bf": _nanmean([mean_over_sets(cells, n, m, "bf") for n in noise_models]),
            "band": _nanmean([mean_over_sets(cells, n, m, "band") for n in noise_models]),
            "thin": _nanmean([mean_over_sets(cells, n, m, "thin") for n in noise_models]),
            "time_s": float(np.median(times)) if times else float("nan"),
            "time_vs_densecrf": ratio.get(m, float("nan")),
            "peak_mib": max((mem[s].get(m, 0.0) for s in mem), default=0.0),
        }
    return out


def _f(x, fmt="{:.1f}") -> str:
    return "-" if x is None or not np.isfinite(x) else fmt.format(x)


def format_noise_table(cells, noise: str, methods) -> str:
    sets = list(cells)
    head = f"{'method':<14}" + "".join(f"{s[:13]:>14}" for s in sets) + f"{'mean':>7}{'gain':>7}{'BF':>6}" \
        f"{'band':>6}{'thin':>6}"
    lines = [f"noise model {noise}: mIoU (gain over coarse) per set; mean over sets", head, "-" * len(head)]
    for m in methods:
        cellstr = "".join(f"{_f(cells[s][noise][m]['miou']):>7}{_f(cells[s][noise][m]['gain'], '{:+.1f}'):>7}"
                          for s in sets)
        lines.append(f"{m:<14}{cellstr}{_f(mean_over_sets(cells, noise, m, 'miou')):>7}"
                     f"{_f(mean_over_sets(cells, noise, m, 'gain'), '{:+.1f}'):>7}"
                     f"{_f(mean_over_sets(cells, noise, m, 'bf')):>6}{_f(mean_over_sets(cells, noise, m, 'band')):>6}"
                     f"{_f(mean_over_sets(cells, noise, m, 'thin')):>6}")
    return "\n".join(lines)


def format_summary(summary, noise_models) -> str:
    head = f"{'method':<14}" + "".join(f"{n:>10}" for n in noise_models) + \
        f"{'mean':>8}{'BF':>6}{'band':>6}{'thin':>6}{'s/img':>8}{'xdcrf':>7}{'MiB':>7}"
    lines = ["summary: mean over sets of the mIoU gain per noise model; BF / band / thin: mean over sets and "
             "noise models; s/img: median; xdcrf: median time ratio to densecrf on the same input; MiB: peak "
             "extra RSS (max over sets)", head, "-" * len(head)]
    for m, r in summary.items():
        lines.append(f"{m:<14}" + "".join(f"{_f(r['gain'][n], '{:+.1f}'):>10}" for n in noise_models)
                     + f"{_f(r['mean_gain'], '{:+.2f}'):>8}{_f(r['bf']):>6}{_f(r['band']):>6}{_f(r['thin']):>6}"
                     f"{_f(r['time_s'], '{:.3f}'):>8}{_f(r['time_vs_densecrf'], '{:.2f}'):>7}"
                     f"{_f(r['peak_mib'], '{:.0f}'):>7}")
    return "\n".join(lines)


def format_markdown(summary, cells, sets, noise_models, methods, args) -> str:
    photos = ", ".join(f"{s.name} ({len(s.photos)}, K={s.num_classes})" for s in sets)
    out = [f"Sets (photos used, classes): {photos}; long side <= {MAX_SIDE} px; seed {args.seed}; "
           f"{args.threads} torch threads. Noise models: " + ", ".join(noise_models) + " (scripts/refine_noise.py). "
           "Each noise column: mIoU gain over the coarse input, mean over the sets; mIoU in mmseg's convention "
           "(every class in the ground truth or the prediction of a set counts). BF: boundary F at 2 px; band: "
           "mIoU within 8 px of ground-truth edges; thin: recall near skeletons of parts under 12 px (each the "
           "mean over sets and noise models, %); s/img: median time per image; x DenseCRF: median ratio of "
           "its time to DenseCRF's on the same input; MiB: peak extra RSS.", "",
           "| method | " + " | ".join(noise_models) + " | mean gain | BF | band | thin | s/img | x DenseCRF | MiB |",
           "|---" * (len(noise_models) + 8) + "|"]
    for m, r in summary.items():
        out.append(f"| {m} | " + " | ".join(_f(r["gain"][n], "{:+.1f}") for n in noise_models)
                   + f" | {_f(r['mean_gain'], '{:+.2f}')} | {_f(r['bf'])} | {_f(r['band'])} | {_f(r['thin'])} | "
                   f"{_f(r['time_s'], '{:.3f}')} | {_f(r['time_vs_densecrf'], '{:.2f}')} | "
                   f"{_f(r['peak_mib'], '{:.0f}')} |")
    out += ["", "Coarse mIoU per set and noise model (the `none` row):", "",
            "| noise | " + " | ".join(cells) + " |", "|---" * (len(cells) + 1) + "|"]
    for n in noise_models:
        out.append(f"| {n} | " + " | ".join(_f(cells[s][n][BASELINE]["miou"]) if BASELINE in cells[s][n] else "-"
                                             for s in cells) + " |")
    for n in noise_models:
        out += ["", f"`{n}`: mIoU gain per set (BF at 2 px in brackets):", "",
                "| method | " + " | ".join(cells) + " |", "|---" * (len(cells) + 1) + "|"]
        for m in methods:
            out.append(f"| {m} | " + " | ".join(f"{_f(cells[s][n][m]['gain'], '{:+.1f}')} ({_f(cells[s][n][m]['bf'])})"
                                                 for s in cells) + " |")
    return "\n".join(out) + "\n"


def _strict(obj):
    """NaN -> None everywhere (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, float):
        return _num(obj)
    return obj
