"""Figures (matplotlib, Agg backend; imported only when a figure is drawn)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from flyrecon import layout
from flyrecon.atomic import write_with


def _save_png(path: Path, fig: Any, dpi: int) -> Path:
    """Write `fig` as a PNG (atomically). Text the font cannot draw (a symbol from a file's
    metadata) is drawn as an empty box, without matplotlib's warning on stderr."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from font")
        return write_with(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def reconstruction_figure(
    path: Path,
    obj: np.ndarray,
    probe: np.ndarray,
    loss: list[float],
    title: str,
    marks: StopMarks | None = None,
) -> Path:
    """Object amplitude and phase, probe amplitude and phase, and the loss curve, as PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5), constrained_layout=True)
    panels = [
        (axes[0, 0], np.abs(obj), "object amplitude", "gray"),
        (axes[0, 1], np.angle(obj), "object phase (rad)", "twilight"),
        (axes[1, 0], np.abs(probe), "probe amplitude", "magma"),
        (axes[1, 1], np.angle(probe), "probe phase (rad)", "twilight"),
    ]
    for ax, image, label, cmap in panels:
        shown = ax.imshow(image, cmap=cmap)
        ax.set_title(label)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, shrink=0.8)
    _plot_loss(axes[0, 2], loss, marks)
    axes[1, 2].set_axis_off()
    fig.suptitle(title)
    try:
        return _save_png(path, fig, dpi=90)
    finally:
        plt.close(fig)


# --- per job: reconstruction against the truth ---------------------------------------------


def _masked_crop(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`image` on the mask's bounding box, unlit pixels set to NaN (drawn blank)."""
    from flyrecon.metrics import bounding_box

    box = bounding_box(mask)
    return np.where(mask[box], image[box], np.nan)


def _shared_limits(*images: np.ndarray) -> tuple[float, float]:
    values = np.concatenate([im[np.isfinite(im)] for im in images])
    lo, hi = np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0)
    return float(lo), float(max(hi, lo + 1e-9))


def _image_panel(fig, ax, image: np.ndarray, title: str, cmap: str, limits) -> None:
    from matplotlib.ticker import MaxNLocator

    shown = ax.imshow(image, cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest")
    ax.set_title(title, fontsize=10, y=1.0)  # a fixed y skips matplotlib's title placement
    ax.set_axis_off()
    bar = fig.colorbar(shown, ax=ax, shrink=0.8)
    bar.locator = MaxNLocator(4)  # fewer ticks: drawing tick labels is most of a figure's time
    bar.update_ticks()


def _plot_frc(ax, frc: dict[str, list[float]] | None) -> None:
    from flyrecon.metrics import frc_resolution_px

    ax.set_title("Fourier ring correlation", fontsize=10, y=1.0)
    if not frc or not frc.get("frc"):
        ax.text(0.5, 0.5, "no FRC", ha="center", va="center", transform=ax.transAxes)
        return
    freq, curve = np.asarray(frc["frequency_cycles_per_px"]), np.asarray(frc["frc"])
    ax.plot(freq, curve, label="FRC")
    ax.axhline(0.5, color="tab:red", linestyle="--", linewidth=1, label="0.5")
    if frc.get("half_bit_threshold"):
        ax.plot(freq, frc["half_bit_threshold"], color="tab:green", linestyle=":", label="1/2 bit")
    for threshold, colour in ((0.5, "tab:red"), (frc.get("half_bit_threshold"), "tab:green")):
        if threshold is None:
            continue
        res_px, limited = frc_resolution_px(freq, curve, np.asarray(threshold))
        if not limited:
            ax.axvline(1.0 / res_px, color=colour, linewidth=0.8, alpha=0.6)
    ax.set_xlim(0, 0.5)
    ax.set_ylim(min(-0.1, float(np.nanmin(curve))), 1.05)
    ax.set_xlabel("spatial frequency (cycles/px)")
    ax.legend(fontsize=8)


@cache
def _compact_log_formatter() -> type:
    """matplotlib's log-axis formatter, labelling the ticks it chooses as 0.028, not as
    2.8 x 10^-2: a loss over less than two decades gets labelled minor ticks, and the
    narrower form keeps them inside the job figure's left edge."""
    from matplotlib.ticker import LogFormatterSciNotation

    class CompactLogFormatter(LogFormatterSciNotation):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:.3g}" if super().__call__(x, pos) else ""

    return CompactLogFormatter


@dataclass(frozen=True)
class StopMarks:
    """What the loss panel shows of the automatic stop."""

    trace: Mapping[str, Any]
    """`<name>_history` arrays of `convergence.ConvergenceTrace.arrays()`."""
    stop_kind: str
    stop_epoch: int
    averaged_epochs: int = 0


def _plot_loss(ax, loss: list[float] | np.ndarray, marks: StopMarks | None = None) -> None:
    """Loss per epoch (left axis); with `marks`, the stop rule's trace on the right axis
    (fit / noise floor, drift straightness with its threshold, the window's movement in
    units of its threshold), the averaged epochs shaded and the stop epoch marked."""
    from flyrecon.convergence import SETTLED_MOVEMENT, STRAIGHTNESS_CONVERGED

    ax.set_title("loss and automatic stop" if marks else "loss", fontsize=10, y=1.0)
    loss = np.asarray(loss, dtype=np.float64)
    if loss.size == 0:
        ax.text(0.5, 0.5, "no loss history", ha="center", va="center", transform=ax.transAxes)
        return
    from matplotlib.ticker import MaxNLocator

    epochs = np.arange(1, loss.size + 1)
    ax.plot(epochs, loss, marker=".", color="C0", label="loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 2.5
    if np.all(loss[np.isfinite(loss)] > 0):
        ax.set_yscale("log")
        compact = _compact_log_formatter()
        ax.yaxis.set_major_formatter(compact(base=10))
        ax.yaxis.set_minor_formatter(compact(base=10, labelOnlyBase=False))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="C0")
    if marks is None:
        return
    right = ax.twinx()
    fit = np.asarray(marks.trace.get("fit_history", []), dtype=np.float64)
    floor = np.asarray(marks.trace.get("noise_floor_history", []), dtype=np.float64)
    straight = np.asarray(marks.trace.get("straightness_history", []), dtype=np.float64)
    movement = np.asarray(marks.trace.get("movement_history", []), dtype=np.float64)
    if fit.size and np.isfinite(fit).any():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = fit / floor
        shown = np.where(epochs[: ratio.size] >= 2, ratio, np.nan)
        right.plot(epochs[: ratio.size], shown, color="C1", lw=1, label="fit / noise floor")
        right.axhline(1.0, color="C1", ls=":", lw=1)
    if straight.size and np.isfinite(straight).any():
        right.plot(epochs[: straight.size], straight, color="C2", lw=1, label="drift straightness")
        right.axhline(STRAIGHTNESS_CONVERGED, color="C2", ls=":", lw=1)
    if movement.size and np.isfinite(movement).any():
        label = f"movement / {100 * SETTLED_MOVEMENT:.2g} % of path"
        right.plot(
            epochs[: movement.size], movement / SETTLED_MOVEMENT, color="C4", lw=1, label=label
        )
    if marks.averaged_epochs:  # on the loss axes: under the loss line and the stop mark
        ax.axvspan(
            marks.stop_epoch - marks.averaged_epochs + 0.5,
            marks.stop_epoch + 0.5,
            color="0.85",
            label=f"{marks.averaged_epochs} iterates averaged",
        )
    ax.axvline(marks.stop_epoch, color="k", lw=1, ls="--")
    ax.annotate(
        f"stop: {marks.stop_kind} (epoch {marks.stop_epoch})",
        xy=(marks.stop_epoch, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(-4, -12),
        textcoords="offset points",
        ha="right",
        fontsize=8,
    )
    right.set_ylim(0, 1.6)
    right.set_ylabel("ratio")
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    right.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="center right")


def job_figure(
    path: Path,
    recon_aligned: np.ndarray,
    truth: np.ndarray,
    mask: np.ndarray,
    probe: np.ndarray | None,
    loss: list[float] | np.ndarray,
    frc: dict[str, list[float]] | None,
    title: str,
    marks: StopMarks | None = None,
) -> Path:
    """Truth vs aligned reconstruction on the illuminated region, as PNG.

    Row 1: amplitude of truth and reconstruction (one colour scale), their difference, the
    probe amplitude. Row 2: the same for phase (reconstruction phase = truth phase + wrapped
    difference, as the metrics use), the probe phase. Row 3: loss (log y) and FRC with the
    0.5 and half-bit thresholds. `recon_aligned` is `metrics.evaluate(...).aligned`, `frc`
    its metrics' "frc" entry (or None).
    """
    plt = _pyplot()
    t, r = np.asarray(truth, np.complex128), np.asarray(recon_aligned, np.complex128)
    amp_t, amp_r = _masked_crop(np.abs(t), mask), _masked_crop(np.abs(r), mask)
    phase_diff = _masked_crop(np.angle(r * np.conj(t)), mask)
    phase_t = _masked_crop(np.angle(t), mask)
    phase_r = phase_t + phase_diff
    amp_diff = amp_r - amp_t
    probe_amp = None if probe is None else np.abs(probe)
    probe_phase = None if probe is None else np.angle(probe)
    fig = plt.figure(figsize=(15, 11))  # a fixed grid: constrained layout costs ~1 s per job
    grid = fig.add_gridspec(
        3, 4, left=0.06, right=0.96, top=0.93, bottom=0.05, hspace=0.28, wspace=0.3
    )
    amp_limits, phase_limits = _shared_limits(amp_t, amp_r), _shared_limits(phase_t, phase_r)
    rows = [
        ("amplitude", amp_t, amp_r, amp_diff, "gray", amp_limits, "", probe_amp, "magma"),
        (
            "phase",
            phase_t,
            phase_r,
            phase_diff,
            "viridis",
            phase_limits,
            " (rad)",
            probe_phase,
            "twilight",
        ),
    ]
    for i, (name, tru, rec, diff, cmap, limits, unit, probe_image, probe_cmap) in enumerate(rows):
        spread = float(np.nanpercentile(np.abs(diff), 99.5)) if np.isfinite(diff).any() else 1.0
        panels = [
            (tru, f"truth {name}{unit}", cmap, limits),
            (rec, f"reconstruction {name}{unit}", cmap, limits),
            (diff, f"{name} difference{unit}", "RdBu_r", (-max(spread, 1e-9), max(spread, 1e-9))),
            (probe_image, f"probe {name}{unit}", probe_cmap, (None, None)),
        ]
        for j, (image, label, colours, lim) in enumerate(panels):
            ax = fig.add_subplot(grid[i, j])
            if image is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "no probe", ha="center", va="center", transform=ax.transAxes)
                continue
            _image_panel(fig, ax, image, label, colours, lim)
    _plot_loss(fig.add_subplot(grid[2, :2]), loss, marks)
    _plot_frc(fig.add_subplot(grid[2, 2:]), frc)
    fig.suptitle(title)
    try:
        return _save_png(path, fig, dpi=80)
    finally:
        plt.close(fig)


# --- per study: trends over dose ------------------------------------------------------------

VIEW_ORDER = ("baseline", "dense", "sparse")
SPLIT_STYLES = {"train": "--", "test": "-"}
LOWER_IS_BETTER = ("complex_relative_error", "frc_resolution_0p5_px")
STUDY_METRICS = (
    ("phase_ssim", "phase SSIM"),
    ("amplitude_ssim", "amplitude SSIM"),
    ("complex_relative_error", "complex relative error"),
    ("frc_resolution_0p5_px", "FRC 0.5 resolution (px)"),
)


@dataclass(frozen=True)
class JobSummary:
    """What the study figures need from one job."""

    dose: float
    view: str
    split: str
    status: str
    metrics: dict[str, Any] | None = None
    phase_image: np.ndarray | None = None
    """The phase to show in the grid (None: failed, not run or no image)."""
    method: str = "flyrecon"
    """Which method made the reconstruction (the study's own, or one given to report)."""
    truth_phase: np.ndarray | None = None
    """The true phase of the region the job illuminated, in the frame of `phase_image`."""


def _ordered_views(jobs: list[JobSummary]) -> list[str]:
    found = {j.view for j in jobs}
    return [v for v in VIEW_ORDER if v in found] + sorted(found - set(VIEW_ORDER))


def _series(jobs: list[JobSummary], key: str) -> dict[tuple[str, str, str], tuple[list, list]]:
    """(method, view, split) -> (doses, mean metric) over scored jobs, sorted by dose."""
    values: dict[tuple[str, str, str], dict[float, list[float]]] = {}
    for job in jobs:
        value = (job.metrics or {}).get(key)
        if job.dose > 0 and isinstance(value, int | float) and np.isfinite(value):
            line = (job.method, job.view, job.split)
            values.setdefault(line, {}).setdefault(job.dose, []).append(value)
    return {
        line: (sorted(by_dose), [float(np.mean(by_dose[d])) for d in sorted(by_dose)])
        for line, by_dose in values.items()
    }


METHOD_MARKERS = ("o", "^", "D", "v", "P", "X")


def metrics_vs_dose_figure(path: Path, jobs: Sequence[JobSummary]) -> Path:
    """One panel per metric of STUDY_METRICS: value vs dose (photons, log axis), a line per
    method, view and split (colour: view; line: split, test solid, train dashed; marker:
    method). Several jobs at one point are averaged; failed or unscored jobs are left out and
    counted in the title. One legend for the figure; each panel says which way is better."""
    plt = _pyplot()
    jobs = list(jobs)
    views = _ordered_views(jobs)
    colours = {v: f"C{i}" for i, v in enumerate(views)}
    methods = list(dict.fromkeys(j.method for j in jobs))
    markers = {m: METHOD_MARKERS[i % len(METHOD_MARKERS)] for i, m in enumerate(methods)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.6))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.2, hspace=0.35, wspace=0.25)
    handles: dict[str, Any] = {}
    for ax, (key, label) in zip(axes.ravel(), STUDY_METRICS, strict=True):
        series = _series(jobs, key)
        for (method, view, split), (doses, values) in sorted(series.items()):
            name = f"{view} / {split}" + (f" ({method})" if len(methods) > 1 else "")
            (line,) = ax.plot(
                doses,
                values,
                marker=markers[method],
                fillstyle="full" if split == "test" else "none",
                color=colours[view],
                linestyle=SPLIT_STYLES.get(split, ":"),
                label=name,
            )
            handles.setdefault(name, line)
        better = "lower is better" if key in LOWER_IS_BETTER else "higher is better"
        ax.set_title(f"{label} ({better})", fontsize=10)
        ax.set_xlabel("dose (photons per pattern)")
        if series:
            ax.set_xscale("log")
        else:
            ax.text(0.5, 0.5, "no scored job", ha="center", va="center", transform=ax.transAxes)
        ax.grid(True, which="both", alpha=0.3)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            ncol=min(len(handles), 4),
            fontsize=8,
            frameon=False,
        )
    unscored = sum(1 for j in jobs if not j.metrics)
    fig.suptitle(f"metrics vs dose ({len(jobs)} jobs, {unscored} failed or unscored)")
    try:
        return _save_png(path, fig, dpi=80)
    finally:
        plt.close(fig)


def dose_label(dose: float) -> str:
    """A dose as people write it: 1,000 photons."""
    return f"{dose:,.0f} photons"


def _crop_box(images: list[np.ndarray]) -> tuple[slice, slice] | None:
    """The bounding box of the finite pixels of all images (one frame)."""
    finite = np.zeros(images[0].shape, dtype=bool)
    for image in images:
        finite |= np.isfinite(image)
    rows, cols = np.flatnonzero(finite.any(axis=1)), np.flatnonzero(finite.any(axis=0))
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def phase_grid_figure(path: Path, jobs: Sequence[JobSummary], split: str) -> Path:
    """Phase images of one split: a row per dose (low to high); the truth, then a column per
    view. Every panel shows the same part of the object (the scanned region), outside the
    region each job illuminated blank, on one colour scale; each reconstruction's title gives
    its phase SSIM. An empty cell says why (not run, failed, no image).

    `phase_image` and `truth_phase` of the jobs are in objectGuess's frame (NaN outside)."""
    plt = _pyplot()
    jobs = [j for j in jobs if j.split == split]
    doses = sorted({j.dose for j in jobs})
    views = _ordered_views(jobs)
    cells = {(j.dose, j.view): j for j in jobs}
    truths = {
        dose: next(
            (j.truth_phase for j in jobs if j.dose == dose and j.truth_phase is not None), None
        )
        for dose in doses
    }
    images = [j.phase_image for j in jobs if j.phase_image is not None]
    images += [t for t in truths.values() if t is not None]
    same_frame = len({im.shape for im in images}) == 1
    box = _crop_box(images) if images and same_frame else None

    def crop(image: np.ndarray | None) -> np.ndarray | None:
        return image[box] if image is not None and box is not None else image

    shown = [crop(im) for im in images]
    limits = _shared_limits(*shown) if shown else (-np.pi, np.pi)
    columns = ["truth", *views]
    n_rows, n_cols = max(len(doses), 1), len(columns)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.8 * n_cols + 1, 2.6 * n_rows + 0.6), squeeze=False
    )
    fig.subplots_adjust(left=0.1, right=0.86, top=0.9, bottom=0.04, hspace=0.3, wspace=0.08)
    mappable = None
    for i, dose in enumerate(doses):
        for j, column in enumerate(columns):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if column == "truth":
                image, title, why = crop(truths.get(dose)), "truth", "no truth"
            else:
                job = cells.get((dose, column))
                image = crop(job.phase_image) if job is not None else None
                ssim = (job.metrics or {}).get("phase_ssim") if job is not None else None
                title = column + ("" if ssim is None else f": SSIM {ssim:.2f}")
                why = "not run" if job is None else (job.status or "no image")
            if image is not None:
                mappable = ax.imshow(image, cmap="viridis", vmin=limits[0], vmax=limits[1])
            else:
                ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)
            ax.set_title(title, fontsize=9)
            if j == 0:
                ax.set_ylabel(dose_label(dose))
    if mappable is not None:
        cax = fig.add_axes((0.89, 0.2, 0.02, 0.6))
        fig.colorbar(mappable, cax=cax, label="phase (rad)")
    fig.suptitle(f"phase, {split} split: rows dose, columns truth and views (scanned region)")
    try:
        return _save_png(path, fig, dpi=70)
    finally:
        plt.close(fig)


def study_figures(out_dir: Path, jobs: Sequence[JobSummary]) -> list[Path]:
    """metrics_vs_dose.png and one phase_grid_<split>.png per split, in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [metrics_vs_dose_figure(out_dir / layout.METRICS_VS_DOSE_PNG, jobs)]
    own = [j for j in jobs if j.method == jobs[0].method] if jobs else []
    for split in sorted({j.split for j in own}):
        paths.append(phase_grid_figure(out_dir / layout.phase_grid_png(split), own, split))
    return paths
