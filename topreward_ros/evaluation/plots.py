"""The figures of ``topreward eval``: ROC, VOC against the static control, score distributions.

Drawn with matplotlib's Agg canvas on a ``Figure`` of its own (no pyplot, so
no global state and no display), and written atomically like every other
output; ``outcome.write_outputs`` decides which are drawn.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from topreward_ros.evaluation.report import Evaluation
from topreward_ros.files.atomic import write_atomic
from topreward_ros.scoring.calibration import roc_points


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    write_atomic(path, lambda f: f.write(buf.getvalue()))


def plot_roc(path: Path, evaluation: Evaluation) -> bool:
    """ROC curves of both success scores, the chosen thresholds marked; False when undefined."""
    m = evaluation.overall
    if m.auc_raw is None or m.auc_two_way is None:
        return False
    labels = [r["success"] for r in evaluation.scored]
    fig = _figure(5.5, 5)
    ax = fig.add_subplot(1, 1, 1)
    for key, name, auc, choice, color in (
        ("raw_success_score", "raw (default)", m.auc_raw, m.threshold_raw, "tab:blue"),
        ("two_way_success_score", "two-way", m.auc_two_way, m.threshold_two_way, "tab:orange"),
    ):
        fpr, tpr = roc_points([r[key] for r in evaluation.scored], labels)
        ax.plot(fpr, tpr, "-", color=color, label=f"{name}: AUC {auc:.3f}")
        if choice is not None:
            ax.plot(
                [choice.fpr],
                [choice.tpr],
                "o",
                color=color,
                label=f"{name} threshold {choice.threshold:.3f} (bal. acc. {choice.balanced_accuracy:.3f})",
            )
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set_xlabel("false positive rate (failures declared successful)")
    ax.set_ylabel("true positive rate (successes declared successful)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(f"success ROC over {m.episodes} episodes", fontsize=10)
    _save(fig, path)
    return True


def plot_voc_vs_control(path: Path, evaluation: Evaluation) -> None:
    """Per episode: VOC of the real video beside VOC of its static-video control."""
    import numpy as np

    rows = evaluation.scored
    fig = _figure(max(6.0, 0.45 * len(rows) + 2), 4.5)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["voc"] for r in rows], 0.4, color="tab:blue", label="episode VOC")
    ax.bar(
        x + 0.2,
        [r["control_voc"] for r in rows],
        0.4,
        color="tab:grey",
        label="static control VOC (first frame repeated)",
    )
    for i, r in enumerate(rows):
        ax.text(
            i,
            1.04,
            "S" if r["success"] else "F",
            ha="center",
            fontsize=7,
            color="tab:green" if r["success"] else "tab:red",
        )
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_ylim(-1.05, 1.12)
    ax.set_xticks(x, [r["episode"] for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("VOC (Spearman with time)")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("VOC per episode vs its static-video control (S success, F failure)", fontsize=10)
    _save(fig, path)


def plot_score_distributions(path: Path, evaluation: Evaluation) -> None:
    """Success scores of successes and failures (both scores), thresholds drawn."""
    import numpy as np

    m = evaluation.overall
    fig = _figure(9, 4)
    rng = np.random.default_rng(0)  # jitter only, for legibility
    for col, (key, name, choice) in enumerate(
        (
            ("raw_success_score", 'raw success score (log p(" True"), nats)', m.threshold_raw),
            ("two_way_success_score", "two-way success score (nats)", m.threshold_two_way),
        )
    ):
        ax = fig.add_subplot(1, 2, col + 1)
        for y, (flag, label, color) in enumerate(((0, "failures", "tab:red"), (1, "successes", "tab:green"))):
            values = [r[key] for r in evaluation.scored if r["success"] == flag]
            if values:
                ax.scatter(
                    values,
                    y + rng.uniform(-0.15, 0.15, len(values)),
                    color=color,
                    alpha=0.8,
                    label=f"{label} ({len(values)})",
                )
                ax.boxplot([values], positions=[y], orientation="horizontal", widths=0.5, showfliers=False)
        if choice is not None:
            ax.axvline(choice.threshold, color="black", linestyle="--", label=f"threshold {choice.threshold:.3f}")
        ax.set_yticks([0, 1], ["failures", "successes"])
        ax.set_ylim(-0.6, 1.6)
        ax.set_xlabel(name, fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("success scores by label", fontsize=10)
    _save(fig, path)
