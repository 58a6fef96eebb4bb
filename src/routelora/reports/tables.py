"""Tables of a comparison run (:class:`~routelora.evaluation.suite.SuiteResult`), as markdown or as rows."""

from collections.abc import Mapping, Sequence

from routelora.evaluation.evaluate import EvalResult
from routelora.evaluation.routing_report import RoutingReport
from routelora.evaluation.suite import SuiteResult


def comparison_markdown(
    suite: SuiteResult, tasks: Sequence[str], routed: Mapping[str, str], base: str = "base", oracle: str = "oracle"
) -> str:
    """One row per task: the base, the task's own expert, then each routed condition's score with the share of
    text / image tokens sent to the task's own candidate (its expert; the base model for a task with none),
    averaged over layers. ``routed`` maps each routed condition's label to its column heading."""
    head = ["task", "base", "own expert"]
    for heading in routed.values():
        head += [heading, "text / image to own"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
    for task in tasks:
        own = suite.score(oracle, task)
        cells = [task, f"{suite.score(base, task):.3f}", f"{own:.3f}" if own is not None else ""]
        for label in routed:
            report = suite.routing[label][task]
            cells += [
                f"{suite.score(label, task):.3f}",
                f"{report.mean_share('text'):.2f} / {report.mean_share('image'):.2f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def router_markdown(
    scores: Mapping[str, Mapping[str, float]],
    shares: Mapping[str, Mapping[str, float]],
    specialised: Sequence[str],
    retention: Sequence[str],
) -> str:
    """One row per condition (``base``, ``oracle``, then routers): specialised scores as a share of the oracle's
    (each task capped at 100%), retention as points against the base, and the mean shares of text tokens sent to
    each task's own candidate."""
    head = ["router", *specialised, "specialised / oracle", *retention, "worst retention change"]
    head += ["specialised text to own expert", "retention text to base"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    oracle, base = scores["oracle"], scores["base"]
    for label, row in scores.items():
        # Capped at the oracle: a router that scores above it on one task (precision of a router that names fewer
        # genres, say) must not hide that it fails the others.
        ratio = [min(row[t] / oracle[t], 1.0) for t in specialised if oracle.get(t)]
        drop = min(row[t] - base[t] for t in retention) if label != "oracle" else 0.0
        own = [_mean_share(shares, label, specialised), _mean_share(shares, label, retention)]
        cells = [label, *(f"{row.get(t, float('nan')):.3f}" for t in specialised)]
        cells += [f"{100 * sum(ratio) / len(ratio):.0f}%" if label != "base" else ""]
        cells += [f"{row[t]:.3f}" if t in row else "" for t in retention]
        cells += [f"{100 * drop:+.1f}" if label != "oracle" else "", *own]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_share(shares: Mapping[str, Mapping[str, float]], label: str, tasks: Sequence[str]) -> str:
    """Mean share of text tokens sent to the task's own candidate over ``tasks``; blank for rows without shares."""
    if label not in shares:
        return ""
    return f"{sum(shares[label][t] for t in tasks) / len(tasks):.2f}"


def results_rows(results: Sequence[EvalResult]) -> list[tuple[str, str]]:
    """One row per task: metric, headline score and the other figures."""
    rows = []
    for result in results:
        others = ", ".join(f"{k} {v:.3f}" for k, v in result.scores.items() if k != "score" and isinstance(v, float))
        skipped = f", {result.skipped} skipped" if result.skipped else ""
        rows.append((result.task, f"{result.metric} {result.score:.3f}  (n={result.samples}{skipped}; {others})"))
    return rows


def routing_rows(reports: Sequence[RoutingReport]) -> list[tuple[str, str]]:
    """One row per task: own-expert share of image/text/generated tokens (mean over layers), routed vs oracle."""
    rows = []
    for r in reports:
        target = r.own_expert or "base"
        shares = ", ".join(f"{kind} {r.mean_share(kind):.2f}" for kind in ("image", "text", "generated"))
        oracle = f"; routed {r.routed_score:.3f} vs oracle {r.oracle_score:.3f}" if r.oracle_score is not None else ""
        rows.append((r.task, f"to {target}: {shares}{oracle}"))
    return rows
