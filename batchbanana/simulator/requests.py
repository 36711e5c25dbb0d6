"""Reading a generateContent request the way Google does: keys in both cases, both base64
alphabets, and the 400s Google answers."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchbanana.simulator.images import PNG_SIGNATURE, png_size
from batchbanana.simulator.reading import ApiError, invalid_argument, pick, snake_case
from batchbanana.simulator.rules import MAX_IMAGE_BYTES, MAX_IMAGES, ModelRule
from batchbanana.simulator.tools import read_search, read_thinking

__all__ = [
    "ApiError", "ImageRequest", "check_request", "invalid_argument", "pick", "read_request",
    "snake_case",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """The facts of a valid request that shape its answer."""

    prompt: str
    image_size: str | None
    aspect_ratio: str | None
    want_text: bool
    want_image: bool
    input_images: int
    last_input_size: tuple[int, int] | None
    seed: int | None = None  # generationConfig.seed: the same seed and prompt, the same pixels
    search: frozenset[str] = frozenset()  # the googleSearch tool's search types: web, image
    thinking_level: str | None = None  # generationConfig.thinkingConfig.thinkingLevel


def _decode_b64(text: str) -> bytes | None:
    """Bytes from standard or URL-safe base64, padded or not; None if it is not base64."""
    if not isinstance(text, str):
        return None
    unpadded = text.rstrip("=").translate(str.maketrans("-_", "+/"))
    if len(unpadded) % 4 == 1:
        return None
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"heif"})


def sniff_mime(data: bytes) -> str | None:
    """The image MIME type the bytes hold (png, jpeg, webp, heic, heif), or None."""
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        if data[8:12] in _HEIC_BRANDS:
            return "image/heic"
        if data[8:12] in _HEIF_BRANDS:
            return "image/heif"
    return None


def _same_mime(declared: str, sniffed: str) -> bool:
    declared = declared.strip().lower()
    declared = "image/jpeg" if declared == "image/jpg" else declared
    heif_family = {"image/heic", "image/heif"}  # one container; brands are used loosely
    return declared == sniffed or {declared, sniffed} <= heif_family


def _read_image_part(inline: Any, where: str) -> tuple[int, int] | None:
    """Check one inlineData part; return the PNG's size when it is a PNG."""
    if not isinstance(inline, Mapping):
        raise invalid_argument(f"{where}.inlineData must be an object with mimeType and data")
    declared = pick(inline, "mimeType")
    if not isinstance(declared, str) or not declared:
        raise invalid_argument(f"{where}.inlineData.mimeType is required")
    data = _decode_b64(pick(inline, "data"))
    if data is None:
        raise invalid_argument(
            f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed"
        )
    if len(data) > MAX_IMAGE_BYTES:
        raise invalid_argument(
            f"{where}: the image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES} bytes"
        )
    sniffed = sniff_mime(data)
    if sniffed is None:
        raise invalid_argument(
            f"{where}: Unable to process input image. The bytes are not png, jpeg, webp, "
            "heic or heif."
        )
    if not _same_mime(declared, sniffed):
        raise invalid_argument(
            f"{where}: Unable to process input image. mimeType {declared} does not match "
            f"the image data ({sniffed})."
        )
    return png_size(data)


def _read_generation_config(
    rule: ModelRule, model: str, body: Mapping[str, Any]
) -> tuple[str | None, str | None, bool, bool]:
    """(imageSize, aspectRatio, want_text, want_image) from generationConfig, checked."""
    gen = pick(body, "generationConfig") or {}
    if not isinstance(gen, Mapping):
        raise invalid_argument("generationConfig must be an object")
    count = pick(gen, "candidateCount")
    if count is not None and (not isinstance(count, int) or count > 1):
        raise invalid_argument(f"Multiple candidates is not enabled for models/{model}")
    modalities = pick(gen, "responseModalities")
    wanted = {"TEXT", "IMAGE"}
    if modalities is not None:
        if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
            raise invalid_argument('responseModalities must be a list such as ["TEXT", "IMAGE"]')
        wanted = {m.upper() for m in modalities}
        if not wanted or not wanted <= {"TEXT", "IMAGE"}:
            raise invalid_argument(
                f"responseModalities {modalities} is not supported; use TEXT and IMAGE"
            )
    image_config = pick(gen, "imageConfig") or {}
    if not isinstance(image_config, Mapping):
        raise invalid_argument("imageConfig must be an object")
    size = pick(image_config, "imageSize")
    ratio = pick(image_config, "aspectRatio")
    if size is not None and not rule.sizes:
        raise invalid_argument(
            f"imageSize is not supported by {model}; HINT: leave imageSize out (1K only)"
        )
    if size is not None and size not in rule.sizes:
        raise invalid_argument(
            f"imageSize {size!r} is not supported by {model}; HINT: use one of "
            f"{', '.join(rule.sizes)}"
        )
    if ratio is not None and ratio not in rule.ratios:
        raise invalid_argument(
            f"aspectRatio {ratio!r} is not supported by {model}; HINT: use one of "
            f"{', '.join(rule.ratios)}"
        )
    return size, ratio, "TEXT" in wanted, "IMAGE" in wanted


_INT32 = range(-(2**31), 2**31)


def read_seed(body: Mapping[str, Any]) -> int | None:
    """generationConfig.seed, an int32 as protobuf's JSON reads one (a number, or its digits as
    a string); anything else is the 400 Google answers."""
    gen = pick(body, "generationConfig")
    seed = pick(gen, "seed") if isinstance(gen, Mapping) else None
    if seed is None:
        return None
    number = seed
    as_digits = isinstance(seed, str) and re.fullmatch(r"-?\d+", seed) is not None
    if as_digits or (isinstance(seed, float) and seed.is_integer()):
        number = int(seed)
    if isinstance(number, bool) or not isinstance(number, int) or number not in _INT32:
        raise invalid_argument(
            f"Invalid value at 'generation_config.seed' (TYPE_INT32), {json.dumps(seed)}"
        )
    return number


def read_request(rule: ModelRule, model: str, raw: bytes) -> ImageRequest:
    """Parse and check a generateContent body; raise ApiError(400) where Google would."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid_argument("Invalid JSON payload received.") from None
    return check_request(rule, model, body)


def check_request(rule: ModelRule, model: str, body: Any) -> ImageRequest:
    """Check a parsed generateContent body; raise ApiError(400) where Google would."""
    if not isinstance(body, Mapping):
        raise invalid_argument("Invalid JSON payload received: the body must be an object.")
    contents = pick(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise invalid_argument("* GenerateContentRequest.contents: contents is not specified")
    texts: list[str] = []
    user_parts = 0
    images = 0
    last_size: tuple[int, int] | None = None
    for i, content in enumerate(contents):
        parts = pick(content, "parts") if isinstance(content, Mapping) else None
        if not isinstance(parts, list):
            raise invalid_argument(f"contents[{i}].parts must be a list")
        is_user = content.get("role", "user") == "user"
        for j, part in enumerate(parts):
            where = f"contents[{i}].parts[{j}]"
            if not isinstance(part, Mapping):
                raise invalid_argument(f"{where} must be an object")
            inline, file_data = pick(part, "inlineData"), pick(part, "fileData")
            text = part.get("text")
            if inline is not None:
                images += 1
                last_size = _read_image_part(inline, where)
                user_parts += is_user
            elif file_data is not None:
                if not isinstance(file_data, Mapping) or not pick(file_data, "fileUri"):
                    raise invalid_argument(f"{where}.fileData.fileUri is required")
                images += 1
                last_size = None
                user_parts += is_user
            elif text is not None:
                if not isinstance(text, str) or not text:
                    raise invalid_argument(
                        "Unable to submit request because it has an empty text parameter. "
                        "Add a value to the parameter and try again."
                    )
                if is_user:
                    texts.append(text)
                    user_parts += 1
    if user_parts == 0:
        raise invalid_argument(
            "* GenerateContentRequest.contents: contents has no user text or image part"
        )
    if images > MAX_IMAGES:
        raise invalid_argument(f"The request has {images} images; at most {MAX_IMAGES} are allowed")
    size, ratio, want_text, want_image = _read_generation_config(rule, model, body)
    seed = read_seed(body)
    return ImageRequest(
        "\n".join(texts),
        size,
        ratio,
        want_text,
        want_image,
        images,
        last_size,
        seed,
        search=read_search(rule, model, body),
        thinking_level=read_thinking(rule, model, body),
    )
