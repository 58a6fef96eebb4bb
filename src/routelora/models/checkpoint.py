"""Save a model and its processor as one checkpoint directory, all or nothing."""

import json
import shutil
from pathlib import Path

from routelora import io
from routelora.errors import RouteloraError


def save_checkpoint(model, processor, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Save model and processor with ``save_pretrained`` into ``out_dir`` atomically (temporary folder, rename).

    ``extra`` is written as ``routelora.json`` beside the weights (recipe, training figures...).
    """
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()):
        raise RouteloraError(f"{out} exists and is not empty; choose another --out or remove it")
    staging = io.staging_directory(out)
    try:
        model.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
        if extra is not None:
            (staging / "routelora.json").write_text(json.dumps(extra, indent=2, sort_keys=True) + "\n")
        if out.exists():
            out.rmdir()
        io.publish_directory(staging, out, overwrite=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
