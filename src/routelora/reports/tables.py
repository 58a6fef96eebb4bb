"""Tables of a comparison run (:class:`~routelora.evaluation.suite.SuiteResult`), as markdown or as rows."""

from collections.abc import Mapping, Sequence

from routelora.evaluation.evaluate import EvalResult
from routelora.evaluation.routing_report import RoutingReport
from routelora.evaluation.suite import SuiteResult


def comparison_markdown(
    suite: SuiteResult, tasks: Sequence[str], routed: Mapping[str, str], base: str = "base", oracle: str = "oracle"
) -> str:
    """One row per task: the base, the task's own expert, then each routed condition's score with the share of the
    task's inputs sent to its own candidate (its expert; the base model for a task with none): of its sequences, or
    of its text tokens averaged over layers (marked "tok") for a router without one decision per sequence.
    ``routed`` maps each routed condition's label to its column heading."""
    head = ["task", "base", "own expert"]
    for heading in routed.values():
        head += [heading, "to own"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
    for task in tasks:
        own = suite.score(oracle, task)
        cells = [task, f"{suite.score(base, task):.3f}", f"{own:.3f}" if own is not None else ""]
        for label in routed:
            report = suite.routing[label][task]
            share = f"{report.own_share:.2f}" + ("" if report.sequence_shares else " tok")
            cells += [f"{suite.score(label, task):.3f}", share]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def router_markdown(
    scores: Mapping[str, Mapping[str, float]],
    shares: Mapping[str, Mapping[str, float]],
    specialised: Sequence[str],
    retention: Sequence[str],
) -> str:
    """One row per condition (``base``, ``oracle``, then routers): specialised scores, the lowest share of the
    oracle's score over those tasks (each capped at 100%), retention as points against the base, and the worst
    share (over the tasks) of inputs sent to each task's own candidate: its sequences, or its text tokens for a
    router without one decision per sequence."""
    head = ["router", *specialised, "worst specialised / oracle", *retention, "worst retention change"]
    head += ["worst specialised to own expert", "worst retention to base"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    oracle, base = scores["oracle"], scores["base"]
    for label, row in scores.items():
        # Capped at the oracle: a router that scores above it on one task (precision of a router that names fewer
        # genres, say) must not hide that it fails the others.
        ratio = [min(row[t] / oracle[t], 1.0) for t in specialised if oracle.get(t)]
        drop = min(row[t] - base[t] for t in retention) if label != "oracle" else 0.0
        own = [_worst_share(shares, label, specialised), _worst_share(shares, label, retention)]
        cells = [label, *(f"{row.get(t, float('nan')):.3f}" for t in specialised)]
        cells += [f"{100 * min(ratio):.0f}%" if label != "base" else ""]
        cells += [f"{row[t]:.3f}" if t in row else "" for t in retention]
        cells += [f"{100 * drop:+.1f}" if label != "oracle" else "", *own]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _worst_share(shares: Mapping[str, Mapping[str, float]], label: str, tasks: Sequence[str]) -> str:
    """Lowest share sent to the task's own candidate over ``tasks``; blank for rows without shares."""
    if label not in shares:
        return ""
    return f"{min(shares[label][t] for t in tasks):.2f}"


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


def diagonal_columns(reports: Sequence[RoutingReport], columns: Sequence[str]) -> list[str]:
    """``columns`` reordered so that the confusion matrix's diagonal is each row's own candidate: the rows' own
    experts in the order of the rows, then any expert that no row owns (in its given order), ``base`` last."""
    owned = [r.own_expert for r in reports if r.own_expert and r.own_expert in columns]
    ordered = list(dict.fromkeys(owned))  # first occurrence wins: two rows of one expert share its column
    ordered += [c for c in columns if c not in ordered and c != "base"]
    return ordered + (["base"] if "base" in columns else [])


def confusion_markdown(reports: Sequence[RoutingReport], columns: Sequence[str]) -> str:
    """The routing confusion matrix: one row per task (its own candidate in brackets), one column per candidate
    in the order of the rows' own candidates (:func:`diagonal_columns`, ``base`` last), each cell the share of the
    task's sequences sent there (of its tokens, for a router without one decision per sequence)."""
    columns = diagonal_columns(reports, columns)
    unit = "sequences" if all(r.sequence_shares for r in reports) else "tokens"
    head = [f"task (own) / share of {unit} to", *columns]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for report in reports:
        shares = report.candidate_shares()
        cells = [f"{report.task} ({report.own_expert or 'base'})"]
        cells += [f"{shares.get(column, 0.0):.2f}" for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def regions_markdown(reports: Sequence[RoutingReport]) -> str:
    """An open-world router's regions: one row per task, one column per expert (its threshold in the heading), each
    cell the share of the task's sequences that expert's region held; the last column the share that no region held
    (sent to the base model). Empty for a closed-world router."""
    found = [report for report in reports if report.region_shares]
    if not found:
        return ""
    thresholds = found[0].thresholds
    experts = [name for name in found[0].region_shares if name != "none"]
    head = ["task", *(f"{name} (threshold {thresholds.get(name, float('nan')):.0f})" for name in experts)]
    head.append("no region: to the base")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for report in found:
        cells = [report.task, *(f"{report.region_shares[name]:.2f}" for name in [*experts, "none"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
