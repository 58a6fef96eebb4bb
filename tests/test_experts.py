"""Stage 1 and 2 on the tiny VLM, and the routed model's invariants against PEFT."""

import hashlib
import json

import pytest
import torch
from peft import PeftModel

from routelora.cli.main import main
from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.experts import ExpertLibrary, load_expert, save_expert
from routelora.experts.peft_adapter import natural_key
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.gates.prototypes import compute_prototypes
from routelora.gates.train import GateTrainConfig, train_gates
from routelora.models import save_checkpoint
from routelora.routing.config import ONE_EXPERT, PRESETS, TEXT_PROTOTYPES, RouterConfig
from routelora.routing.model import attach_router
from tiny_tasks import CORPUS, colour_and_shape


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    colour, shape = colour_and_shape(root)
    config = ExpertTrainConfig(rank=4, steps=6, batch_size=4, lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    colour_dir = save_expert(train_expert(model, processor, colour, config, progress=False)[0], root / "exp-colour")
    shape_config = ExpertTrainConfig(rank=8, steps=6, batch_size=4, lr=1e-2)
    shape_dir = save_expert(train_expert(model, processor, shape, shape_config, progress=False)[0], root / "exp-shape")
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    for task, directory in ((colour, colour_dir), (shape, shape_dir)):  # every test may route: gates needed
        train_gates(model, processor, directory, task, GateTrainConfig(steps=2, batch_size=4), progress=False)
    return root, model, processor, {"colour": (colour, colour_dir), "shape": (shape, shape_dir)}


def _batch(processor, task):
    return VLMCollator(processor)(load_split(task, "train").samples[:4])


def test_expert_directory_has_peft_files_and_metadata(setup):
    _, model, _, tasks = setup
    _, directory = tasks["colour"]
    assert {"adapter_config.json", "adapter_model.safetensors", "expert.json", "loss_log.json"} <= {
        p.name for p in directory.iterdir()
    }
    expert = load_expert(directory)
    meta = json.loads((directory / "expert.json").read_text())
    assert meta["task"] == "colour" and meta["rank"] == 4 and len(expert.targets) == 7 * 4
    assert all(torch.count_nonzero(b) > 0 for b in expert.lora_B.values()), "training moved every B"


def test_a_trained_expert_is_the_adapter_peft_would_save(setup, tmp_path):
    """Written once from memory, the expert's adapter files are what PeftModel.save_pretrained writes: the same
    adapter_config.json and tensors (so PEFT, and AutoPeftModel, load it as their own)."""
    from safetensors.torch import load_file

    _, model, _, tasks = setup
    _, directory = tasks["colour"]
    peft_model = PeftModel.from_pretrained(model, directory)
    peft_model.save_pretrained(tmp_path / "by-peft")
    peft_model.unload()
    # PEFT writes its module lists in set order, which differs between runs: they are compared as sets
    ours, theirs = (
        _as_sets(json.loads((d / "adapter_config.json").read_text())) for d in (directory, tmp_path / "by-peft")
    )
    assert ours == theirs and ours["inference_mode"] is True and "auto_mapping" in ours
    written = json.loads((directory / "adapter_config.json").read_text())["target_modules"]
    assert written == sorted(written, key=natural_key), "module lists in module order, the same in every process"
    ours, theirs = (load_file(d / "adapter_model.safetensors") for d in (directory, tmp_path / "by-peft"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_one_expert_k1_routed_logits_equal_peft(setup):
    _, model, processor, tasks = setup
    task, directory = tasks["colour"]
    batch = _batch(processor, task)
    peft_model = PeftModel.from_pretrained(model, directory)
    with torch.no_grad():
        want = peft_model(**batch).logits
    peft_model.unload()
    router = attach_router(model, [load_expert(directory)], ONE_EXPERT)
    with torch.no_grad():
        got = model(**batch).logits
    router.detach()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_gate_training_changes_only_gates(setup):
    root, model, processor, tasks = setup
    for name, (task, directory) in tasks.items():
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}
        before = {k: v.clone() for k, v in model.state_dict().items()}
        trained, result = train_gates(
            model, processor, directory, task, GateTrainConfig(steps=4, batch_size=4), progress=False
        )
        after = model.state_dict()
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
        for file, digest in files.items():
            if file not in ("expert.json", "gates.safetensors", "prototypes.safetensors"):  # what gate training writes
                assert hashlib.sha256((directory / file).read_bytes()).hexdigest() == digest, file
        expert = load_expert(directory)
        assert expert.has_gates and set(expert.gates) == set(expert.targets)
        assert any(torch.count_nonzero(g) > 0 for g in expert.gates.values())
        assert json.loads((directory / "expert.json").read_text())["gate_training"]["task"] == name
        # what training returned in memory is what the directory now holds
        assert all(torch.equal(trained.gates[n], expert.gates[n]) for n in expert.targets)
        assert trained.prototypes.keys() == expert.prototypes.keys()
        assert all(torch.equal(trained.prototypes[n], expert.prototypes[n]) for n in expert.prototypes)


def test_library_save_load_gives_identical_routed_logits(setup, tmp_path):
    root, model, processor, tasks = setup
    library = ExpertLibrary(tmp_path / "lib")
    for _, directory in tasks.values():
        library.add(directory)
    batch = _batch(processor, tasks["shape"][0])
    experts = [load_expert(directory) for _, directory in tasks.values()]
    token_level = RouterConfig(top_k=2, granularity="token", vectors="gates", base_candidates=False)
    for config in (token_level, RouterConfig(base_candidates=False)):
        router = attach_router(model, experts, config)
        with torch.no_grad():
            direct = model(**batch).logits
        router.detach()
        router = attach_router(model, ExpertLibrary(tmp_path / "lib").load(), config)
        with torch.no_grad():
            reloaded = model(**batch).logits
        router.detach()
        assert torch.equal(direct, reloaded), config
    with torch.no_grad():
        plain = model(**batch).logits
    assert not torch.equal(plain, direct), "detach() must restore the base and routing must change something"


def test_cli_expert_and_gate_train(setup, tmp_path, capsys):
    root, model, processor, tasks = setup
    save_checkpoint(model, processor, tmp_path / "base")
    task_file = str(tasks["colour"][0].source)
    out = tmp_path / "cli-expert"
    assert (
        main(
            [
                "expert",
                "train",
                "--base",
                str(tmp_path / "base"),
                "--task",
                task_file,
                "--out",
                str(out),
                "--steps",
                "2",
                "--batch-size",
                "2",
                "--rank",
                "2",
                "--holdout",
                "2",
            ]
        )
        == 0
    )
    assert "validation (2 held-out samples): accuracy " in capsys.readouterr().out
    assert (
        main(
            [
                "gate",
                "train",
                "--base",
                str(tmp_path / "base"),
                "--expert",
                str(out),
                "--task",
                task_file,
                "--steps",
                "2",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    assert load_expert(out).has_gates and load_expert(out).rank == 2
    assert main(["expert", "train", "--base", str(tmp_path / "base"), "--task", task_file, "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_sequence_routing_decides_once_per_sequence_and_generates_with_the_cache(setup):
    root, model, processor, tasks = setup
    experts = [load_expert(directory) for _, directory in tasks.values()]
    samples = load_split(tasks["colour"][0], "train").samples[:2] + load_split(tasks["shape"][0], "train").samples[:2]
    batch = VLMCollator(processor)(samples, with_answers=False)
    for vectors, decide_from in (("gates", "each_layer"), ("prototypes", "each_layer"), ("prototypes", "embeddings")):
        config = RouterConfig(vectors=vectors, decide_from=decide_from, base_candidates=False, trace=True)
        router = attach_router(model, experts, config)
        with torch.no_grad():
            model(**batch)
            for layer in router.layers.values():
                per_sequence = layer.last_choice[:, 0].view(4, -1)
                assert (per_sequence == per_sequence[:, :1]).all(), "one choice for every token of a sequence"
            settings = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False)
            cached = model.generate(**batch, use_cache=True, **settings)
            uncached = model.generate(**batch, use_cache=False, **settings)
        router.detach()
        assert torch.equal(cached, uncached), vectors


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_routed_generation_equals_the_unrouted_model_with_one_expert(setup, preset):
    """Every preset, with and without the KV cache, on a left-padded batch of two prompt lengths: each sequence's
    tokens are those of PEFT's model with the expert (or of the plain base, where the router chose the base).

    This holds whatever keyword ``generate`` passes the cache under: before routelora found the cache by its type,
    transformers 5.24's rename of ``past_key_values`` made every decoding step look like a new prompt."""
    _, model, processor, tasks = setup
    colour, directory = tasks["colour"]
    shape = tasks["shape"][0]
    samples = load_split(colour, "train").samples[:3] + load_split(shape, "train").samples[:3]
    batch = VLMCollator(processor)(samples, with_answers=False)
    assert (batch["attention_mask"] == 0).any(), "the batch must be padded"
    settings = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
    with torch.no_grad():
        plain = model.generate(**batch, **settings)
        peft_model = PeftModel.from_pretrained(model, directory)
        with_expert = peft_model.generate(**batch, **settings)
        peft_model.unload()
    assert not torch.equal(plain, with_expert), "the expert must change the answers for the test to mean anything"
    # the shape prompts stand for a general skill of the base: the default router should keep them there
    general = {
        "shape": compute_prototypes(model, processor, samples[3:], load_expert(directory).targets, progress=False)
    }
    counts = []
    for use_cache in (True, False):
        router = attach_router(model, [load_expert(directory)], PRESETS[preset], base_prototypes=general)
        router.record()
        with torch.no_grad():
            routed = model.generate(**batch, use_cache=use_cache, **settings)
        counts.append(router.routing_counts())
        context = router.context
        to_expert = torch.ones(6, dtype=bool)  # a closed-world token-level router: every token takes the expert
        if context.shared is not None:
            to_expert = context.shared[1][:, 0] >= 0
        elif context.allowed is not None:  # an open-world token-level router: the sequences its region holds
            to_expert = context.allowed[:, 0]
        router.detach()
        if PRESETS[preset].open_world:
            assert to_expert.tolist() == [True] * 3 + [False] * 3, "colour prompts to the expert, shape to the base"
        want = torch.where(to_expert[:, None], with_expert, plain)
        assert torch.equal(routed, want), (preset, use_cache)
    # without the cache every step feeds the whole sequence again; each token is still counted once, as its kind
    assert counts[0].keys() == counts[1].keys() and all(torch.equal(counts[0][n], counts[1][n]) for n in counts[0])


def test_an_expert_in_memory_routes_by_the_prototypes_it_carries(setup, tmp_path):
    """Prototypes travel on the Expert like its gates: no directory is needed to route, and save/load keeps them."""
    import dataclasses

    from routelora.experts import save_expert

    _, model, processor, tasks = setup
    experts = [load_expert(directory) for _, directory in tasks.values()]
    assert all(expert.prototypes is not None for expert in experts)
    in_memory = [dataclasses.replace(expert, path=None) for expert in experts]
    batch = _batch(processor, tasks["shape"][0])
    logits = []
    for group in (experts, in_memory, [load_expert(save_expert(e, tmp_path / e.name)) for e in in_memory]):
        router = attach_router(model, group, RouterConfig(base_candidates=False))
        with torch.no_grad():
            logits.append(model(**batch).logits)
        router.detach()
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[0], logits[2])


def test_shared_decision_picks_each_tasks_expert_and_then_equals_it_alone(setup):
    """Decided from the prompt's embeddings, every layer applies the same expert to every token of a sequence,
    so the routed logits are that expert's alone; on these two tasks the prompt tells them apart."""
    root, model, processor, tasks = setup
    experts = [load_expert(directory) for _, directory in tasks.values()]
    router = attach_router(model, experts, RouterConfig(base_candidates=False, trace=True))
    for index, (task, _) in enumerate(tasks.values()):
        batch = _batch(processor, task)
        with torch.no_grad():
            routed = model(**batch).logits
        choices = torch.stack([layer.last_choice[:, 0] for layer in router.layers.values()])  # (layers, tokens)
        assert (choices == index).all(), f"{task.name}: every layer and token takes expert {index}"
        router.detach()
        alone = attach_router(model, [experts[index]], ONE_EXPERT)
        with torch.no_grad():
            want = model(**batch).logits
        alone.detach()
        router = attach_router(model, experts, RouterConfig(base_candidates=False, trace=True))
        torch.testing.assert_close(routed, want, atol=1e-5, rtol=1e-5)
    router.detach()


def test_attach_router_options_override_one_field_of_a_preset(setup):
    import routelora

    _, model, _, tasks = setup
    experts = [load_expert(directory) for _, directory in tasks.values()]
    router = routelora.attach_router(model, experts, routelora.PAPER_ROUTER, top_k=2)
    assert router.config == RouterConfig(
        top_k=2, granularity="token", vectors="gates", base_candidates=False, open_world=False
    )
    router.detach()
    router = routelora.attach_router(model, experts, base_candidates=False)
    assert router.config == RouterConfig(base_candidates=False)
    router.detach()


def test_shared_decision_needs_embedding_prototypes(setup, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from routelora.errors import RouteloraError

    _, model, _, tasks = setup
    old = tmp_path / "old"
    shutil.copytree(tasks["colour"][1], old)
    prototypes = load_file(old / "prototypes.safetensors")
    del prototypes["input_embeddings"], prototypes["routing.mean"]
    save_file(prototypes, old / "prototypes.safetensors")
    experts = [load_expert(old), load_expert(tasks["shape"][1])]
    with pytest.raises(RouteloraError, match="input-embedding prototype"):
        attach_router(model, experts, TEXT_PROTOTYPES, base_candidates=False)
    with pytest.raises(RouteloraError, match="expert colour has no feature statistics"):
        attach_router(model, experts, RouterConfig(base_candidates=False))
    assert getattr(model, "routelora_router", None) is None
    with pytest.raises(ValueError, match="prototypes"):
        RouterConfig(vectors="gates")


def test_routed_eval_with_report_and_heatmaps(setup, tmp_path, capsys):
    root, model, processor, tasks = setup
    save_checkpoint(model, processor, tmp_path / "base")
    library = ExpertLibrary(tmp_path / "lib")
    for _, directory in tasks.values():
        library.add(directory)
    task_files = [str(task.source) for task, _ in tasks.values()]
    assert (
        main(
            [
                "library",
                "base-prototypes",
                "--library",
                str(tmp_path / "lib"),
                "--base",
                str(tmp_path / "base"),
                "--task",
                task_files[0],
                "--samples",
                "4",
            ]
        )
        == 0
    )
    args = [
        "eval",
        "--model",
        str(tmp_path / "base"),
        "--library",
        str(tmp_path / "lib"),
        "--routing-report",
        "--heatmap-dir",
        str(tmp_path / "maps"),
        "--out",
        str(tmp_path / "r.json"),
    ]
    for task_file in task_files:
        args += ["--task", task_file]
    assert main(args) == 0  # the default router: sequence decisions by prototypes, base candidates
    printed = capsys.readouterr().out
    assert "to colour: image" in printed and "vs oracle" in printed
    confusion = printed.split("routing confusion matrix")[1].splitlines()
    assert confusion[1].split("|")[2:5] == [" colour ", " shape ", " base "]
    rows = {line.split("|")[1].strip(): [float(c) for c in line.split("|")[2:5]] for line in confusion[3:5]}
    assert set(rows) == {"colour (colour)", "shape (shape)"} and all(abs(sum(r) - 1) < 0.02 for r in rows.values())
    assert (tmp_path / "maps" / "routing-shape.png").stat().st_size > 1000
    routing = json.loads((tmp_path / "r.json").read_text())["routing"]
    assert {r["task"] for r in routing} == {"colour", "shape"}
    assert all(len(r["shares"]["text"]) == 7 * 4 for r in routing)
    assert all(abs(sum(r["sequence_shares"].values()) - 1) < 1e-6 for r in routing)
    assert main([*args[:5], "--expert", "colour", "--task", task_files[0]]) == 0
    assert main([*args[:5], "--router", "paper", "--task", task_files[0]]) == 0
    capsys.readouterr()
    assert main([*args[:5], "--router", "paper", "--granularity", "sequence", "--task", task_files[0]]) == 2
    assert "router options" in capsys.readouterr().err


def test_predict_shows_the_routing(setup, tmp_path, capsys):
    root, model, processor, tasks = setup
    save_checkpoint(model, processor, tmp_path / "base")
    library = ExpertLibrary(tmp_path / "lib")
    for _, directory in tasks.values():
        library.add(directory)
    image = root / "images" / "colour0.png"
    args = [
        "predict",
        "--base",
        str(tmp_path / "base"),
        "--library",
        str(tmp_path / "lib"),
        "--image",
        str(image),
        "--prompt",
        "What colour is the square?",
        "--max-new-tokens",
        "3",
        "--show-routing",
    ]
    assert main([*args, "--no-open-world"]) == 2, "a closed-world router needs base prototypes; the library has none"
    assert "--no-base-candidates" in capsys.readouterr().err
    assert main(args) == 0, "the default, open-world router needs none: what no expert accepts goes to the base"
    capsys.readouterr()
    args.append("--no-base-candidates")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "routing of the prompt tokens" in printed and "'<image>' x" in printed and "layers)" in printed
    assert main([*args[:5], "--image", str(root / "nope.png"), "--prompt", "hi"]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_grouped_generation_gives_each_sample_the_answer_of_its_route(setup):
    """Evaluation decides every sample's route first and generates each route's samples together (merged): the
    answers and the routing counts are those of the mixed batches, sample by sample."""
    from routelora.evaluation.evaluate import generate_answers
    from routelora.routing.grouping import decide_routes, route_batches

    _, model, processor, tasks = setup
    experts = [load_expert(directory) for _, directory in tasks.values()]
    colour, shape = (load_split(task, "train").samples for task, _ in tasks.values())
    samples = [s for pair in zip(colour[:4], shape[:4]) for s in pair]  # alternating, so batches are mixed
    collator = VLMCollator(processor)
    with attach_router(model, experts, base_candidates=False) as router:
        routes = decide_routes(router, collator(samples, with_answers=False))[:, 0].tolist()
        assert routes == [0, 1] * 4, "each task's prompts to its own expert"
        assert route_batches(routes, 3) == [[0, 2, 4], [1, 3, 5], [6, 7]], "full batches of one route, the rest mixed"
        answers, counts = [], []
        for grouped in (False, True):
            router.record()
            answers.append(generate_answers(model, collator, samples, 4, 3, False, group_by_route=grouped))
            counts.append(router.sequence_counts())
        assert answers[0] == answers[1] and torch.equal(counts[0], counts[1])
        assert counts[0].tolist() == [4, 4, 0]


def _as_sets(config: dict) -> dict:
    return {
        key: set(value) if key.endswith("modules") and isinstance(value, list) else value
        for key, value in config.items()
    }


def test_lora_plus_gives_lora_B_its_ratio_of_the_learning_rate(tmp_path):
    """On the first step lora_B is zero, so lora_A gets no gradient and Adam moves lora_B by lr * g / (|g| + eps):
    under LoRA+ exactly ``ratio`` times as far, from the same gradient."""
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    colour, _ = colour_and_shape(tmp_path)

    def first_step(ratio: float):
        config = ExpertTrainConfig(rank=4, steps=1, batch_size=4, lr=1e-3, warmup_ratio=0.0, lora_plus_ratio=ratio)
        return train_expert(model, processor, colour, config, progress=False)[0]

    plain, plus = first_step(1.0), first_step(16.0)
    assert plain.targets == plus.targets
    for name in plain.targets:
        assert torch.equal(plain.lora_A[name], plus.lora_A[name])
        assert plain.lora_B[name].abs().max() > 0
        torch.testing.assert_close(plus.lora_B[name], 16 * plain.lora_B[name], rtol=1e-5, atol=1e-9)
    assert plus.metadata["training"]["lora_plus_ratio"] == 16.0
    with pytest.raises(ValueError, match="lora_plus_ratio"):
        ExpertTrainConfig(lora_plus_ratio=0.0)
