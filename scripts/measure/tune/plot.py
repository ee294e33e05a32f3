"""tune_<model>.png: per runtime, each configuration's p50 at concurrency 1 against its
throughput at the top concurrency, the Pareto front, the stock setup and the choice."""

from __future__ import annotations

from pathlib import Path

from scripts.measure.tune.rule import CONCURRENCY, P50_SLACK_MS


def figures(curve: dict, top: int) -> tuple[float, float] | None:
    low, high = curve.get(1) or curve.get("1") or {}, curve.get(top) or curve.get(str(top)) or {}
    return (low["p50_ms"], high["throughput"]) if "p50_ms" in low and "throughput" in high else None


def plot_fronts(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = report.get("judged_at", CONCURRENCY)[-1]  # the load's top concurrency
    runtimes = report["runtimes"]
    fig, axes = plt.subplots(1, len(runtimes), figsize=(6.5 * len(runtimes), 4.8), squeeze=False)
    for ax, (runtime, result) in zip(axes[0], runtimes.items()):
        choice = (result.get("choice") or {}).get("id")
        shown = {i: figures(c["curve"], top) for i, c in result["configs"].items()}
        shown = {i: xy for i, xy in shown.items() if xy}
        for i, (x, y) in shown.items():
            color = "tab:green" if result["configs"][i]["verdict"]["keeps_rule"] else "tab:gray"
            ax.scatter(x, y, color=color, s=30, zorder=2)
            ax.annotate(i, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = sorted((shown[i] for i in result["front"] if i in shown))
        if front:
            ax.plot(*zip(*front), color="tab:blue", linewidth=1, label="Pareto front")
        stock = figures(result["stock"], top)
        if stock:
            ax.scatter(*stock, marker="x", color="tab:red", s=60, label="stock setup", zorder=3)
            ax.axvline(
                stock[0] + P50_SLACK_MS,
                color="tab:red",
                linestyle=":",
                linewidth=1,
                label=f"stock p50 + {P50_SLACK_MS} ms",
            )
            ax.axhline(stock[1], color="tab:red", linestyle="--", linewidth=1)
        if choice in shown:
            ax.scatter(
                *shown[choice],
                marker="*",
                color="gold",
                edgecolor="black",
                s=220,
                label="choice",
                zorder=4,
            )
        ax.set_title(f"{report['model']} on {runtime}")
        ax.set_xscale("log")
        ax.set_xlabel("p50 at concurrency 1 (ms, log scale)")
        ax.set_ylabel(f"throughput at concurrency {top} (infer/s)")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("green: keeps the rule; gray: breaks it", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
