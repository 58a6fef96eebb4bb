"""The paper-in-miniature report: its tables and figures from one run's numbers (see :mod:`.paper`)."""

import math
from pathlib import Path

from routelora.evaluation.routing_report import layer_shares
from routelora.evaluation.suite import SuiteResult
from routelora.experiments.paper_claims import check_claims, normalised, retention_changes, specialised_mean
from routelora.reports.document import Figure, Heading, Paragraph, Report, Table
from routelora.reports.plots import accuracy_matrices, confusion_heatmap, drop_bars, routing_heatmap
from routelora.stream import StreamResult
from routelora.stream.result import UNBOUNDED

SUMMARY_METRICS = ("MFT", "MFN", "MAA", "BWT", "forgetting (max)", "forgetting (last - diagonal)", "forward transfer")


def _f(value, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def build_report(stream: StreamResult, experiments: dict[str, SuiteResult], results: dict, out: Path):
    """The report of one run, and its claims (each with held / not held and the numbers)."""
    figures = out / "figures"
    claims = check_claims(stream, experiments)
    config = stream.config
    report = Report("routelora: the paper in miniature")
    seconds, machine = results["seconds"], results["environment"]
    cider = [t for t in stream.tasks if stream.metrics.get(t) in UNBOUNDED]
    references = ", ".join(f"{t} {stream.references()[t]:.3f}" for t in cider) or "no CIDEr task"
    report.add(
        Paragraph(
            f"Stream {' -> '.join(stream.tasks)}; retention benchmarks {', '.join(stream.retention)}; split "
            f"{config['split']}, {config['eval_limit'] or 'all'} samples per task. Expert recipe: "
            f"{config['expert']['steps']} steps at lr {config['expert']['lr']}, rank {config['expert']['rank']}; "
            f"full fine-tuning: {config['full']['steps']} steps per task at lr {config['full']['lr']}. Every method "
            f"on the same base, tasks, budgets and seeds. Ran in {seconds['total']:.0f} s (stream "
            f'{seconds["stream"]:.0f} s). Scores are each task\'s own metric; "normalised" puts bounded metrics as '
            "percentages and CIDEr as a percentage of the best CIDEr any method reached on the task in this run "
            f"({references}), a reference that no method under test moves. Claim 1 compares raw scores task by task."
        ),
        Paragraph(
            f"Machine: {machine['cpu_model']} ({machine['cpus']} CPUs, torch kernels "
            f"{machine['torch_cpu_capability']}, {machine['torch_threads']} threads), torch {machine['torch']}. "
            "Floating-point results differ between CPUs, so these figures are this machine's; results.json lists "
            "its vector extensions."
        ),
        Heading("The paper's claims"),
        Table(
            ["claim", "held", "numbers"],
            [
                [c["claim"], {True: "**yes**", False: "**no**", None: "not run"}[c["held"]], c["evidence"]]
                for c in claims
            ],
        ),
    )
    tasks, retention = stream.tasks, stream.retention
    final = {name: result.final for name, result in stream.methods.items()}
    header = ["method", *tasks, *retention, "specialised (normalised mean)", "retention change (mean points)"]
    rows = []
    for name, scores in final.items():
        changes = retention_changes(stream, scores)
        rows.append(
            [
                name,
                *(_f(scores[t]) for t in [*tasks, *retention]),
                _f(specialised_mean(stream, scores), 1),
                f"{sum(changes.values()) / len(changes):+.1f}",
            ]  # fmt: skip
        )
    rows.append(
        [
            "specialists (oracle, task id given)",
            *(_f(stream.specialists[t]) for t in tasks),
            *[""] * len(retention),
            "",
            "",
        ]
    )
    report.add(Heading("Table 1: every method after the last task"), Table(header, rows))
    summaries = {name: stream.summary(name) for name in stream.methods}
    report.add(
        Heading("Table 2: continual-learning metrics (normalised; — where a method is evaluated only at the end)"),
        Table(
            ["method", *SUMMARY_METRICS, "retention (mean)"],
            [[n, *(_f(s[m], 1) for m in SUMMARY_METRICS), _f(s["retention (mean)"], 1)] for n, s in summaries.items()],
        ),
        Paragraph(
            "Forward transfer (Lopez-Paz & Ranzato 2017): mean over tasks 2..T of a task's score by the model trained "
            "up to the task before it, minus the zero-shot base's; 0 wherever an unseen task scores what the base "
            "does (routing sends unseen tasks to the base; see docs/continual.md)."
        ),
    )
    columns = [*tasks, *retention]
    matrices = {name: stream.matrix(name, columns=columns) for name in stream.methods}
    png = accuracy_matrices(matrices, columns, "R[step][task], normalised", figures / "accuracy-matrices.png")
    report.add(
        Figure(
            png,
            "Every method's accuracy matrix, the retention benchmarks beside the stream's tasks: row 0 is the "
            "zero-shot base, row s after learning task s (blank: not evaluated).",
        )
    )
    drops = {
        name: {
            t: v - 100.0 * stream.specialists[t] / stream.references()[t]
            for t, v in normalised(stream, {t: scores[t] for t in tasks}).items()
        }  # fmt: skip
        for name, scores in final.items()
    }
    report.add(
        Heading("Figure 2: drop against the specialists"),
        Figure(
            drop_bars(drops, tasks, "final score minus the specialist's (normalised)", figures / "drops.png"),
            "Each method's final score on each task minus that task's specialist (0: as good as its own expert).",
        ),
    )
    _table3(report, experiments["table3"], [*tasks, *retention])
    _table4(report, stream, experiments["table4"], figures)
    _table5(report, experiments["table5"], figures)
    _table6(report, stream)
    _patterns(report, experiments["patterns"], figures)
    report.add(
        Heading("Environment"),
        Paragraph(", ".join(f"{k} {v}" for k, v in sorted(results["environment"].items()))),
    )
    return report, claims


def _table3(report: Report, suite: SuiteResult, tasks: list[str]) -> None:
    scores = suite.by_condition()
    # the stream's tasks first, then whatever else Table 3 scored (the general benchmarks no statistic came from)
    tasks = [*tasks, *(t for row in scores.values() for t in row if t not in tasks)]
    tasks = list(dict.fromkeys(tasks))
    rows = [[label, *(_f(row.get(t)) for t in tasks)] for label, row in scores.items()]
    report.add(
        Heading("Table 3: routing against each specialist on every task"),
        Table(["condition", *tasks], rows),
    )


def _table4(report: Report, stream: StreamResult, suite: SuiteResult, figures: Path) -> None:
    scores = suite.by_condition()
    labels = list(scores)
    evaluated = list(scores[labels[0]])
    rows = []
    for i, label in enumerate(labels):
        move = ""
        if i:
            moves = [
                normalised(stream, {t: scores[label][t]})[t] - normalised(stream, {t: scores[labels[i - 1]][t]})[t]
                for t in stream.tasks
            ]
            move = f"{max(moves, key=abs):+.2f}"
        rows.append([label, *(_f(scores[label][t]) for t in evaluated), move])
    report.add(
        Heading("Table 4: experts added one by one (default router)"),
        Table(["library", *evaluated, "largest specialised move (points)"], rows),
    )
    last = labels[-1]
    reports = [suite.routing[last][t] for t in evaluated]
    png = confusion_heatmap(reports, suite.columns[last], f"default router, library {last}", figures / "confusion.png")
    report.add(Figure(png, "Where each task's sequences went with every expert in the library (default router)."))


def _table5(report: Report, suite: SuiteResult, figures: Path) -> None:
    scores = suite.by_condition()
    evaluated = list(next(iter(scores.values())))
    rows = []
    for label, row in scores.items():
        routing = suite.routing.get(label, {}).get("arith_mixed")
        shares = ""
        if routing is not None:
            shares = ", ".join(f"{c} {v:.2f}" for c, v in routing.candidate_shares().items())
        rows.append([label, *(_f(row[t]) for t in evaluated), shares])
    report.add(
        Heading("Table 5: cross-modal transfer on the mixed arithmetic set"),
        Table(["condition", *evaluated, "arith_mixed routed to"], rows),
    )
    if "paper" in suite.counts:
        counts = suite.counts["paper"]["arith_mixed"]
        png = routing_heatmap(
            layer_shares(counts), list(counts), suite.columns["paper"], "paper router on arith_mixed",
            figures / "layers-arith_mixed.png",
        )  # fmt: skip
        report.add(
            Heading("Figure 4: routing over layers on the mixed arithmetic set"),
            Figure(png, "Share of tokens choosing each expert at each layer (the paper's token-level router)."),
        )


def _table6(report: Report, stream: StreamResult) -> None:
    rows = []
    for name in stream.methods:
        cost = stream.costs(name)
        per_step = " / ".join(f"{s:.0f}" for s in cost["train_seconds"])
        rows.append(
            [
                name,
                f"{cost['train_seconds_total']:.0f}",
                per_step,
                str(cost["samples_seen"]),
                f"{cost['trainable_parameters']:,}",
                str(cost["kept_samples"]),
                f"{cost['stored_bytes'] / 2**20:.1f}",
                f"{cost['learn_wall_seconds_total']:.0f}",
            ]  # fmt: skip
        )
    report.add(
        Heading("Table 6: what each method cost"),
        Paragraph(
            "Training seconds are those of the training runs each method needs (an expert shared by several methods "
            "is charged to each); wall seconds are what learning took in this run, with shared experts reused. "
            "Kept samples: training data a method keeps (replay buffers, validation splits, a multi-task model's "
            "data); stored: the method's tensors after the last task (weights, or experts with their gates and "
            "statistics), with the kept samples' images and text."
        ),
        Table(
            [
                "method",
                "training s",
                "per step",
                "samples seen",
                "trainable (largest run)",
                "samples kept",
                "stored MiB",
                "wall s",
            ],  # fmt: skip
            rows,
        ),
    )


def _patterns(report: Report, suite: SuiteResult, figures: Path) -> None:
    report.add(Heading("Figure 3: routing patterns of the paper's router"))
    for task, counts in suite.counts.get("paper", {}).items():
        png = routing_heatmap(
            layer_shares(counts), list(counts), suite.columns["paper"], f"paper router on {task}",
            figures / f"patterns-{task}.png",
        )  # fmt: skip
        report.add(Figure(png, f"{task}: share of tokens choosing each expert at each layer."))
