"""The paper in miniature at several seeds: the whole run (stream, Tables 3-5, claims) once per seed, each in its
own folder, and a summary that gives every claim's figures at each seed with their mean and spread. A claim is
held only where it held at every seed.

The seed moves everything a run draws: LoRA and gate initialisation, batch order, replay buffers, DARE's drops,
Arrow. The world and the pretrained base are shared by every seed (``world_seed`` and the cached base stay as
configured), so the spread is that of the recipes on one base, not of the base's own pretraining.
"""

import json
import statistics
from dataclasses import replace
from pathlib import Path

from routelora import io
from routelora.experiments.paper import PaperConfig, run_paper
from routelora.reports.document import Heading, Paragraph, Report, Table
from routelora.stream import StreamResult


def seeded(config: PaperConfig, seed: int) -> PaperConfig:
    """``config`` with every seed of the run (the stream's, each recipe's, the gates') set to ``seed``."""
    stream = config.stream
    return replace(
        config,
        stream=replace(
            stream,
            seed=seed,
            expert=replace(stream.expert, seed=seed),
            full=replace(stream.full, seed=seed),
            gates=replace(stream.gates, seed=seed),
        ),
    )


def run_seeds(config: PaperConfig, out: str | Path, seeds: list[int], progress: bool = True) -> dict:
    """Run the paper at each of ``seeds`` into ``out/seed-<n>`` (each resumable on its own), then write
    ``seeds.json`` and ``seeds.md``/``seeds.html`` into ``out``; returns the summary."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: give distinct seeds, got {seeds}")
    out = Path(out)
    runs = {seed: run_paper(seeded(config, seed), out / f"seed-{seed}", progress) for seed in seeds}
    checks = {seed: expert_checks(out / f"seed-{seed}" / "stream" / "experts") for seed in seeds}
    summary = summarise(runs, checks)
    io.write_json(out / "seeds.json", summary, indent=1)
    seeds_report(summary).write(out, "seeds")
    return summary


def expert_checks(folder: Path) -> dict[str, dict]:
    """Each stored expert's check against its task's trivial baseline (``experts.validation``), by folder."""
    checks = {}
    for path in sorted(Path(folder).glob("*/expert.json")):
        check = json.loads(path.read_text()).get("training", {}).get("validation_check")
        if check and "above_baseline" in check:
            checks[path.parent.name] = check
    return checks


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), lowest and highest."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "sd": sd, "min": min(values), "max": max(values)}


def summarise(runs: dict[int, dict], checks: dict[int, dict[str, dict]]) -> dict:
    """The claims, the specialised tasks' scores and the expert checks across seeds, from each seed's results."""
    seeds = list(runs)
    claims = []
    for index, first in enumerate(runs[seeds[0]]["claims"]):
        at_seed = [runs[seed]["claims"][index] for seed in seeds]
        figures = {
            name: {"values": [claim["figures"][name] for claim in at_seed]}
            | spread([claim["figures"][name] for claim in at_seed])
            for name in first.get("figures", {})
        }
        held = [claim["held"] for claim in at_seed]
        claims.append(
            {
                "claim": first["claim"],
                "held": held,
                "held_at_every_seed": all(value is True for value in held),
                "figures": figures,
            }
        )
    streams = {seed: StreamResult.from_json(runs[seed]["stream"]) for seed in seeds}
    tasks = streams[seeds[0]].tasks
    scores = {}
    for method in streams[seeds[0]].methods:
        finals = [streams[seed].methods[method].final for seed in seeds]
        values = {task: [final[task] for final in finals] for task in tasks}
        scores[method] = {task: {"values": values[task]} | spread(values[task]) for task in tasks}
    flagged = {
        seed: {name: check for name, check in checks[seed].items() if not check["above_baseline"]} for seed in seeds
    }
    return {
        "seeds": seeds,
        "claims": claims,
        "scores": scores,
        "tasks": tasks,
        "experts_checked": {seed: len(checks[seed]) for seed in seeds},
        "experts_not_above_baseline": flagged,
        "seconds": {seed: runs[seed]["seconds"]["total"] for seed in seeds},
        "environment": runs[seeds[0]]["environment"],
    }


def seeds_report(summary: dict) -> Report:
    """The summary as a report: each claim at each seed, its figures' spread, the routed scores' spread."""
    seeds = summary["seeds"]
    machine = summary["environment"]
    report = Report(f"routelora: the paper in miniature at {len(seeds)} seeds")
    report.add(
        Paragraph(
            f"Seeds {', '.join(map(str, seeds))}: each seed's full report is in `seed-<n>/report.html`. The world and "
            "the pretrained base are shared by every seed; the seed moves initialisation, batch order, replay "
            "buffers and every other draw. A claim is held only where it held at every seed. Machine: "
            f"{machine['cpu_model']} ({machine['cpus']} CPUs, torch kernels {machine['torch_cpu_capability']}), "
            f"torch {machine['torch']}; seconds per seed: "
            + ", ".join(f"{seed}: {summary['seconds'][seed]:.0f}" for seed in seeds)
            + "."
        ),
        Heading("The paper's claims at each seed"),
    )
    mark = {True: "yes", False: "no", None: "not run"}
    rows = []
    for claim in summary["claims"]:
        verdict = "**yes**" if claim["held_at_every_seed"] else "**no**"
        rows.append([claim["claim"], *(mark[held] for held in claim["held"]), verdict])
    report.add(Table(["claim", *(f"seed {seed}" for seed in seeds), "held at every seed"], rows))
    rows = []
    for claim in summary["claims"]:
        number = claim["claim"].split(".")[0] if claim["claim"][0].isdigit() else claim["claim"].split(":")[0]
        for name, figure in claim["figures"].items():
            values = ", ".join(f"{value:.3f}" for value in figure["values"])
            rows.append([number, name, values, f"{figure['mean']:.3f}", f"{figure['min']:.3f} .. {figure['max']:.3f}"])
    report.add(
        Heading("Each claim's figures"),
        Table(["claim", "figure", "at each seed", "mean", "range"], rows),
    )
    tasks = summary["tasks"]
    rows = [
        [method, *(f"{scores[t]['mean']:.3f} ± {scores[t]['sd']:.3f}" for t in tasks)]
        for method, scores in summary["scores"].items()
    ]
    report.add(
        Heading("Specialised tasks after the last task (mean ± standard deviation over the seeds)"),
        Table(["method", *tasks], rows),
    )
    rows = []
    for seed in seeds:
        flagged = summary["experts_not_above_baseline"][seed]
        names = ", ".join(f"{name} ({c['score']:.3f} vs {c['baseline']:.3f})" for name, c in flagged.items())
        rows.append([str(seed), str(summary["experts_checked"][seed]), names or "none"])
    report.add(
        Heading("Experts against their task's trivial baseline (held-out training samples)"),
        Table(["seed", "experts checked", "not above the baseline"], rows),
    )
    return report
