"""The report's PNGs: per model, throughput and p50/p99 latency against concurrency, one line
per setup and protocol, with the in-process limits as horizontal references."""

from __future__ import annotations

from pathlib import Path

from scripts.measure.bench.setups import SETUP_BY_KEY, SETUPS

# one colour per setup; stock setups dashed, int8 dash-dotted, this project's solid
STYLES = {
    s.key: (f"C{i}", "--" if s.stock else "-." if s.int8 else "-") for i, s in enumerate(SETUPS)
}
MARKERS = {"http": "o", "grpc": "s"}


def series(report: dict, model: str) -> dict[tuple[str, str], list[dict]]:
    """{(setup, protocol): measured points by concurrency} for one model."""
    lines: dict[tuple[str, str], list[dict]] = {}
    for p in report["points"]:
        if p["model"] == model and "error" not in p:
            lines.setdefault((p["setup"], p["protocol"]), []).append(p)
    return {k: sorted(v, key=lambda p: p["concurrency"]) for k, v in lines.items()}


def draw(ax, lines: dict, key: str) -> None:
    """One line per (setup, protocol): `key` against concurrency, both axes logarithmic."""
    for (setup, protocol), pts in lines.items():
        color, dash = STYLES[setup]
        ax.plot(
            [p["concurrency"] for p in pts],
            [p[key] for p in pts],
            color=color,
            linestyle=dash,
            marker=MARKERS[protocol],
            label=f"{SETUP_BY_KEY[setup].label} [{protocol}]",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrency (perf_analyzer)")
    ax.grid(True, which="both", alpha=0.3)


def throughput_figure(plt, report: dict, model: str, lines: dict):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    draw(ax, lines, "throughput")
    limit = report["limits"][model].get("max_batch")
    if limit:
        ax.axhline(
            limit["throughput"],
            color="black",
            linestyle=":",
            linewidth=1,
            label=(
                f"in-process limit, batch {limit['batch']} "
                f"({limit['format']}, {limit['threads']} thr)"
            ),
        )
    one = report["limits"][model].get("batch1")
    if one:
        ax.axhline(
            one["throughput"],
            color="grey",
            linestyle=":",
            linewidth=1,
            label=f"in-process, batch 1 ({one['format']}, {one['threads']} thr)",
        )
    ax.set_ylabel("inferences / s")
    ax.set_title(f"{model}: throughput against concurrency")
    ax.legend(fontsize=7, loc="best")
    return fig


def latency_figure(plt, model: str, lines: dict):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, key, title in zip(axes, ("p50_ms", "p99_ms"), ("p50", "p99")):
        draw(ax, lines, key)
        ax.set_title(f"{model}: {title} latency")
    axes[0].set_ylabel("ms")
    axes[1].legend(fontsize=7, loc="best")
    return fig


def save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot(report: dict, out_dir: Path) -> list[Path]:
    """bench_<model>_{throughput,latency}.png for each model with a line of 2+ points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for model in report["models"]:
        lines = series(report, model)
        if not lines or all(len(v) < 2 for v in lines.values()):
            continue
        files.append(
            save(
                plt,
                throughput_figure(plt, report, model, lines),
                out_dir / f"bench_{model}_throughput.png",
            )
        )
        files.append(
            save(plt, latency_figure(plt, model, lines), out_dir / f"bench_{model}_latency.png")
        )
    return files
