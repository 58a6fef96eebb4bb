"""The paper's six claims, checked on the numbers of one run (normalised scores: bounded metrics as
percentages, CIDEr as a percentage of the task's specialist; "points" are points of that scale)."""

import math

from routelora.evaluation.suite import SuiteResult
from routelora.stream import StreamResult

CLOSED = "routelora, closed world"
"""Table 3's closed-world condition: the retention benchmarks' own statistics as base candidates."""

MTL = ("multitask-lora", "multitask-full")


def normalised(stream: StreamResult, scores: dict[str, float]) -> dict[str, float]:
    references = stream.references()
    return {task: 100.0 * score / references.get(task, 1.0) for task, score in scores.items()}


def specialised_mean(stream: StreamResult, scores: dict[str, float]) -> float:
    values = normalised(stream, {task: scores[task] for task in stream.tasks})
    return sum(values.values()) / len(values)


def retention_changes(stream: StreamResult, scores: dict[str, float]) -> dict[str, float]:
    after = normalised(stream, {task: scores[task] for task in stream.retention})
    before = normalised(stream, {task: stream.zero_shot[task] for task in stream.retention})
    return {task: after[task] - before[task] for task in stream.retention}


def check_claims(stream: StreamResult, experiments: dict[str, SuiteResult]) -> list[dict]:
    """Each claim: its statement, whether it held (None where its methods were not run) and the numbers."""
    final = {name: result.final for name, result in stream.methods.items()}
    claims = []

    def claim(text: str, held, evidence: str) -> None:
        claims.append({"claim": text, "held": held, "evidence": evidence})

    routing = final.get("routelora")
    mtl = {name: specialised_mean(stream, final[name]) for name in MTL if name in final}
    if routing and mtl:
        ours, best = specialised_mean(stream, routing), max(mtl.values())
        shown = ", ".join(f"{name} {value:.1f}" for name, value in mtl.items())
        best_name = max(mtl, key=mtl.get)
        ours_by_task = normalised(stream, {t: routing[t] for t in stream.tasks})
        theirs_by_task = normalised(stream, {t: final[best_name][t] for t in stream.tasks})
        by_task = ", ".join(f"{t} {ours_by_task[t]:.1f} vs {theirs_by_task[t]:.1f}" for t in stream.tasks)
        claim(
            "1. routing's mean on the specialised tasks is at least 95% of multi-task learning's",
            ours >= 0.95 * best,
            f"routelora {ours:.1f} against the better multi-task variant's {best:.1f} ({shown}): "
            f"{100 * ours / best:.1f}%; per task against {best_name}: {by_task}",
        )
    if routing:
        changes = retention_changes(stream, routing)
        evidence = ", ".join(f"{task} {change:+.1f}" for task, change in changes.items())
        table3 = experiments.get("table3")
        if table3 is not None and CLOSED in table3.results:
            closed = retention_changes(stream, table3.by_condition()[CLOSED])
            evidence += "; closed world, with the benchmarks' own statistics (Table 3): " + ", ".join(
                f"{task} {change:+.1f}" for task, change in closed.items()
            )
        claim(
            "2. routing keeps every retention benchmark within 2 points of zero-shot (open world: no data of any "
            "retention benchmark in the router's statistics)",
            all(abs(change) <= 2.0 for change in changes.values()),
            evidence,
        )
    if "sequential-full" in final:
        changes = retention_changes(stream, final["sequential-full"])
        mean = sum(changes.values()) / len(changes)
        claim(
            "3. sequential fine-tuning loses at least 10 points on retention",
            mean <= -10.0,
            f"mean {mean:+.1f} points ("
            + ", ".join(f"{task} {change:+.1f}" for task, change in changes.items())
            + ")",
        )
    merges = {
        name: specialised_mean(stream, final[name]) for name in ("task-arithmetic", "averaging") if name in final
    }
    if routing and merges:
        ours = specialised_mean(stream, routing)
        claim(
            "4. routing beats task arithmetic and model averaging on the specialised tasks",
            all(ours > value for value in merges.values()),
            f"routelora {ours:.1f}; " + ", ".join(f"{name} {value:.1f}" for name, value in merges.items()),
        )
    table4 = experiments.get("table4")
    if table4 is not None:
        labels = list(table4.results)
        before, after = table4.by_condition()[labels[2]], table4.by_condition()[labels[3]]
        moves = {t: normalised(stream, {t: after[t]})[t] - normalised(stream, {t: before[t]})[t] for t in stream.tasks}
        claim(
            "5. adding the unrelated expert moves no specialised score by more than 1 point",
            all(abs(move) <= 1.0 for move in moves.values()),
            ", ".join(f"{task} {move:+.2f}" for task, move in moves.items()),
        )
    table5 = experiments.get("table5")
    if table5 is not None:
        scores = {label: row["arith_mixed"] for label, row in table5.by_condition().items()}
        singles = {label: value for label, value in scores.items() if label.endswith(" expert")}
        best_label = max(singles, key=singles.get)
        claim(
            "6. on the mixed arithmetic set, routing is at least as good as the best single expert",
            scores["routelora"] >= singles[best_label],
            f"routelora {scores['routelora']:.3f}, top-2 {scores['routelora top-2']:.3f}, "
            f"paper {scores['paper']:.3f}; best single: {best_label} {singles[best_label]:.3f}; "
            f"zero-shot {scores['zero-shot']:.3f}",
        )
    if routing and mtl:
        ours, best = specialised_mean(stream, routing), max(mtl.values())
        changes = retention_changes(stream, routing)
        claim(
            "beyond the paper: routing at or above multi-task learning on the specialised tasks, and at or above "
            "zero-shot on every retention benchmark",
            ours >= best and all(change >= 0 or math.isclose(change, 0, abs_tol=1e-9) for change in changes.values()),
            f"specialised {ours:.1f} against {best:.1f}; retention "
            + ", ".join(f"{t} {c:+.1f}" for t, c in changes.items()),
        )
    return claims
