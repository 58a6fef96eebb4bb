"""``routelora export peft``: each exported adapter, loaded by PEFT onto the full VLM, gives routelora's own
output to 1e-5 (and is no no-op); its names are the full VLM's; the router's statistics and a manifest beside."""

import json

import torch
from peft import PeftModel
from safetensors.torch import load_file

from routelora.cli.main import main
from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.experts import ExpertLibrary
from routelora.models import load_vlm
from routelora.routing.model import attach_router
from routelora.serving.routes import Route, applied


def test_exported_adapters_load_in_peft_and_equal_routelora(served_library, tmp_path, capsys):
    out = tmp_path / "export"
    argv = ["export", "peft", "--library", str(served_library["library"]), "--base", str(served_library["base"])]
    assert main([*argv, "--out", str(out)]) == 0
    assert main([*argv, "--out", str(out)]) == 2 and "already exists" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["name"] for e in manifest["experts"]] == ["colour", "shape"] and manifest["base_skills"] == ["general"]
    assert (out / "router" / "base" / "general.safetensors").is_file()
    assert sorted(p.name for p in (out / "adapters" / "colour").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    model, processor = load_vlm(served_library["base"])
    state = set(model.state_dict())
    batch = VLMCollator(processor)(load_split(served_library["tasks"]["colour"], "train").samples[:4])
    with torch.no_grad():
        base = model(**batch).logits
    library = ExpertLibrary(served_library["library"])
    for index, entry in enumerate(manifest["experts"]):
        directory = out / entry["adapter"]
        for key in load_file(directory / "adapter_model.safetensors"):
            module = key.removeprefix("base_model.model.").rsplit(".", 2)[0]
            assert f"{module}.weight" in state, f"{key} names no module of the full VLM"
        with attach_router(model, library) as router, applied(router, [Route((index,), (1.0,))] * 4), torch.no_grad():
            ours = model(**batch).logits
        peft_model = PeftModel.from_pretrained(model, directory)
        with torch.no_grad():
            theirs = peft_model(**batch).logits
        peft_model.unload()
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
        assert (theirs - base).abs().max() > 1e-3, f"{entry['name']}: the exported adapter changes the output"
