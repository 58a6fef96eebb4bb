"""A stream's result: each method's accuracy matrix over the stream's tasks and the retention benchmarks, with
the metrics and the cost table computed from it."""

import math
from dataclasses import dataclass, field

from routelora.metrics.continual import normalise, retention_change, summarise

BOUNDED_MAXIMUM = 1.0
UNBOUNDED = ("cider",)
"""Metrics without a natural maximum: normalised by the best score any method reached on the task in the run (see
``metrics.continual.normalise``)."""


@dataclass
class MethodResult:
    """One method over the stream: a row of scores per step (None where it was not evaluated), and what each
    step cost."""

    name: str
    rows: list[dict[str, float] | None] = field(default_factory=list)
    """Row 0: the zero-shot base; row s: after learning the stream's task s (1-based)."""
    steps: list[dict] = field(default_factory=list)
    """Per learned step: learn and evaluation seconds, training cost, bytes stored, samples kept."""

    def add(self, step: int, row: dict) -> None:
        while len(self.rows) <= step:
            self.rows.append(None)
        self.rows[step] = row["scores"]
        self.steps.append({"step": step, **{key: value for key, value in row.items() if key != "scores"}})

    @property
    def final(self) -> dict[str, float]:
        return self.rows[-1]


@dataclass
class StreamResult:
    """Everything a stream measured."""

    config: dict
    tasks: list[str]
    retention: list[str]
    metrics: dict[str, str]
    """Task -> its headline metric's name."""
    zero_shot: dict[str, float]
    specialists: dict[str, float]
    """Each stream task's score with its own expert alone (the oracle)."""
    methods: dict[str, MethodResult]
    environment: dict = field(default_factory=dict)

    def references(self) -> dict[str, float]:
        """Each task's normalisation reference: 1 for bounded metrics; for CIDEr, the best score any method (the
        specialists and the zero-shot base included) reached on the task at any step of the run. Not the task's
        own specialist: that moves with the experts routing is made of, so it would flatter routing and inflate
        every method that beats a weak expert."""
        out = {}
        for task, metric in self.metrics.items():
            if metric in UNBOUNDED:
                out[task] = max(self.reached(task), default=0.0) or math.nan
            else:
                out[task] = BOUNDED_MAXIMUM
        return out

    def reached(self, task: str) -> list[float]:
        """Every score of ``task`` in the run: each method's evaluated rows, the specialist and the zero-shot base."""
        scores = [row[task] for result in self.methods.values() for row in result.rows if row and task in row]
        scores += [table[task] for table in (self.specialists, self.zero_shot) if task in table]
        return [score for score in scores if not math.isnan(score)]

    @classmethod
    def from_json(cls, data: dict) -> "StreamResult":
        """A result back from its :meth:`to_json` (``stream.json``, or a demo ``results.json``'s ``stream``), so
        that its metrics and claims can be recomputed from the stored scores."""
        methods = {}
        for name, stored in data["methods"].items():
            methods[name] = MethodResult(name, [dict(row) if row else None for row in stored["rows"]], stored["steps"])
        fields = ("config", "tasks", "retention", "metrics", "zero_shot", "specialists")
        return cls(**{key: data[key] for key in fields}, methods=methods, environment=data.get("environment", {}))

    def matrix(self, method: str, normalised: bool = True, columns: list[str] | None = None) -> list[list[float]]:
        """``R[step][task]`` over the stream's tasks, or over ``columns`` (retention benchmarks too, say); NaN where
        a step was not evaluated."""
        columns = columns or self.tasks
        references = self.references()
        rows = []
        for row in self.methods[method].rows:
            scores = {task: row[task] if row else math.nan for task in columns}
            if normalised:
                scores = {task: 100.0 * scores[task] / references[task] for task in columns}
            rows.append([scores[task] for task in columns])
        return rows

    def summary(self, method: str) -> dict[str, float]:
        """The continual metrics of ``method``'s normalised matrix, its retention change against zero-shot (in
        points of each benchmark's normalised score) and the mean of those changes."""
        matrix = self.matrix(method)
        out = summarise(matrix) if all(not math.isnan(v) for row in matrix for v in row) else _final_only(matrix)
        final = self.methods[method].final
        references = self.references()
        before = normalise({t: self.zero_shot[t] for t in self.retention}, references)
        after = normalise({t: final[t] for t in self.retention}, references)
        changes = retention_change(before, after)
        out |= {f"retention {task}": change for task, change in changes.items()}
        out["retention (mean)"] = sum(changes.values()) / len(changes) if changes else math.nan
        return out

    def costs(self, method: str) -> dict:
        """The method's cost table row: training seconds per step and in all, samples seen, largest trainable
        parameter count, samples kept and bytes stored after the last step."""
        steps = self.methods[method].steps
        return {
            "train_seconds": [step["cost"]["seconds"] for step in steps],
            "train_seconds_total": sum(step["cost"]["seconds"] for step in steps),
            "learn_wall_seconds_total": sum(step["learn_seconds"] for step in steps),
            "samples_seen": sum(step["cost"]["samples"] for step in steps),
            "trainable_parameters": max((step["cost"]["trainable"] for step in steps), default=0),
            "kept_samples": steps[-1]["kept_samples"] if steps else 0,
            "stored_bytes": steps[-1]["stored_bytes"] if steps else 0,
        }

    def to_json(self) -> dict:
        return {
            "config": self.config,
            "tasks": self.tasks,
            "retention": self.retention,
            "metrics": self.metrics,
            "zero_shot": self.zero_shot,
            "specialists": self.specialists,
            "references": self.references(),
            "methods": {
                name: {
                    "rows": result.rows,
                    "steps": result.steps,
                    "matrix": _finite(self.matrix(name)),
                    "summary": _finite(self.summary(name)),
                    "costs": self.costs(name),
                }
                for name, result in self.methods.items()
            },
            "environment": self.environment,
        }


def _final_only(matrix: list[list[float]]) -> dict[str, float]:
    """A method evaluated only after the last step (multi-task learning): MFN; the rest are undefined."""
    out = summarise([[0.0] * len(matrix[0])] * len(matrix))
    out = {name: math.nan for name in out}
    out["MFN"] = sum(matrix[-1]) / len(matrix[-1])
    return out


def _finite(value):
    """NaN (a step that was not evaluated, a metric undefined for a method) as None: JSON has no NaN."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return None if isinstance(value, float) and math.isnan(value) else value
