"""``routelora library list|show|add|remove --library LIB``: manage the experts of an expert library."""

import argparse
import json

from routelora.cli.common import add_model_arguments, model_load_options, print_table
from routelora.errors import RouteloraError


def _scores_text(scores: dict, prefix: str = "") -> list[str]:
    parts = []
    for key, value in scores.items():
        if isinstance(value, dict):
            parts += _scores_text(value, f"{prefix}{key}/")
        elif isinstance(value, float):
            parts.append(f"{prefix}{key}={value:.4g}")
        else:
            parts.append(f"{prefix}{key}={value}")
    return parts


def list_experts(library: str) -> list[dict]:
    """One summary row per expert: name, task, rank, number of targets, whether gates are trained, scores."""
    from routelora.experts import ExpertLibrary

    rows = []
    experts = ExpertLibrary(library)
    for name in experts.names():
        details = experts.show(name)
        ranks = details["ranks"]
        rows.append(
            {
                "name": name,
                "task": details.get("task") or "-",
                "rank": _rank_text(details["kind"], ranks),
                "targets": details["num_targets"],
                "gates": "yes" if details["has_gates"] else "no",
                "scores": " ".join(_scores_text(details.get("scores") or {})) or "-",
            }
        )
    return rows


def _rank_text(kind: str, ranks: list[int]) -> str:
    if kind == "ia3":
        return "ia3"
    return str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}-{ranks[-1]}"


def show_expert(library: str, name: str) -> dict:
    """Everything known about expert ``name``: ``expert.json``, ranks, targets, gates, sizes."""
    from routelora.experts import ExpertLibrary

    return ExpertLibrary(library).show(name)


def add_expert(
    library: str,
    expert_dir: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
    peft: str | None = None,
    base: str | None = None,
    trust_remote_code: bool = False,
    language_model: str | None = None,
    target_pattern: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
) -> str:
    """Copy an expert directory into ``library``, or bring in a PEFT adapter checked against the base model.

    Args:
        library: the library directory (created if needed).
        expert_dir: an expert directory (adapter files plus ``expert.json``).
        name: name in the library (default: the expert's own; required with ``peft``).
        overwrite: replace an expert of the same name.
        peft: a LoRA adapter directory written by PEFT elsewhere, instead of ``expert_dir``.
        base: the base model the adapter was trained on (required with ``peft``), loaded to verify it.
        trust_remote_code: allow the base model's own modelling code.
        language_model: module path of the base model's language model, for architectures routelora does not know.
        target_pattern: regular expression restricting the base model's adapter targets.
        dtype: weights' dtype of the base model.
        device: where to load the base model (default: cpu, enough to verify).

    Returns:
        The expert's name in the library.
    """
    from routelora.experts import ExpertLibrary
    from routelora.models import load_vlm

    if (expert_dir is None) == (peft is None):
        raise RouteloraError("give either an EXPERT_DIR or --peft DIR, not both or neither")
    if peft is None:
        return ExpertLibrary(library).add(expert_dir, name, overwrite)
    if not name or not base:
        raise RouteloraError("--peft needs --name NAME and --base MODEL (the base model the adapter was trained on)")
    model, _ = load_vlm(
        base,
        trust_remote_code=trust_remote_code,
        dtype=dtype,
        device=device or "cpu",
        language_model=language_model,
        target_pattern=target_pattern,
        with_processor=False,
    )
    return ExpertLibrary(library).add_peft(peft, name, model, overwrite)


def remove_expert(library: str, name: str) -> None:
    """Delete expert ``name`` from ``library``, leaving the others untouched."""
    from routelora.experts import ExpertLibrary

    ExpertLibrary(library).remove(name)


def _print_columns(rows: list[dict]) -> None:
    header = list(rows[0])
    cells = [header] + [[str(row[key]) for key in header] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _run_list(args: argparse.Namespace) -> None:
    rows = list_experts(args.library)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        _print_columns(rows)
    else:
        print(f"no experts in {args.library}")


def _run_show(args: argparse.Namespace) -> None:
    details = show_expert(args.library, args.name)
    if args.json:
        print(json.dumps(details, indent=2, default=str))
        return
    gate_training = details.get("gate_training")
    print_table(
        [
            ("name", details["name"]),
            ("task", str(details.get("task"))),
            ("path", details["path"]),
            ("base fingerprint", str(details.get("base_fingerprint"))),
            (
                "rank",
                _rank_text(details["kind"], details["ranks"]) + f" (alpha {details.get('alpha')})"
                if details["kind"] == "lora"
                else "- ((IA)^3 vectors)",
            ),
            ("targets", str(details["num_targets"])),
            ("gates", f"yes ({details['gate_parameters']} parameters)" if details["has_gates"] else "no"),
            ("gate training", json.dumps(gate_training) if gate_training else "-"),
            ("training", json.dumps(details.get("training") or {})),
            ("scores", " ".join(_scores_text(details.get("scores") or {})) or "-"),
            ("kind", details["kind"]),
            ("adapter parameters", str(details["adapter_parameters"])),
            ("size on disk", f"{details['bytes']} bytes in {len(details['files'])} files"),
            ("created", f"{details.get('created')} (routelora {details.get('routelora_version')})"),
        ]
    )


def _run_add(args: argparse.Namespace) -> None:
    name = add_expert(
        args.library,
        args.expert_dir,
        args.name,
        args.overwrite,
        args.peft,
        args.base,
        args.trust_remote_code,
        args.language_model,
        args.target_pattern,
        args.dtype,
        args.device,
    )
    print(f"added expert {name} to {args.library}")


def _run_remove(args: argparse.Namespace) -> None:
    remove_expert(args.library, args.name)
    print(f"removed expert {args.name} from {args.library}")


def base_prototypes(library: str, base: str, tasks: list[str], samples: int = 256, **load_options) -> list[str]:
    """Store the base model's routing prototypes of general skills in a library, one per task file.

    With ``--base-candidates`` the router then offers the base model itself: a sequence or token closer to a
    general skill than to any expert gets no expert. The data is general data of the base model (for the tiny
    base: its pretraining tasks), never a continual-learning task's.

    Args:
        library: the expert library directory.
        base: the base model.
        tasks: task YAML files of general data (their train split, else test split, is read).
        samples: prompts averaged per skill.
        load_options: keyword arguments of :func:`routelora.load_vlm` (``trust_remote_code``, ``language_model``,
            ``target_pattern``, ``dtype``, ``device``).
    """
    from routelora.data.task import load_task
    from routelora.gates.prototypes import store_base_prototypes
    from routelora.models import load_vlm

    general = [load_task(path) for path in tasks]  # fail on a bad task file before loading the model
    model, processor = load_vlm(base, **load_options)
    return [str(path) for path in store_base_prototypes(library, model, processor, general, samples)]


def _run_base_prototypes(args: argparse.Namespace) -> None:
    for path in base_prototypes(args.library, args.base, args.task, args.samples, **model_load_options(args)):
        print(f"wrote {path}")


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``library`` and its actions to the CLI."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--library", required=True, metavar="LIB", help="the expert library directory")
    parser = subcommands.add_parser("library", help="list, show, add and remove the experts of an expert library")
    actions = parser.add_subparsers(dest="library_action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[common], help="one line per expert")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=_run_list)

    show = actions.add_parser("show", parents=[common], help="everything about one expert")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(run=_run_show)

    add = actions.add_parser(
        "add", parents=[common], help="copy an expert in, or bring in a PEFT adapter (--peft DIR --base MODEL)"
    )
    add.add_argument("expert_dir", metavar="EXPERT_DIR", nargs="?", help="an expert directory")
    add.add_argument("--name", help="name in the library (default: the expert's own; required with --peft)")
    add.add_argument("--overwrite", action="store_true", help="replace an expert of the same name")
    add.add_argument("--peft", metavar="DIR", help="a LoRA adapter directory written by PEFT, instead of EXPERT_DIR")
    add.add_argument("--base", metavar="MODEL", help="with --peft: the base model it was trained on, to verify it")
    add_model_arguments(add, positional=False)
    add.set_defaults(run=_run_add)

    remove = actions.add_parser("remove", parents=[common], help="delete one expert")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(run=_run_remove)

    prototypes = actions.add_parser(
        "base-prototypes", parents=[common], help="store the base model's prototypes of general skills"
    )
    prototypes.add_argument("--base", required=True, metavar="MODEL", help="the base model")
    prototypes.add_argument("--task", action="append", required=True, help="task YAML of general data (repeat)")
    prototypes.add_argument("--samples", type=int, default=256, help="prompts averaged per skill")
    add_model_arguments(prototypes, positional=False)
    prototypes.set_defaults(run=_run_base_prototypes)
