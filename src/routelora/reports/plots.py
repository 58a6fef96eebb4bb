"""Routing-pattern heatmaps (the paper's Figures 3 and 4): layers x experts, share of tokens."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from routelora import io  # noqa: E402


def routing_heatmap(shares: torch.Tensor, layer_names: list[str], columns: list[str], title: str, out: Path) -> Path:
    """Draw ``shares`` (layers, columns) as a heatmap PNG with one row per adapted layer."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    height = max(3.0, 0.12 * len(layer_names) + 1.5)
    figure, axes = plt.subplots(figsize=(1.1 * len(columns) + 3.5, height))
    image = axes.imshow(shares.numpy(), aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    step = max(1, len(layer_names) // 28)
    axes.set_yticks(range(0, len(layer_names), step), [_short(n) for n in layer_names[::step]], fontsize=7)
    axes.set_xlabel("expert")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="share of tokens")
    return _save_png(figure, out)


def _save_png(figure, out: Path) -> Path:
    """Write ``figure`` to ``out`` atomically (its folder made if needed) and close it."""
    figure.tight_layout()
    try:
        io.write_with(out, lambda path: figure.savefig(path, dpi=110, format="png"))
    finally:
        plt.close(figure)
    return out


def routing_heatmaps(
    suite, label: str, folder: str | Path, prefix: str = "", title: str = "routing on {task}"
) -> list[Path]:
    """One heatmap per task of the routed condition ``label`` of a comparison
    (:class:`~routelora.evaluation.suite.SuiteResult`), as ``<folder>/<prefix>routing-<task>.png`` titled
    ``title`` with ``{task}`` filled in."""
    from routelora.evaluation.routing_report import layer_shares

    written = []
    for task, counts in suite.counts[label].items():
        png = Path(folder) / f"{prefix}routing-{task}.png"
        shown = title.format(task=task)
        written.append(routing_heatmap(layer_shares(counts), list(counts), suite.columns[label], shown, png))
    return written


def _short(name: str) -> str:
    """``model.language_model.layers.3.self_attn.q_proj`` -> ``3.q_proj``."""
    parts = name.split(".")
    if "layers" in parts:
        index = parts.index("layers")
        return ".".join(parts[index + 1 : index + 2] + parts[-1:])
    return name


def confusion_heatmap(reports: list, columns: list[str], title: str, out: Path) -> Path:
    """The routing confusion matrix of :func:`routelora.reports.tables.confusion_markdown` as a PNG: one row per
    task, one column per candidate (ordered as the rows' own candidates, ``base`` last, so the diagonal reads),
    each cell the share of the task's sequences (or tokens) sent there, printed."""
    from routelora.reports.tables import diagonal_columns  # tables imports the evaluation stack: only when drawn

    out = Path(out)
    columns = diagonal_columns(reports, columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    shares = torch.tensor([[r.candidate_shares().get(c, 0.0) for c in columns] for r in reports])  # (tasks, cands)
    figure, axes = plt.subplots(figsize=(0.9 * len(columns) + 3.0, 0.45 * len(reports) + 1.8))
    axes.imshow(shares.numpy(), aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    axes.set_yticks(range(len(reports)), [f"{r.task} ({r.own_expert or 'base'})" for r in reports])
    for row, col in torch.cartesian_prod(torch.arange(len(reports)), torch.arange(len(columns))).tolist():
        value = float(shares[row, col])
        axes.text(col, row, f"{value:.2f}", ha="center", va="center", color="black" if value > 0.5 else "white")
    axes.set_xlabel("chosen candidate")
    axes.set_ylabel("task (own candidate)")
    axes.set_title(title)
    return _save_png(figure, out)


def drop_bars(drops: dict[str, dict[str, float]], tasks: list[str], title: str, out: Path) -> Path:
    """The paper's Figure 2: per method (``drops`` method -> task -> points), grouped bars of each task's score
    minus its specialist's, on the normalised scale (0 is the specialist; below 0 lost)."""
    out = Path(out)
    methods = list(drops)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.75 * len(methods) * len(tasks) / 3 + 3), 4.2))
    width = 0.8 / max(1, len(tasks))
    for i, task in enumerate(tasks):
        positions = [m + (i - (len(tasks) - 1) / 2) * width for m in range(len(methods))]
        axes.bar(positions, [drops[m].get(task, float("nan")) for m in methods], width, label=task)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    axes.set_ylabel("score - specialist (normalised points)")
    axes.set_title(title)
    axes.legend(fontsize=8, ncols=min(4, len(tasks)))
    return _save_png(figure, out)


def accuracy_matrices(matrices: dict[str, list[list[float]]], tasks: list[str], title: str, out: Path) -> Path:
    """Every method's accuracy matrix ``R[step][task]`` (normalised scores) as small heatmaps side by side."""
    out = Path(out)
    columns = min(4, len(matrices))
    rows = -(-len(matrices) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for axes in grid.flat[len(matrices) :]:
        axes.axis("off")
    for axes, (method, matrix) in zip(grid.flat, matrices.items()):
        values = torch.tensor(matrix, dtype=torch.float32)  # (steps + 1, tasks)
        axes.imshow(values.numpy(), cmap="viridis", vmin=0.0, vmax=100.0, aspect="auto")
        for step in range(len(matrix)):
            for task, value in enumerate(matrix[step]):
                if value == value:  # not NaN
                    colour = "black" if value > 60 else "white"
                    axes.text(task, step, f"{value:.0f}", ha="center", va="center", fontsize=7, color=colour)
        axes.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right", fontsize=7)
        axes.set_yticks(range(len(matrix)), ["0-shot", *(str(s) for s in range(1, len(matrix)))], fontsize=7)
        axes.set_title(method, fontsize=9)
    figure.suptitle(title)
    return _save_png(figure, out)
