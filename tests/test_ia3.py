"""(IA)^3 experts: trained with PEFT's IA3Config, stored as PEFT's own files, routed alone and beside LoRA experts."""

import json

import pytest
import torch
from peft import PeftModel

from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.experts import ExpertLibrary, load_expert, save_expert
from routelora.experts.ia3 import ia3_targets
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.gates.train import GateTrainConfig, train_gates
from routelora.models.layout import get_layout
from routelora.routing.config import ONE_EXPERT, PAPER_ROUTER, RouterConfig
from routelora.routing.grouping import decide_routes
from routelora.routing.model import attach_router
from tiny_tasks import CORPUS, colour_and_shape

IA3 = ExpertTrainConfig(kind="ia3", steps=6, batch_size=4, lr=0.1)
LORA = ExpertTrainConfig(rank=4, steps=6, batch_size=4, lr=1e-2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ia3")
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    colour, shape = colour_and_shape(root)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ia3, _ = train_expert(model, processor, shape, IA3, progress=False)
    ia3, _ = train_gates(model, processor, ia3, shape, GateTrainConfig(steps=2, batch_size=4), progress=False)
    lora, _ = train_expert(model, processor, colour, LORA, progress=False)
    lora, _ = train_gates(model, processor, lora, colour, GateTrainConfig(steps=2, batch_size=4), progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "training leaves the base as it was"
    return root, model, processor, {"shape": (shape, ia3), "colour": (colour, lora)}


def _batch(processor, *tasks, n=3):
    samples = [s for task in tasks for s in load_split(task, "train").samples[:n]]
    return VLMCollator(processor)(samples, with_answers=False)


def test_targets_are_keys_values_and_the_down_projection(setup):
    _, model, _, tasks = setup
    expert = tasks["shape"][1]
    targets, feedforward = ia3_targets(get_layout(model).targets)
    assert expert.kind == "ia3" and expert.targets == targets and list(expert.ia3_input) == feedforward
    assert {name.rsplit(".", 1)[-1] for name in targets} == {"k_proj", "v_proj", "down_proj"}
    assert {name.rsplit(".", 1)[-1] for name in feedforward} == {"down_proj"}
    lora = tasks["colour"][1]
    assert expert.parameters * 10 < lora.parameters, "about ten times fewer numbers than a small LoRA"
    assert any((vector - 1).abs().max() > 1e-3 for vector in expert.ia3.values()), "training moved the vectors"


def test_the_expert_directory_is_the_adapter_peft_would_save(setup, tmp_path):
    from safetensors.torch import load_file

    _, model, _, tasks = setup
    directory = save_expert(tasks["shape"][1], tmp_path / "ia3")
    peft_model = PeftModel.from_pretrained(model, directory)
    peft_model.save_pretrained(tmp_path / "by-peft")
    peft_model.unload()
    # PEFT writes its module lists in set order, which differs between runs: they are compared as sets
    ours, theirs = (
        _as_sets(json.loads((d / "adapter_config.json").read_text())) for d in (directory, tmp_path / "by-peft")
    )
    assert ours == theirs and ours["peft_type"] == "IA3"
    ours, theirs = (load_file(d / "adapter_model.safetensors") for d in (directory, tmp_path / "by-peft"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    loaded = load_expert(directory)
    assert loaded.kind == "ia3" and loaded.ia3_input == tasks["shape"][1].ia3_input
    assert all(torch.equal(loaded.ia3[n], v) for n, v in tasks["shape"][1].ia3.items())
    assert loaded.gates.keys() == tasks["shape"][1].gates.keys()


@pytest.mark.parametrize("merge", [True, False])
def test_one_ia3_expert_at_k1_equals_peft(setup, tmp_path, merge):
    _, model, processor, tasks = setup
    shape, expert = tasks["shape"]
    directory = save_expert(expert, tmp_path / "ia3")
    batch = _batch(processor, shape)
    with torch.no_grad():
        plain = model(**batch).logits
        peft_model = PeftModel.from_pretrained(model, directory)
        want = peft_model(**batch).logits
        peft_model.unload()
        with attach_router(model, [load_expert(directory)], ONE_EXPERT, merge=merge):
            got = model(**batch).logits
    assert (want - plain).abs().max() > 1e-3, "the expert must change the logits for the test to mean anything"
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_mixed_kinds_route_each_task_to_its_expert_and_equal_it_alone(setup, tmp_path):
    """A library of one LoRA and one (IA)^3 expert: the default router sends each task's prompts to its own
    expert, and every sequence's logits then equal that expert's alone, in one mixed batch; the token-level router
    runs over both kinds too."""
    _, model, processor, tasks = setup
    library = ExpertLibrary(tmp_path / "library")
    for _, expert in tasks.values():
        library.add(expert)
    experts = library.load()
    batch = _batch(processor, tasks["colour"][0], tasks["shape"][0])  # 3 colour prompts, then 3 shape prompts
    with torch.no_grad():
        with attach_router(model, experts, base_candidates=False) as router:
            routes = decide_routes(router, batch)[:, 0].tolist()
            mixed = model(**batch).logits
        names = [e.name for e in experts]
        assert [names[i] for i in routes] == ["colour"] * 3 + ["shape"] * 3
        for rows, name in ((slice(0, 3), "colour"), (slice(3, 6), "shape")):
            with attach_router(model, [experts[names.index(name)]], ONE_EXPERT):
                alone = model(**batch).logits
            torch.testing.assert_close(mixed[rows], alone[rows], atol=1e-5, rtol=1e-5)
        with attach_router(model, experts, PAPER_ROUTER) as router:
            token_level = model(**batch).logits
        assert torch.isfinite(token_level).all()


def test_a_peft_ia3_adapter_made_elsewhere_is_imported(setup, tmp_path):
    from peft import IA3Config, get_peft_model

    _, model, processor, tasks = setup
    targets, feedforward = ia3_targets(get_layout(model).targets)
    peft_model = get_peft_model(model, IA3Config(target_modules=targets, feedforward_modules=feedforward))
    with torch.no_grad():
        for parameter in peft_model.parameters():
            if parameter.requires_grad:
                parameter.uniform_(0.5, 1.5)
    peft_model.save_pretrained(tmp_path / "elsewhere")
    batch = _batch(processor, tasks["shape"][0])
    with torch.no_grad():
        want = peft_model(**batch).logits
    peft_model.unload()
    library = ExpertLibrary(tmp_path / "library")
    library.add_peft(tmp_path / "elsewhere", "imported", model)
    expert = library.load(["imported"])[0]
    assert expert.kind == "ia3" and expert.input_sizes == {n: model.get_submodule(n).in_features for n in targets}
    with torch.no_grad(), attach_router(model, [expert], ONE_EXPERT):
        torch.testing.assert_close(model(**batch).logits, want, atol=1e-5, rtol=1e-5)


def test_routed_generation_with_ia3_equals_peft(setup, tmp_path):
    _, model, processor, tasks = setup
    shape, expert = tasks["shape"]
    directory = save_expert(expert, tmp_path / "ia3")
    batch = _batch(processor, shape)
    settings = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False)
    with torch.no_grad():
        plain = model.generate(**batch, **settings)
        peft_model = PeftModel.from_pretrained(model, directory)
        want = peft_model.generate(**batch, **settings)
        peft_model.unload()
        with attach_router(model, [expert], RouterConfig(base_candidates=False)):
            got = model.generate(**batch, **settings)
    assert not torch.equal(plain, want), "the expert must change the tokens for the test to mean anything"
    assert torch.equal(got, want)


def test_the_library_commands_list_and_show_both_kinds(setup, tmp_path, capsys):
    from routelora.cli.main import main

    _, _, _, tasks = setup
    library = ExpertLibrary(tmp_path / "library")
    for _, expert in tasks.values():
        library.add(expert)
    assert main(["library", "list", "--library", str(library.root)]) == 0
    listed = capsys.readouterr().out
    assert "ia3" in listed and "shape" in listed and "colour" in listed
    assert main(["library", "show", "shape", "--library", str(library.root)]) == 0
    shown = capsys.readouterr().out
    assert "(IA)^3 vectors" in shown and str(tasks["shape"][1].parameters) in shown


def test_gates_of_an_ia3_directory_can_be_written_again_over_broken_ones(setup, tmp_path):
    """save_routing reads the adapter's sizes from the adapter and expert.json only, so broken routing files
    are replaced rather than in the way."""
    from routelora.experts.expert import GATES, save_routing

    _, _, _, tasks = setup
    expert = tasks["shape"][1]
    directory = save_expert(expert, tmp_path / "ia3")
    (directory / GATES).write_bytes(b"not safetensors")
    save_routing(directory, expert)
    assert load_expert(directory).gates.keys() == expert.gates.keys()


def _as_sets(config: dict) -> dict:
    return {
        key: set(value) if key.endswith("modules") and isinstance(value, list) else value
        for key, value in config.items()
    }
