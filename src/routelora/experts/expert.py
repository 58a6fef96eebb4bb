"""One expert on disk: a PEFT LoRA adapter directory plus routelora's gates and ``expert.json``.

Layout of an expert directory::

    adapter_config.json         as PEFT writes it (PeftModel.save_pretrained)
    adapter_model.safetensors   base_model.model.<module>.lora_A.weight (r, d_in) / .lora_B.weight (d_out, r);
                                for an (IA)^3 expert <module>.ia3_l, (1, d_in) or (d_out, 1)
    gates.safetensors           optional until gates are trained: <module> -> float32 (d_in,)
    prototypes.safetensors      optional, written with the gates: <module> and input_embeddings -> float32 (d,);
                                routing.count (1,), routing.mean (F,), routing.scatter (F, F): the task's pooled
                                feature statistics (routelora.gates.features); routing.calibration (n,) the
                                sorted distances of held-out prompts to the region, routing.region_count (1,),
                                routing.region_mean (F,), routing.region_scatter (F, F) of the region (the same
                                statistics over each prompt's instruction run), routing.conversation_count (1,),
                                routing.conversation_mean (W,), routing.conversation_scatter (W, W) and
                                routing.conversation_calibration (m,) of what those runs leave out (where they
                                leave something out), routing.acceptance_shrinkage (1,) and the prompt layout's
                                token ids, int64 (routelora.gates.acceptance, .runs)
    expert.json                 name, task, base_fingerprint, rank, alpha, targets, training, gate_training, ...
    loss_log.json               optional: the training run's losses

Only safetensors and JSON are ever read: nothing is unpickled. Every write goes to a temporary file or directory
first and is moved into place with ``os.replace``, so a crash never leaves a half-written expert behind.
"""

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from routelora import io
from routelora._version import __version__
from routelora.errors import ExpertFormatError
from routelora.experts.ia3 import ia3_state, is_ia3_config, minimal_ia3_config, read_ia3_adapter
from routelora.experts.peft_adapter import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    PEFT_PREFIX,
    lora_scalings,
    natural_key,
    read_adapter,
)

GATES = "gates.safetensors"
PROTOTYPES = "prototypes.safetensors"
EMBEDDINGS_KEY = "input_embeddings"
"""Key of the input-embedding prototype in a prototypes file (the other keys are module names and ``routing.*``)."""
STATISTICS_SCATTER, REGION_SCATTER = "routing.scatter", "routing.region_scatter"
"""Two of the matrices in a prototypes file: the scatter of whole prompts' features (:mod:`routelora.gates.features`)
and that of their instructions' runs (:mod:`routelora.gates.acceptance`)."""
CONVERSATION_SCATTER = "routing.conversation_scatter"
"""The third: the scatter of what those runs leave out. Every ``routing.*_scatter`` key is read as a matrix, so that
a file a later routelora writes with another one still loads."""
EXPERT_JSON = "expert.json"
REQUIRED_METADATA = ("name", "base_fingerprint", "targets")
LOSS_LOG = "loss_log.json"
EXPERT_FORMAT = 1
"""Version of the expert directory layout this routelora writes and reads (``format`` in expert.json; files
without it are format 1)."""


@dataclass
class Expert:
    """One LoRA expert in memory, with its gates when trained."""

    name: str
    """Name of the expert (its folder name inside a library)."""
    path: Path | None
    """Directory it was loaded from; None for an expert built in memory."""
    lora_A: dict[str, torch.Tensor]
    """Full module name in the base model -> down-projection ``A`` of shape (r, d_in), in module order."""
    lora_B: dict[str, torch.Tensor]
    """Full module name -> up-projection ``B`` of shape (d_out, r)."""
    scaling: dict[str, float]
    """Full module name -> ``s`` of ``y = W u + s * B A u``: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    gates: dict[str, torch.Tensor] | None = None
    """Full module name -> float32 gate vector ``v`` of shape (d_in,); None until gates are trained."""
    prototypes: dict[str, torch.Tensor] | None = None
    """Routing prototypes: full module name (and ``input_embeddings``) -> float32 mean standardised input of
    shape (d,), over the expert's own task prompts, and the ``routing.*`` statistics of those prompts' pooled
    features that the default router decides from; None until computed (see :mod:`routelora.gates.prototypes`)."""
    metadata: dict = field(default_factory=dict)
    """Contents of ``expert.json``."""
    adapter_config: dict | None = None
    """``adapter_config.json`` as read, written back unchanged by :func:`save_expert`; None builds a minimal one."""
    training_log: dict | None = None
    """Losses and settings of the training run (``loss_log.json``), where known."""
    ia3: dict[str, torch.Tensor] | None = None
    """For an (IA)^3 expert (``lora_A`` and ``lora_B`` then empty): full module name -> scaling vector ``l``, of
    shape (d_in,) where it scales the module's input (:attr:`ia3_input`) and (d_out,) where it scales the output."""
    ia3_input: tuple[str, ...] = ()
    """The (IA)^3 modules whose input is scaled (PEFT's ``feedforward_modules``)."""

    @property
    def kind(self) -> str:
        """``lora`` or ``ia3``."""
        return "ia3" if self.ia3 is not None else "lora"

    @property
    def input_sizes(self) -> dict[str, int]:
        """d_in of each adapted module (an output-scaling (IA)^3 vector does not show it: expert.json does)."""
        return _input_sizes(self.lora_A, self.ia3, self.ia3_input, self.metadata.get("input_sizes"))

    @property
    def parameters(self) -> int:
        """Trained numbers in the adapter."""
        if self.ia3 is not None:
            return sum(vector.numel() for vector in self.ia3.values())
        return sum(self.lora_A[n].numel() + self.lora_B[n].numel() for n in self.targets)

    @property
    def targets(self) -> list[str]:
        """Full names of the adapted modules, in module order."""
        return list(self.ia3) if self.ia3 is not None else list(self.lora_A)

    @property
    def ranks(self) -> dict[str, int]:
        """Rank of each adapted module (PEFT's rank_pattern lets them differ)."""
        return {name: a.shape[0] for name, a in self.lora_A.items()}

    @property
    def rank(self) -> int:
        """Largest rank over the adapted modules."""
        return max(self.ranks.values(), default=0)

    @property
    def has_gates(self) -> bool:
        """Whether gate vectors are present."""
        return self.gates is not None


def _read_gates(path: Path, input_sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    gates = io.read_safetensors(path, ExpertFormatError)
    check_gates(gates, input_sizes, path)
    return {name: gates[name].to(torch.float32) for name in input_sizes}


def check_gates(gates: dict[str, torch.Tensor], input_sizes: dict[str, int], where: Path | str) -> None:
    """Exactly one (d_in,) gate per adapted module; ``input_sizes``: each module's d_in."""
    for name in gates:
        if name not in input_sizes:
            raise ExpertFormatError(f"{where}: gate for {name}, which the adapter does not adapt")
    for name, size in input_sizes.items():
        if name not in gates:
            raise ExpertFormatError(f"{where}: no gate for adapted module {name}")
        if tuple(gates[name].shape) != (size,):
            raise ExpertFormatError(
                f"{where}: gate for {name} has shape {tuple(gates[name].shape)}, expected ({size},) (its d_in)"
            )


def load_expert(path: str | Path) -> Expert:
    """Read an expert directory (safetensors and JSON only).

    Raises:
        ExpertFormatError: a file is missing or broken (the message names it), the adapter is not a plain LoRA
            (DoRA, biases... the message names the field), or expert.json disagrees with the adapter.
    """
    path = Path(path)
    if (path / EXPERT_JSON).is_file():  # first: a newer layout may differ in any of the other files
        _check_format(path / EXPERT_JSON, io.read_json(path / EXPERT_JSON, ExpertFormatError))
    config_path = path / ADAPTER_CONFIG
    ia3 = is_ia3_config(io.read_json(config_path, ExpertFormatError)) if config_path.is_file() else False
    if ia3:
        config, vectors, inputs = read_ia3_adapter(path)
        lora_A, lora_B = {}, {}
    else:
        config, lora_A, lora_B = read_adapter(path)
        vectors, inputs = None, []
    metadata_path = path / EXPERT_JSON
    metadata = io.read_json(metadata_path, ExpertFormatError)
    for key in REQUIRED_METADATA + (("input_sizes",) if ia3 else ()):
        if key not in metadata:
            raise ExpertFormatError(f"{metadata_path} has no {key!r}")
    targets = metadata["targets"]
    if not isinstance(targets, list) or len(set(targets)) != len(targets):
        raise ExpertFormatError(f"{metadata_path}: targets must be a list of distinct module names")
    adapted = vectors if ia3 else lora_A
    for name in sorted(set(adapted).symmetric_difference(targets), key=natural_key):
        where = f"in targets but not in {ADAPTER_WEIGHTS}" if name in targets else f"in {ADAPTER_WEIGHTS} only"
        raise ExpertFormatError(f"{metadata_path}: targets disagree with the adapter: {name} is {where}")
    if ia3:
        vectors = {name: vectors[name] for name in targets}
        scaling = {}
        sizes = metadata["input_sizes"] if isinstance(metadata["input_sizes"], dict) else {}
        for name in targets:
            if name not in inputs and not isinstance(sizes.get(name), int):
                raise ExpertFormatError(
                    f"{metadata_path}: input_sizes has no integer for {name} (the d_in of each module, which an "
                    "output-scaling (IA)^3 vector does not show); `routelora library add --peft` writes it"
                )
    else:
        lora_A = {name: lora_A[name] for name in targets}
        lora_B = {name: lora_B[name] for name in targets}
        scaling = lora_scalings(config, {n: a.shape[0] for n, a in lora_A.items()}, path / ADAPTER_CONFIG)
    expert = Expert(str(metadata["name"]), path, lora_A, lora_B, scaling, None, None, metadata, config, None)
    expert.ia3, expert.ia3_input = vectors, tuple(inputs)
    sizes = expert.input_sizes
    if (path / GATES).exists():
        expert.gates = _read_gates(path / GATES, sizes)
    if (path / PROTOTYPES).exists():
        expert.prototypes = _read_prototypes(path / PROTOTYPES, sizes)
    if (path / LOSS_LOG).exists():
        expert.training_log = io.read_json(path / LOSS_LOG, ExpertFormatError)
    return expert


def _check_format(metadata_path: Path, metadata: dict) -> None:
    written = metadata.get("format", 1)
    if not isinstance(written, int) or written > EXPERT_FORMAT:
        raise ExpertFormatError(
            f"{metadata_path}: format {written!r} was written by a newer routelora "
            f"({metadata.get('routelora_version', 'unknown version')}; this is {__version__}, which reads format "
            f"{EXPERT_FORMAT}); upgrade routelora to read it"
        )


def _read_prototypes(path: Path, input_sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    prototypes = io.read_safetensors(path, ExpertFormatError)
    for name, vector in prototypes.items():
        if name in input_sizes and tuple(vector.shape) != (input_sizes[name],):
            raise ExpertFormatError(
                f"{path}: prototype for {name} has shape {tuple(vector.shape)}, expected ({input_sizes[name]},)"
            )
        matrix = name.startswith("routing.") and name.endswith("scatter")
        if vector.dim() != (2 if matrix else 1):
            raise ExpertFormatError(f"{path}: prototype {name} has shape {tuple(vector.shape)}; expected one vector")
    return {name: vector.float() if vector.is_floating_point() else vector for name, vector in prototypes.items()}


def expert_metadata(
    name: str,
    task: str,
    base_fingerprint: str,
    targets: list[str],
    rank: int,
    alpha: float,
    training: dict,
    gate_training: dict | None = None,
    scores: dict | None = None,
) -> dict:
    """A fresh ``expert.json`` dict, stamped with the time and the routelora version."""
    return {
        "name": name,
        "task": task,
        "base_fingerprint": base_fingerprint,
        "rank": rank,
        "alpha": alpha,
        "targets": list(targets),
        "training": training,
        "gate_training": gate_training,
        "scores": scores or {},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "routelora_version": __version__,
        "format": EXPERT_FORMAT,
    }


def write_expert_json(directory: str | Path, metadata: dict) -> None:
    """Atomically (re)write ``expert.json`` in ``directory``."""
    io.write_json(Path(directory) / EXPERT_JSON, metadata)


def _float32(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors as float32; integer ones (token ids of a prompt layout) as they are."""
    return {
        name: tensor.detach().float() if tensor.is_floating_point() else tensor for name, tensor in tensors.items()
    }


def adapter_input_sizes(directory: Path) -> dict[str, int]:
    """d_in of each module an expert directory adapts, from its adapter (and, for (IA)^3, its expert.json) alone,
    so that broken routing files can still be replaced."""
    config = io.read_json(directory / ADAPTER_CONFIG, ExpertFormatError)
    if not is_ia3_config(config):
        return _input_sizes(read_adapter(directory)[1], None, (), None)
    _, vectors, inputs = read_ia3_adapter(directory)
    stored = io.read_json(directory / EXPERT_JSON, ExpertFormatError).get("input_sizes")
    return _input_sizes({}, vectors, inputs, stored)


def _input_sizes(
    lora_A: dict[str, torch.Tensor],
    ia3: dict[str, torch.Tensor] | None,
    ia3_input: tuple[str, ...] | list[str],
    stored: dict | None,
) -> dict[str, int]:
    """d_in of each adapted module: a LoRA's A shows it, an input-scaling (IA)^3 vector too, and expert.json's
    ``input_sizes`` (``stored``) gives it for output-scaling ones (a module it lacks is left out)."""
    if ia3 is None:
        return {name: a.shape[1] for name, a in lora_A.items()}
    stored = stored or {}
    return {
        name: vector.shape[0] if name in ia3_input else int(stored[name])
        for name, vector in ia3.items()
        if name in ia3_input or name in stored
    }


def save_gates(expert_dir: str | Path, gates: dict[str, torch.Tensor], gate_training: dict | None) -> None:
    """Write ``gates.safetensors`` and record ``gate_training`` in ``expert.json``, each atomically.

    Raises:
        ExpertFormatError: the gates do not match the expert's modules and input sizes, or a file is broken.
    """
    expert_dir = Path(expert_dir)
    sizes = adapter_input_sizes(expert_dir)
    metadata = io.read_json(expert_dir / EXPERT_JSON, ExpertFormatError)
    tensors = _float32(gates)
    check_gates(tensors, sizes, "gates")
    io.write_safetensors(expert_dir / GATES, tensors)
    metadata["gate_training"] = gate_training
    write_expert_json(expert_dir, metadata)


def save_routing(expert_dir: str | Path, expert: Expert) -> None:
    """Write ``expert``'s gates, prototypes and ``expert.json`` into its existing directory, each atomically; the
    adapter files there are left untouched (the gates are checked against them)."""
    _write_routing_files(expert, Path(expert_dir), adapter_input_sizes(Path(expert_dir)))


def _write_routing_files(expert: Expert, directory: Path, input_sizes: dict[str, int]) -> None:
    """Gates (checked against ``input_sizes``), prototypes and ``expert.json``: what stage 2 adds to an expert."""
    if expert.gates is not None:
        gates = _float32(expert.gates)
        check_gates(gates, input_sizes, f"gates of expert {expert.name!r}")
        io.write_safetensors(directory / GATES, gates)
    if expert.prototypes is not None:
        io.write_safetensors(directory / PROTOTYPES, _float32(expert.prototypes))
    metadata = {**expert.metadata, "name": expert.name, "targets": expert.targets}
    if expert.ia3 is not None:
        metadata |= {"kind": "ia3", "input_sizes": input_sizes}
    write_expert_json(directory, metadata)


def _minimal_adapter_config(expert: Expert) -> dict:
    # Only what differs from PEFT's defaults; alpha = s * r reproduces s exactly for power-of-two ranks.
    ranks = expert.ranks
    rank, first = expert.rank, expert.targets[0]
    alphas = {name: expert.scaling[name] * r for name, r in ranks.items()}
    return {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": alphas[first],
        "target_modules": expert.targets,
        "rank_pattern": {name: r for name, r in ranks.items() if r != rank},
        "alpha_pattern": {name: a for name, a in alphas.items() if a != alphas[first]},
        "bias": "none",
    }


def write_expert_files(expert: Expert, directory: Path) -> None:
    """Write every file of ``expert`` into the existing (empty, temporary) ``directory``."""
    if expert.ia3 is not None:
        weights = ia3_state(expert.ia3, list(expert.ia3_input))
        config = expert.adapter_config or minimal_ia3_config(expert.targets, list(expert.ia3_input))
    else:
        weights = {}
        for name in expert.targets:
            weights[f"{PEFT_PREFIX}{name}.lora_A.weight"] = expert.lora_A[name]
            weights[f"{PEFT_PREFIX}{name}.lora_B.weight"] = expert.lora_B[name]
        config = expert.adapter_config or _minimal_adapter_config(expert)
    io.write_json(directory / ADAPTER_CONFIG, config)
    io.write_safetensors(directory / ADAPTER_WEIGHTS, weights)
    if expert.training_log is not None:
        io.write_json(directory / LOSS_LOG, expert.training_log, indent=1)
    _write_routing_files(expert, directory, expert.input_sizes)


def save_expert(expert: Expert, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``expert`` as an expert directory at ``path``, atomically; returns the path.

    Raises:
        ExpertFormatError: ``path`` exists and ``overwrite`` is false, or the gates do not match the adapter.
    """
    path = Path(path)
    exists = ExpertFormatError(f"{path} already exists; pass overwrite=True to replace it")
    if path.exists() and not overwrite:
        raise exists
    temporary = io.staging_directory(path)
    try:
        write_expert_files(expert, temporary)
        io.publish_directory(temporary, path, overwrite)
    except FileExistsError:
        raise exists from None
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return path
