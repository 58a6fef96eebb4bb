"""The paper's six claims, checked on the numbers of one run (normalised scores: bounded metrics as
percentages, CIDEr as a percentage of the best CIDEr any method reached on the task in the run; "points" are points
of that scale). Claim 1 compares raw scores task by task, so no reference enters it."""

import math

from routelora.evaluation.suite import SuiteResult
from routelora.stream import StreamResult
from routelora.stream.result import UNBOUNDED

CLOSED = "routelora, closed world"
"""Table 3's closed-world condition: the retention benchmarks' own statistics as base candidates."""

NEAREST = "routelora, no region test"
"""Table 5's router without regions or base candidates: the nearest expert (or two) always takes the input."""

MTL = ("multitask-lora", "multitask-full")

MEAN_RATIO = 0.95
"""Claim 1 holds against a multi-task variant only if routing's mean per-task ratio to it reaches this..."""
FLOOR_RATIO = 0.85
"""...and no specialised task's ratio falls below this."""


def per_task_ratios(ours: dict[str, float], theirs: dict[str, float], tasks: list[str]) -> dict[str, float]:
    """Each task's score by routing over multi-task learning's, both on the task's own metric. Where multi-task
    learning scores 0, the ratio is 1 if routing scores at least as much (a tie, or better) and 0 otherwise."""
    ratios = {}
    for task in tasks:
        mine, other = ours[task], theirs[task]
        ratios[task] = mine / other if other > 0 else float(mine >= other)
    return ratios


def per_task_verdict(ratios: dict[str, float]) -> dict:
    """Claim 1's verdict on one multi-task variant's ratios: held (mean >= :data:`MEAN_RATIO` and lowest >=
    :data:`FLOOR_RATIO`), the mean, the lowest and the ratios."""
    mean, lowest = sum(ratios.values()) / len(ratios), min(ratios.values())
    return {"held": mean >= MEAN_RATIO and lowest >= FLOOR_RATIO, "mean": mean, "lowest": lowest, "ratios": ratios}


def claim_one(stream: StreamResult, final: dict[str, dict[str, float]]) -> dict | None:
    """Claim 1 on the final scores of a stream's methods: routing against each multi-task variant run, task by
    task (held only where it holds against every variant); None where routing or multi-task learning did not
    run. The normalised means follow, labelled as not the verdict, with CIDEr over :meth:`StreamResult.references`
    (a reference no method under test moves)."""
    routing, variants = final.get("routelora"), [name for name in MTL if name in final]
    if not routing or not variants:
        return None
    tasks = stream.tasks
    verdicts = {name: per_task_verdict(per_task_ratios(routing, final[name], tasks)) for name in variants}
    parts = []
    for name, verdict in verdicts.items():
        cells = ", ".join(f"{t} {routing[t]:.3f}/{final[name][t]:.3f} = {verdict['ratios'][t]:.2f}" for t in tasks)
        parts.append(f"against {name}: mean ratio {verdict['mean']:.2f}, lowest {verdict['lowest']:.2f} ({cells})")
    references = stream.references()
    fixed = ", ".join(f"{t} {references[t]:.3f}" for t in tasks if stream.metrics.get(t) in UNBOUNDED)
    means = ", ".join(f"{name} {specialised_mean(stream, final[name]):.1f}" for name in ["routelora", *variants])
    return {
        "claim": f"1. routing matches multi-task learning on every specialised task: its score over multi-task's, "
        f"each task on its own metric, has mean >= {MEAN_RATIO} and none below {FLOOR_RATIO}, against each "
        "multi-task variant",
        "held": all(verdict["held"] for verdict in verdicts.values()),
        "evidence": "; ".join(parts)
        + f". Not the verdict: normalised means (CIDEr over the run's best, {fixed}): "
        + means,
        "against": verdicts,
        "figures": {
            f"{part} vs {name}": verdict[part] for name, verdict in verdicts.items() for part in ("mean", "lowest")
        },
    }


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

    def claim(text: str, held, evidence: str, figures: dict[str, float]) -> None:
        claims.append({"claim": text, "held": held, "evidence": evidence, "figures": figures})

    routing = final.get("routelora")
    first = claim_one(stream, final)
    if first is not None:
        claims.append(first)
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
            changes,
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
            {"mean": mean},
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
            {"routelora": ours, **merges},
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
            moves,
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
            f"zero-shot {scores['zero-shot']:.3f}" + _without_regions(scores),
            {"routelora": scores["routelora"], "best single": singles[best_label]},
        )
    if first is not None:
        changes = retention_changes(stream, routing)
        means = ", ".join(f"{name} {verdict['mean']:.2f}" for name, verdict in first["against"].items())
        claim(
            "beyond the paper: routing at or above multi-task learning on the specialised tasks (mean per-task ratio "
            ">= 1 against each variant), and at or above zero-shot on every retention benchmark",
            all(verdict["mean"] >= 1.0 for verdict in first["against"].values())
            and all(change >= 0 or math.isclose(change, 0, abs_tol=1e-9) for change in changes.values()),
            f"mean per-task ratio {means}; retention " + ", ".join(f"{t} {c:+.1f}" for t, c in changes.items()),
            {f"mean vs {name}": verdict["mean"] for name, verdict in first["against"].items()},
        )
    return claims


def _without_regions(scores: dict[str, float]) -> str:
    """Table 5's rows without the region test (the nearest experts take the mixed set), where the run has them;
    not the verdict, which is the default, open-world router's."""
    nearest = {label: value for label, value in scores.items() if label.startswith(NEAREST)}
    if not nearest:
        return ""
    return ". Not the verdict, without the region test: " + ", ".join(f"{k} {v:.3f}" for k, v in nearest.items())
