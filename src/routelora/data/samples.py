"""Read a task's split into samples: LLaVA conversation JSON/JSONL, or tabular data (parquet, ``datasets`` dir)."""

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy
from PIL import Image, UnidentifiedImageError

from routelora.data.task import TaskConfig, TaskError

IMAGE_MARKER = "<image>"
USER_ROLES = ("human", "user")
ASSISTANT_ROLES = ("gpt", "assistant")


@dataclass
class Sample:
    """One prompt with its answer, ready to be put into a chat template."""

    id: str
    """Identifier from the data, else ``<file>:<line>``."""
    prompt: str
    """The user's text of the last turn, task template applied; an ``<image>`` marker stays where the data put
    the image (the collator places the image there; with no marker anywhere, the image goes first)."""
    answer: str
    """The expected answer (the target in training, the main reference in evaluation)."""
    references: list[str]
    """Every acceptable answer (several reference captions, say); at least the answer."""
    image: Path | bytes | None
    """Image file, encoded image bytes, or None for a text-only sample."""
    origin: str
    """``file:line`` (or ``file:row``) of the sample, for error messages."""
    history: list[tuple[str, str]] = field(default_factory=list)
    """Earlier (user, assistant) turns of a multi-turn conversation."""

    def load_image(self) -> Image.Image | None:
        """The image as RGB, or None; a missing or corrupt image raises an error naming the sample."""
        if self.image is None:
            return None
        name = self.image if isinstance(self.image, Path) else "embedded image"
        try:
            source = io.BytesIO(self.image) if isinstance(self.image, bytes) else self.image
            with warnings.catch_warnings():
                # PIL only warns between its limit and twice it; a declared size that large is refused outright
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(source) as image:
                    return _as_rgb(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise TaskError(
                f"{self.origin}: image {name} declares more than {Image.MAX_IMAGE_PIXELS} pixels (a decompression "
                "bomb, or a far larger image than a VLM takes); resize it"
            ) from None
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise TaskError(f"{self.origin}: cannot read image {name} ({error})") from None


def _as_rgb(image: Image.Image) -> Image.Image:
    """Any mode as RGB: 16-bit greyscale (and 32-bit integer, read as 16-bit) scaled by its type's range to 8 bits,
    float greyscale taken as 0..1 (PIL's own conversions clip both), transparency composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = numpy.asarray(image, dtype=numpy.float64)
        scale = 255.0 if image.mode == "F" else 255.0 / 65535.0
        image = Image.fromarray((array * scale).round().clip(0, 255).astype(numpy.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


@dataclass
class SplitData:
    """The samples of one split, with what was skipped and why."""

    samples: list[Sample]
    skipped: list[str] = field(default_factory=list)
    """One message per skipped bad sample (only with ``skip_bad``)."""


def _check_image(sample: Sample, decode: bool) -> None:
    """Existence always (cheap); a full decode only where bad samples are to be skipped, since decoding a large
    dataset up front is slow and a corrupt image still fails with its origin when a batch is built."""
    if isinstance(sample.image, Path) and not sample.image.is_file():
        raise TaskError(f"{sample.origin}: image {sample.image} does not exist")
    if decode:
        sample.load_image()


def _llava_records(path: Path):
    """(origin, record) pairs of a LLaVA-format file: a JSON list, or JSON Lines."""
    if path.suffix == ".json":
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise TaskError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
        if not isinstance(records, list):
            raise TaskError(f"{path}: a LLaVA-format .json file must hold a list of samples")
        yield from ((f"{path}[{i}]", record) for i, record in enumerate(records))
        return
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as error:
                yield f"{path}:{number}", TaskError(f"{path}:{number}: not valid JSON ({error.msg})")


def _strip_marker(text: str) -> str:
    return text.replace(IMAGE_MARKER + "\n", "").replace("\n" + IMAGE_MARKER, "").replace(IMAGE_MARKER, "").strip()


def _check_markers(origin: str, sample: Sample) -> Sample:
    """One image per sample, so at most one marker; a marker without an image is dropped (it points at nothing)."""
    texts = [user for user, _ in sample.history] + [sample.prompt]
    markers = sum(text.count(IMAGE_MARKER) for text in texts)
    if sample.image is None and markers:
        sample.history = [(_strip_marker(user), reply) for user, reply in sample.history]
        sample.prompt = _strip_marker(sample.prompt)
    elif markers > 1:
        raise TaskError(f"{origin}: {markers} '{IMAGE_MARKER}' markers, but a sample holds one image")
    return sample


def _llava_sample(task: TaskConfig, path: Path, origin: str, record: dict) -> Sample:
    if not isinstance(record, dict):
        raise TaskError(f"{origin}: a sample must be a JSON object")
    turns = record.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2:
        raise TaskError(f"{origin}: field 'conversations' must be a list of at least two turns")
    pairs: list[tuple[str, str]] = []
    for index in range(0, len(turns) - 1, 2):
        user, assistant = turns[index], turns[index + 1]
        if not (isinstance(user, dict) and isinstance(assistant, dict)):
            raise TaskError(f"{origin}: field 'conversations' turns must be objects with 'from' and 'value'")
        if user.get("from") not in USER_ROLES or assistant.get("from") not in ASSISTANT_ROLES:
            raise TaskError(f"{origin}: field 'conversations' must alternate human and gpt turns")
        pairs.append((str(user.get("value", "")).strip(), str(assistant.get("value", ""))))
    if task.answer_field:
        if task.answer_field not in record:
            raise TaskError(f"{origin}: missing answer field '{task.answer_field}'")
        answer = str(record[task.answer_field])
    else:
        answer = pairs[-1][1]
    if not answer.strip():
        raise TaskError(f"{origin}: empty answer")
    references = record.get(task.references_field) or [answer]
    if not isinstance(references, list):
        raise TaskError(f"{origin}: field '{task.references_field}' must be a list of strings")
    image = record.get(task.image_field)
    if image is not None and not isinstance(image, str):
        raise TaskError(f"{origin}: field '{task.image_field}' must be a path relative to {path.name}")
    sample = Sample(
        id=str(record.get("id", origin)),
        prompt=_apply_template(task, origin, {"prompt": pairs[-1][0]}),
        answer=answer,
        references=[str(r) for r in references],
        image=(path.parent / image) if image else None,
        origin=origin,
        history=pairs[:-1],
    )
    return _check_markers(origin, sample)


def _apply_template(task: TaskConfig, origin: str, values: dict) -> str:
    try:
        return task.prompt_template.format(**values)
    except KeyError as error:
        raise TaskError(f"{origin}: prompt_template names field {error} which the sample does not have") from None


def _tabular_rows(path: Path):
    import datasets

    if path.is_dir():
        table = datasets.load_from_disk(str(path))
        if isinstance(table, datasets.DatasetDict):
            raise TaskError(f"{path}: a datasets directory with several splits; point data at one split's folder")
    else:
        table = datasets.Dataset.from_parquet(str(path))
    for column, feature in table.features.items():
        if isinstance(feature, datasets.Image):
            table = table.cast_column(column, datasets.Image(decode=False))  # keep bytes; decode per batch
    for index, row in enumerate(table):
        yield f"{path}:row {index}", row


def _tabular_sample(task: TaskConfig, path: Path, origin: str, row: dict) -> Sample:
    answer_field = task.answer_field or "answer"
    for needed in (task.question_field, answer_field):
        if needed not in row:
            raise TaskError(f"{origin}: missing field '{needed}' (columns: {', '.join(row)})")
    answer = str(row[answer_field])
    image = row.get(task.image_field)
    if isinstance(image, dict):  # a datasets Image cell: {"bytes": ..., "path": ...}
        image = image.get("bytes") or (image.get("path") and Path(image["path"]))
    elif isinstance(image, str):
        image = path.parent / image if not path.is_dir() else path / image
    references = row.get(task.references_field) or [answer]
    values = {**{k: v for k, v in row.items() if isinstance(v, str | int | float)}, "prompt": row[task.question_field]}
    sample = Sample(
        id=str(row.get("id", origin)),
        prompt=_apply_template(task, origin, values),
        answer=answer,
        references=[str(r) for r in references],
        image=image or None,
        origin=origin,
    )
    return _check_markers(origin, sample)


def load_split(task: TaskConfig, split: str, skip_bad: bool = False, limit: int | None = None) -> SplitData:
    """Read ``split`` of ``task``; every bad sample raises an error naming its file and line, or is skipped and
    reported when ``skip_bad``. An empty split is an error either way."""
    path = task.split(split)
    if not path.exists():
        raise TaskError(f"task {task.name}: {split} data {path} does not exist")
    tabular = path.is_dir() or path.suffix == ".parquet"
    if not tabular and path.suffix not in (".json", ".jsonl"):
        raise TaskError(f"{path}: unsupported data format; use .json/.jsonl (LLaVA), .parquet or a datasets folder")
    rows = _tabular_rows(path) if tabular else _llava_records(path)
    make = _tabular_sample if tabular else _llava_sample
    data = SplitData(samples=[])
    for origin, record in rows:
        if limit is not None and len(data.samples) >= limit:
            break
        try:
            if isinstance(record, TaskError):
                raise record
            sample = make(task, path, origin, record)
            _check_image(sample, decode=skip_bad)
        except TaskError as error:
            if not skip_bad:
                raise TaskError(f"{error} (use --skip-bad to skip bad samples)") from None
            data.skipped.append(str(error))
            continue
        data.samples.append(sample)
    if not data.samples:
        raise TaskError(f"task {task.name}: {split} data {path} holds no usable sample")
    return data
