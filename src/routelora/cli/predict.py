"""``routelora predict``: answer one prompt (with an optional image), routed over a library, and show the routing."""

import argparse
from collections import Counter
from dataclasses import replace
from itertools import groupby
from pathlib import Path

from routelora.cli.common import add_model_arguments, add_router_arguments, model_load_options, router_config
from routelora.routing.config import RouterConfig


def predict(
    base: str,
    prompt: str,
    image: Path | None = None,
    library: Path | None = None,
    router: RouterConfig | None = None,
    max_new_tokens: int = 32,
    show_routing: bool = False,
    **load_options,
) -> tuple[str, list[tuple[str, str]]]:
    """Answer ``prompt`` about ``image``; with ``show_routing``, also each prompt token's choice per layer.

    Args:
        base: base model directory or hub id.
        prompt: the question.
        image: an image file (omit for a text-only prompt).
        library: expert library to route over (the base model alone when omitted).
        router: routing settings.
        max_new_tokens: generation budget.
        show_routing: return, per prompt token, the experts it chose (majority over layers, then each layer).
        load_options: keyword arguments of :func:`routelora.load_vlm` (``trust_remote_code``, ``language_model``,
            ``target_pattern``, ``dtype``, ``device``).

    Returns:
        The answer and, with ``show_routing``, ``(token, choices)`` rows.
    """
    import torch

    from routelora.data.collate import VLMCollator
    from routelora.data.samples import Sample
    from routelora.evaluation.evaluate import generate_answers
    from routelora.models import load_vlm
    from routelora.routing.model import attach_router

    model, processor = load_vlm(base, **load_options)
    sample = Sample(id="prompt", prompt=prompt, answer="", references=[], image=image, origin="command line")
    sample.load_image()  # a missing or unreadable image fails here, naming the file
    collator = VLMCollator(processor)
    if library is None:
        return generate_answers(model, collator, [sample], max_new_tokens, progress=False)[0], []
    config = router or RouterConfig()
    handle = attach_router(model, library, replace(config, trace=show_routing))
    answer = generate_answers(model, collator, [sample], max_new_tokens, progress=False)[0]
    rows = []
    if show_routing:
        batch = collator([sample], with_answers=False)
        with torch.no_grad():
            model(**batch)
        names = [*handle.expert_names, "base"]
        choices = torch.stack([layer.last_choice[:, 0] for layer in handle.layers.values()])  # (layers, tokens)
        # Each token decoded on its own and quoted, so byte-level pieces read as text (' a' rather than 'Ġa').
        tokens = [repr(collator.tokenizer.decode([token_id])) for token_id in batch["input_ids"][0].tolist()]
        for position, token in enumerate(tokens):
            picks = [names[i] if i >= 0 else "base" for i in choices[:, position].tolist()]
            top, count = Counter(picks).most_common(1)[0]
            rows.append((token, f"{top} ({count}/{len(picks)} layers)"))
        rows = _collapse_runs(rows)
    handle.detach()
    return answer, rows


def _collapse_runs(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Runs of one token with one choice (the image tokens, mostly) as a single row: ``'<image>' x9``."""
    collapsed = []
    for (token, choice), run in groupby(rows):
        count = sum(1 for _ in run)
        collapsed.append((token if count == 1 else f"{token} x{count}", choice))
    return collapsed


def _run(args: argparse.Namespace) -> None:
    answer, rows = predict(
        args.base,
        args.prompt,
        args.image,
        args.library,
        router_config(args),
        args.max_new_tokens,
        args.show_routing,
        **model_load_options(args),
    )
    print(answer)
    if rows:
        print("\nrouting of the prompt tokens (most chosen expert over layers):")
        width = max(len(token) for token, _ in rows)
        for token, choice in rows:
            print(f"  {token:<{width}}  {choice}")


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``predict`` to the CLI."""
    parser = subcommands.add_parser("predict", help="answer one prompt, optionally routed, and show the routing")
    parser.add_argument("--base", required=True, help="base model directory or hub id")
    parser.add_argument("--prompt", required=True, help="the question")
    parser.add_argument("--image", type=Path, help="image file")
    parser.add_argument("--library", type=Path, help="expert library to route over")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--show-routing", action="store_true", help="print each prompt token's expert choice")
    add_model_arguments(parser, positional=False)
    add_router_arguments(parser)
    parser.set_defaults(run=_run)
