"""Expert directories (PEFT files + gates + expert.json), the expert library, and ``routelora library``."""

import argparse
import json
import math
import shutil
import sys

import pytest
import torch
import transformers as tf
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from families import build_family, family_configs
from routelora.cli import library as library_cli
from routelora.cli import main as cli_main
from routelora.errors import RouteloraError
from routelora.experts import (
    ExpertFormatError,
    ExpertLibrary,
    IncompatibleExpertError,
    LibraryError,
    base_fingerprint,
    check_compatible,
    expert_from_peft,
    expert_metadata,
    load_expert,
    save_expert,
    save_gates,
    write_expert_json,
)
from routelora.models import load_vlm

LM = "model.language_model.layers"
TARGETS = [f"{LM}.0.self_attn.q_proj", f"{LM}.0.self_attn.v_proj", f"{LM}.1.mlp.down_proj"]
VISION = "model.vision_tower.encoder.layers.0.self_attn.q_proj"


def make_peft(path, targets=TARGETS, r=4, alpha=8, seed=0, **options):
    """A PEFT LoRA on a fresh tiny LLaVA, with random non-zero lora_B, saved by PEFT itself."""
    model = get_peft_model(build_family("llava"), LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, **options))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(path)
    return path


def run_cli(argv: list[str]) -> int:
    """The real ``routelora`` once ``library`` is registered there; until then a parser with only ``library``."""
    if library_cli in cli_main.COMMANDS:
        return cli_main.main(argv)
    parser = argparse.ArgumentParser(prog="routelora")
    library_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except RouteloraError as error:
        print(f"routelora: error: {error}", file=sys.stderr)
        return cli_main.EXIT_USER_ERROR
    return 0


@pytest.fixture(scope="module")
def base():
    return build_family("llava")


@pytest.fixture(scope="module")
def peft_dir(tmp_path_factory):
    return make_peft(tmp_path_factory.mktemp("peft") / "adapter")


@pytest.fixture(scope="module")
def expert_dir(tmp_path_factory, peft_dir, base):
    return save_expert(expert_from_peft(peft_dir, "caption", base), tmp_path_factory.mktemp("experts") / "caption")


def test_load_expert_reads_peft_tensors_and_scaling(expert_dir, peft_dir):
    expert = load_expert(expert_dir)
    saved = load_file(peft_dir / "adapter_model.safetensors")
    assert expert.targets == TARGETS and expert.rank == 4 and not expert.has_gates
    for name in TARGETS:
        assert torch.equal(expert.lora_A[name], saved[f"base_model.model.{name}.lora_A.weight"])
        assert torch.equal(expert.lora_B[name], saved[f"base_model.model.{name}.lora_B.weight"])
        assert expert.lora_B[name].abs().sum() > 0
    assert expert.scaling == dict.fromkeys(TARGETS, 2.0)
    assert expert.metadata["task"] == "caption" and expert.metadata["training"]["source"] == "peft"


def test_peft_save_plus_expert_json_is_an_expert(tmp_path, peft_dir, base):
    """How training writes an expert: PEFT's save_pretrained, then expert.json beside it."""
    target = shutil.copytree(peft_dir, tmp_path / "trained")
    training = {"steps": 10}
    write_expert_json(target, expert_metadata("trained", "vqa", base_fingerprint(base), TARGETS, 4, 8, training))
    expert = load_expert(target)
    assert expert.name == "trained" and expert.targets == TARGETS and expert.metadata["training"] == training
    check_compatible(expert, base)


def test_rank_and_alpha_patterns_and_rslora_match_peft(tmp_path, base):
    path = make_peft(
        tmp_path / "p", r=4, alpha=8, use_rslora=True, rank_pattern={"q_proj": 8}, alpha_pattern={TARGETS[1]: 2}
    )
    expert = expert_from_peft(path, "mixed", base)
    assert expert.ranks == {TARGETS[0]: 8, TARGETS[1]: 4, TARGETS[2]: 4} and expert.rank == 8
    assert expert.scaling == {TARGETS[0]: 8 / math.sqrt(8), TARGETS[1]: 1.0, TARGETS[2]: 4.0}
    # The rewritten adapter_config (full names, explicit patterns) still loads in PEFT with the same scaling.
    reloaded = load_expert(save_expert(expert, tmp_path / "mixed"))
    assert reloaded.scaling == expert.scaling
    peft_model = PeftModel.from_pretrained(build_family("llava"), tmp_path / "mixed")
    for name in TARGETS:
        layer = peft_model.base_model.model.get_submodule(name)
        assert layer.scaling["default"] == expert.scaling[name]
        assert torch.equal(layer.lora_B["default"].weight, expert.lora_B[name])


def test_round_trip_with_gates_is_bit_identical(tmp_path, expert_dir):
    expert = load_expert(expert_dir)
    generator = torch.Generator().manual_seed(1)
    expert.gates = {name: torch.randn(a.shape[1], generator=generator) for name, a in expert.lora_A.items()}
    back = load_expert(save_expert(expert, tmp_path / "copy"))
    assert back.has_gates and back.metadata == expert.metadata and back.scaling == expert.scaling
    for part in ("lora_A", "lora_B", "gates"):
        for name, tensor in getattr(expert, part).items():
            other = getattr(back, part)[name]
            assert other.dtype == tensor.dtype and torch.equal(other, tensor)
    with pytest.raises(ExpertFormatError, match="already exists"):
        save_expert(expert, tmp_path / "copy")
    # Built in memory (no adapter_config): the minimal config written for it reads back, in routelora and PEFT.
    expert.adapter_config, expert.scaling[TARGETS[2]] = None, 0.5
    minimal = load_expert(save_expert(expert, tmp_path / "minimal"))
    assert minimal.scaling == expert.scaling
    layer = PeftModel.from_pretrained(build_family("llava"), tmp_path / "minimal").base_model.model.get_submodule(
        TARGETS[2]
    )
    assert layer.scaling["default"] == 0.5


def test_save_gates_writes_gates_and_records_training(tmp_path, expert_dir):
    target = shutil.copytree(expert_dir, tmp_path / "e")
    gates = {name: torch.full((a.shape[1],), 0.5) for name, a in load_expert(target).lora_A.items()}
    save_gates(target, gates, {"steps": 100})
    expert = load_expert(target)
    assert expert.has_gates and all(torch.equal(expert.gates[n], gates[n]) for n in TARGETS)
    assert expert.metadata["gate_training"] == {"steps": 100}
    assert sorted(p.name for p in target.iterdir() if p.name.startswith(".")) == []  # no temporary files left
    with pytest.raises(ExpertFormatError, match=rf"gate for {TARGETS[2]} has shape \(7,\), expected \(64,\)"):
        save_gates(target, {**gates, TARGETS[2]: torch.zeros(7)}, None)


def test_library_add_list_show_remove(tmp_path, expert_dir):
    library = ExpertLibrary(tmp_path / "lib")
    assert library.names() == [] and len(library) == 0
    assert library.add(expert_dir) == "caption"
    assert library.add(expert_dir, name="vqa") == "vqa"
    assert library.names() == ["caption", "vqa"] and len(library) == 2 and "vqa" in library
    details = library.show("vqa")
    assert details["name"] == "vqa" and details["task"] == "caption" and details["ranks"] == [4]
    assert details["num_targets"] == 3 and details["has_gates"] is False and details["bytes"] > 0
    assert details["kind"] == "lora" and details["adapter_parameters"] == 4 * (32 + 32) + 4 * (32 + 16) + 4 * (64 + 32)
    with pytest.raises(LibraryError, match="already has an expert named 'vqa'"):
        library.add(expert_dir, name="vqa")
    library.add(expert_dir, name="vqa", overwrite=True)
    before = load_expert(tmp_path / "lib" / "vqa")
    library.remove("caption")
    assert library.names() == ["vqa"] and sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["vqa"]
    after = library.load()[0]
    assert after.name == "vqa" and all(torch.equal(after.lora_A[n], before.lora_A[n]) for n in TARGETS)
    with pytest.raises(LibraryError, match="has no expert named 'caption'"):
        library.remove("caption")


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "spa ce", "x" * 101])
def test_unsafe_names_are_refused(tmp_path, expert_dir, name):
    with pytest.raises(LibraryError, match="invalid expert name"):
        ExpertLibrary(tmp_path / "lib").add(expert_dir, name=name)


def test_two_ranks_coexist_and_check(tmp_path, expert_dir, base):
    library = ExpertLibrary(tmp_path / "lib")
    library.add(expert_dir)
    library.add_peft(make_peft(tmp_path / "r8", r=8, alpha=16, seed=3), "rank8", base)
    experts = library.load()
    assert [e.name for e in experts] == ["caption", "rank8"] and [e.rank for e in experts] == [4, 8]
    assert library.check(base) == ["caption", "rank8"]


def test_fingerprint_is_stable_and_tells_models_apart(tmp_path, base):
    fingerprint = base_fingerprint(base)
    base.save_pretrained(tmp_path / "base")
    for options in ({}, {"dtype": "bfloat16"}, {"target_pattern": "q_proj"}):
        reloaded, _ = load_vlm(tmp_path / "base", device="cpu", with_processor=False, **options)
        assert base_fingerprint(reloaded) == fingerprint, options
    wrapped = build_family("llava")
    get_peft_model(wrapped, LoraConfig(r=4, target_modules=TARGETS))  # LoRA layers injected in place
    assert base_fingerprint(wrapped) == fingerprint
    torch.manual_seed(1)
    other = tf.AutoModelForImageTextToText.from_config(family_configs()["llava"])
    assert base_fingerprint(other) != fingerprint and len(fingerprint) == 16


def test_expert_from_another_base_model_is_refused(tmp_path, peft_dir, base):
    torch.manual_seed(1)
    other = tf.AutoModelForImageTextToText.from_config(family_configs()["llava"]).eval()
    expert = expert_from_peft(peft_dir, "elsewhere", other)
    message = f"trained on another base model: fingerprint {base_fingerprint(other)}, this model is "
    with pytest.raises(IncompatibleExpertError, match=message + base_fingerprint(base)):
        check_compatible(expert, base)
    library = ExpertLibrary(tmp_path / "lib")
    library.add(save_expert(expert, tmp_path / "elsewhere"))
    with pytest.raises(IncompatibleExpertError, match="expert 'elsewhere'"):
        library.check(base)


def test_wrong_shapes_and_unknown_modules_are_named(expert_dir, base):
    expert = load_expert(expert_dir)
    expert.lora_A[TARGETS[1]] = torch.zeros(4, 16)
    with pytest.raises(IncompatibleExpertError, match=rf"module {TARGETS[1]} is 16x32 .* lora_A is \(4, 16\)"):
        check_compatible(expert, base)
    expert = load_expert(expert_dir)
    expert.lora_A = {"model.language_model.layers.9.mlp.up_proj": expert.lora_A[TARGETS[0]]}
    with pytest.raises(IncompatibleExpertError, match="layers.9.mlp.up_proj does not exist"):
        check_compatible(expert, base)


def test_peft_adapter_on_the_vision_tower_is_refused(tmp_path, base):
    path = make_peft(tmp_path / "vision", targets=[TARGETS[0], VISION])
    library = ExpertLibrary(tmp_path / "lib")
    with pytest.raises(IncompatibleExpertError, match=rf"module {VISION} is in the vision encoder"):
        library.add_peft(path, "vision", base)
    assert library.names() == [] and not any((tmp_path / "lib").glob(".*"))


def test_transformers_4_key_names_are_renamed(tmp_path, peft_dir, base):
    legacy = shutil.copytree(peft_dir, tmp_path / "legacy")
    weights = load_file(legacy / "adapter_model.safetensors")
    old = {k.replace("model.model.language_model.", "model.language_model.model."): v for k, v in weights.items()}
    save_file(old, legacy / "adapter_model.safetensors")
    assert not set(old) & set(weights)
    expert = expert_from_peft(legacy, "legacy", base)
    assert expert.targets == TARGETS and expert.metadata["training"]["renamed_keys"] is True
    assert all(torch.equal(expert.lora_A[n], weights[f"base_model.model.{n}.lora_A.weight"]) for n in TARGETS)


def test_missing_or_broken_files_are_named(tmp_path, expert_dir):
    broken = shutil.copytree(expert_dir, tmp_path / "broken")
    (broken / "adapter_model.safetensors").unlink()
    with pytest.raises(ExpertFormatError, match=r"broken/adapter_model.safetensors is missing"):
        load_expert(broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ExpertFormatError, match=r"adapter_model.safetensors is not a readable safetensors file"):
        load_expert(broken)
    shutil.copyfile(expert_dir / "adapter_model.safetensors", broken / "adapter_model.safetensors")
    (broken / "expert.json").write_text("{")
    with pytest.raises(ExpertFormatError, match=r"broken/expert.json is not valid JSON"):
        load_expert(broken)
    (broken / "gates.safetensors").write_bytes(b"\x00" * 3)
    (broken / "expert.json").write_text((expert_dir / "expert.json").read_text())
    with pytest.raises(ExpertFormatError, match=r"gates.safetensors is not a readable"):
        load_expert(broken)


def test_dora_and_other_variants_are_refused(tmp_path, base):
    dora = make_peft(tmp_path / "dora", use_dora=True)
    with pytest.raises(ExpertFormatError, match=r"adapter_config.json: use_dora is set \(DoRA"):
        expert_from_peft(dora, "dora", base)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": False}))
    with pytest.raises(ExpertFormatError, match="unexpected tensor .*lora_magnitude_vector"):
        expert_from_peft(dora, "dora", base)  # the tensors give it away even when the config does not
    for field, value in (("bias", "all"), ("peft_type", "IA3"), ("init_lora_weights", "pissa")):
        (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": False, field: value}))
        with pytest.raises(ExpertFormatError, match=field):
            expert_from_peft(dora, "dora", base)


def test_cli_list_show_add_remove(tmp_path, expert_dir, peft_dir, base, capsys):
    lib = str(tmp_path / "lib")
    assert run_cli(["library", "list", "--library", lib]) == 0
    assert "no experts" in capsys.readouterr().out
    assert run_cli(["library", "add", str(expert_dir), "--library", lib]) == 0
    base.save_pretrained(tmp_path / "base")
    argv = ["library", "add", "--peft", str(peft_dir), "--name", "imported", "--base", str(tmp_path / "base")]
    assert run_cli([*argv, "--library", lib]) == 0
    assert "added expert imported" in capsys.readouterr().out
    save_gates(tmp_path / "lib" / "imported", {n: torch.zeros(64 if "down" in n else 32) for n in TARGETS}, None)
    assert run_cli(["library", "list", "--library", lib]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "task", "rank", "targets", "gates", "scores"]
    assert lines[1].split() == ["caption", "caption", "4", "3", "no", "-"]
    assert lines[2].split() == ["imported", "imported", "4", "3", "yes", "-"]
    assert run_cli(["library", "show", "imported", "--library", lib, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["base_fingerprint"] == base_fingerprint(base)
    assert run_cli(["library", "show", "caption", "--library", lib]) == 0
    assert "base fingerprint" in capsys.readouterr().out
    assert run_cli(["library", "remove", "caption", "--library", lib]) == 0
    assert ExpertLibrary(lib).names() == ["imported"]
    assert run_cli(["library", "show", "caption", "--library", lib]) == cli_main.EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("routelora: error:") and "no expert named 'caption'" in err and "\n" not in err


def test_importing_a_peft_adapter_for_another_base_warns(tmp_path, peft_dir, expert_dir, base, caplog):
    """The mixed-base warning covers PEFT imports too, not only experts added from a directory."""
    torch.manual_seed(1)
    other = tf.AutoModelForImageTextToText.from_config(family_configs()["llava"]).eval()
    library = ExpertLibrary(tmp_path / "lib")
    library.add(expert_dir)
    with caplog.at_level("WARNING", logger="routelora.experts.library"):
        library.add_peft(peft_dir, "elsewhere", other)
    assert "routing needs one base model" in caplog.text
