"""The command line: what it prints, and one clear line with a non-zero status for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from families import build_family
from routelora.cli.main import EXIT_USER_ERROR, main


@pytest.fixture(scope="module")
def qwen2_vl_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen2vl")
    build_family("qwen2_vl").save_pretrained(path)
    return path


def test_info_prints_family_targets_and_counts(qwen2_vl_dir, capsys):
    assert main(["info", str(qwen2_vl_dir)]) == 0
    out = capsys.readouterr().out
    assert "qwen2_vl" in out and "model.language_model (2 decoder layers)" in out
    assert "14 (q 2, k 2, v 2, o 2, mlp.gate 2, mlp.up 2, mlp.down 2)" in out
    assert "model.visual" in out


def test_info_json(qwen2_vl_dir, capsys):
    assert main(["info", str(qwen2_vl_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["family"] == "qwen2_vl" and summary["target_count"] == 14
    assert summary["frozen"] == ["model.visual"]  # the merger (projector) is inside it


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "/no/such/model"], "model path /no/such/model does not exist"),
        (["info", "."], "is not a model directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(args) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("routelora: error:") and message in err
    assert "\n" not in err and "Traceback" not in err


def test_remote_code_message(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"model_type": "internvl_chat", "auto_map": {"AutoModel": "x.Y"}}')
    assert main(["info", str(tmp_path)]) == EXIT_USER_ERROR
    assert "--trust-remote-code" in capsys.readouterr().err


def test_debug_shows_the_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "routelora.cli.main", "--debug", "info", "/no/such/model"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "Traceback" in done.stderr and "ModelNotFoundError" in done.stderr


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "routelora"  # installed beside the interpreter running the tests
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("routelora ")


def _imports_torch(code: str) -> bool:
    """Whether running ``code`` in a fresh interpreter imports torch (printed by ``code`` as its last line)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1] == "True"


def test_building_the_parser_does_not_import_torch():
    code = "import sys; import routelora.cli.main as m; m.build_parser(); print('torch' in sys.modules)"
    assert not _imports_torch(code)  # --help of every command stays fast: torch comes in when a command runs


def test_import_routelora_does_not_import_torch():
    assert not _imports_torch("import sys, routelora; print('torch' in sys.modules)")


def test_public_names_are_still_importable_from_the_package():
    code = (
        "import sys, routelora; from routelora import load_vlm, RouteloraError; "
        "from routelora.models import load_vlm as direct; from routelora.errors import RouteloraError as error; "
        "assert load_vlm is direct and RouteloraError is error; "
        "assert all(hasattr(routelora, name) for name in routelora.__all__); print('torch' in sys.modules)"
    )
    assert _imports_torch(code)


class _Loaded(Exception):
    """Raised by the stand-in loader once it has recorded its arguments."""


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "--model", "M", "--task", "t.yaml"],
        ["predict", "--base", "M", "--prompt", "hi"],
        ["library", "base-prototypes", "--library", "L", "--base", "M", "--task", "t.yaml"],
        ["expert", "train", "--base", "M", "--task", "t.yaml", "--out", "E"],
        ["gate", "train", "--base", "M", "--expert", "E", "--task", "t.yaml"],
    ],
)
def test_every_model_loading_command_passes_the_hand_named_parts_on(command, monkeypatch, tmp_path):
    """A model that needs --language-model / --target-pattern to train an expert needs them to use it too."""
    import routelora.models

    seen = {}

    def loader(name, **options):
        seen.update(options, name=name)
        raise _Loaded

    monkeypatch.setattr(routelora.models, "load_vlm", loader)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text("name: t\nmetric: anls\ndata: {test: t.jsonl}\n")
    main([*command, "--language-model", "brain", "--target-pattern", "proj$", "--dtype", "float32"])
    assert seen["name"] == "M" and seen["language_model"] == "brain" and seen["target_pattern"] == "proj$"
    assert seen["dtype"] == "float32"


def test_package_versions_are_the_installed_ones():
    import torch
    import transformers

    from routelora.environment import package_versions

    versions = package_versions()
    assert versions["torch"] == torch.__version__ and versions["transformers"] == transformers.__version__


def test_a_runs_environment_names_the_cpu_its_vector_extensions_and_threads(tmp_path, monkeypatch):
    import platform

    import torch

    from routelora import environment

    x86 = tmp_path / "x86"
    x86.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480C\nflags\t\t: fpu sse4_2 avx avx2 avx512f "
        "avx512_bf16 amx_bf16 amx_tile ht\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480C\n"
    )
    described = environment.cpu_description(x86)
    assert described["cpu_model"] == "Intel(R) Xeon(R) Platinum 8480C"
    assert described["cpu_vector_extensions"] == [
        "amx_bf16",
        "amx_tile",
        "avx",
        "avx2",
        "avx512_bf16",
        "avx512f",
        "sse4_2",
    ]
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm sve bf16 i8mm cpuid\n")
    monkeypatch.setattr(platform, "processor", lambda: "aarch64")
    assert environment.cpu_description(arm) == {
        "cpu_model": "aarch64",
        "cpu_vector_extensions": ["asimd", "bf16", "i8mm", "sve"],
    }
    assert environment.cpu_description(tmp_path / "missing") == {"cpu_model": "aarch64", "cpu_vector_extensions": []}

    monkeypatch.setattr(environment, "CPUINFO", x86)
    recorded = environment.run_environment()
    assert recorded["cpu_model"] == described["cpu_model"] and recorded["torch_threads"] == torch.get_num_threads()
    assert recorded["torch"] == torch.__version__ and recorded["cpus"] >= 1


def test_training_flags_are_the_config_fields():
    """Every field of the training settings has its flag, and a flag given lands in its field."""
    from dataclasses import fields

    from routelora.cli.config_args import config_from_arguments
    from routelora.cli.main import build_parser
    from routelora.experts.config import ExpertTrainConfig
    from routelora.gates.config import GateTrainConfig

    parser = build_parser()
    cases = [
        (["expert", "train", "--base", "M", "--task", "t.yaml", "--out", "E"], ExpertTrainConfig),
        (["gate", "train", "--base", "M", "--expert", "E", "--task", "t.yaml"], GateTrainConfig),
    ]
    for command, config in cases:
        for field in fields(config):
            if field.name == "kind":  # a choice, not a number
                args = parser.parse_args([*command, "--kind", "ia3"])
                assert config_from_arguments(args, config).kind == "ia3"
                continue
            value = "3" if field.type in (int, "int") or "int" in str(field.type) else "0.25"
            args = parser.parse_args([*command, "--" + field.name.replace("_", "-"), value])
            built = config_from_arguments(args, config)
            assert getattr(built, field.name) == type(getattr(built, field.name))(value), (config, field.name)
        assert config_from_arguments(parser.parse_args(command), config) == config(), "left out: the defaults"


def test_a_bad_training_setting_is_one_line_naming_the_flag(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text("name: t\nmetric: anls\ndata: {test: t.jsonl}\n")
    command = ["gate", "train", "--base", "M", "--expert", "E", "--task", str(tmp_path / "t.yaml")]
    assert main([*command, "--prototype-samples", "-5"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert "--prototype-samples" in err and "prototype_samples" in err and "\n" not in err
