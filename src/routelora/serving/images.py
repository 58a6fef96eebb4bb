"""Images of a request: ``data:`` URIs, or files under one folder the operator allowed; never the network."""

import base64
import binascii
import io
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image, UnidentifiedImageError

from routelora.data.samples import Sample
from routelora.data.task import TaskError
from routelora.serving.errors import bad_request

PARAM = "messages"


def read_image_url(url: str, image_dir: Path | None, max_pixels: int) -> bytes:
    """The encoded image an ``image_url`` names, checked to decode as an image of at most ``max_pixels``.

    Raises:
        RequestError: 400 for a URL that is neither a data URI nor an allowed file, or bytes that are no image.
    """
    if url.startswith("data:"):
        data = _data_uri(url)
    elif url.startswith("file://"):
        data = _allowed_file(url, image_dir)
    else:
        scheme = urlparse(url).scheme or "no scheme"
        raise bad_request(
            f"image_url must be a data: URI (data:image/png;base64,...); this server fetches nothing from the network "
            f"(got a URL with {scheme})",
            PARAM,
            "invalid_image_url",
        )
    check_image(data, max_pixels)
    return data


def _data_uri(url: str) -> bytes:
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise bad_request(
            "an image data: URI must be base64 encoded: data:image/png;base64,...", PARAM, "invalid_image"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("the image data: URI is not valid base64", PARAM, "invalid_image") from None


def _allowed_file(url: str, image_dir: Path | None) -> bytes:
    if image_dir is None:
        raise bad_request(
            "file:// image URLs are refused: the server reads local files only under a folder given with --image-dir",
            PARAM,
            "invalid_image_url",
        )
    path = Path(unquote(urlparse(url).path)).resolve()
    if not path.is_relative_to(image_dir.resolve()) or not path.is_file():
        raise bad_request(f"{url} is not a file under the allowed image folder", PARAM, "invalid_image_url")
    return path.read_bytes()


def check_image(data: bytes, max_pixels: int) -> None:
    """Refuse bytes that are no image, or declare more than ``max_pixels``, before and by decoding them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(f"more than {Image.MAX_IMAGE_PIXELS}", max_pixels) from None
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise bad_request(f"the image cannot be read ({error})", PARAM, "invalid_image") from None
    if width * height > max_pixels:
        raise _too_large(f"{width} x {height}", max_pixels)
    try:  # a full decode: a valid header over broken data fails here, not in a batch
        Sample(id="request", prompt="", answer="", references=[], image=data, origin="request").load_image()
    except TaskError as error:
        raise bad_request(str(error).removeprefix("request: "), PARAM, "invalid_image") from None


def _too_large(declared: str, max_pixels: int):
    return bad_request(
        f"the image declares {declared} pixels, more than this server's limit of {max_pixels} (a decompression "
        "bomb, or far larger than the model takes); resize it",
        PARAM,
        "invalid_image",
    )
