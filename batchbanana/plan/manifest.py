"""The manifest's shape (contract section 2): pydantic models of settings and items, and the JSON
Schema they give. Pydantic stays here (with generation.py, the fields that shape a request, and
variations.py, the types of `vars` and `matrix`), in load.py, which reads the YAML into them, and in
problems.py, which turns its errors into problem lines.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from batchbanana.plan.generation import GenerationFields, ImageEntry, ImageSpec, Strict
from batchbanana.plan.templates import id_shape
from batchbanana.plan.variations import Matrix, Vars

# The keys allowed inside each nested mapping, for "did you mean" hints (filled in below).
NESTED_KEYS: dict[str, tuple[str, ...]] = {}

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Item(GenerationFields):
    """One entry of `items`: a prompt, its images, and any field overridden for it."""

    id: str | None = None
    prompt: str = Field(min_length=1)
    images: list[ImageSpec] = Field(default_factory=list)
    repeat: int = Field(default=1, ge=1, le=10_000)
    # templates and matrices (contract section 11): the values of this item's {{placeholders}},
    # and lists of values to combine (merged over the top-level matrix, key by key)
    vars: Vars | None = None  # None, not {}: one dict less per item of a 100,000-row file
    matrix: Matrix | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not ID_PATTERN.match(id_shape(value)):
            raise ValueError(
                f"{value!r} is not a valid id: letters, digits, '.', '_' and '-', starting with a"
                " letter or digit, at most 128 characters ({{name}} placeholders allowed)"
            )
        return value

    @field_validator("vars")
    @classmethod
    def _vars(cls, value: dict[str, str | None] | None) -> dict[str, str | None] | None:
        for name in value or ():
            if name in cls.model_fields:  # an items_file column must say which it is
                raise ValueError(f"{name!r} is an item field; name the variable differently")
        return value


class Timeouts(Strict):
    """Total seconds per request by image size, and seconds to establish a connection."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    size_512: float = Field(default=300, gt=0, alias="512")
    size_1k: float = Field(default=300, gt=0, alias="1K")
    size_2k: float = Field(default=300, gt=0, alias="2K")
    size_4k: float = Field(default=600, gt=0, alias="4K")
    connect: float = Field(default=30, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _keys_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {str(key): value for key, value in data.items()}
        return data

    def for_size(self, image_size: str) -> float:
        """The total timeout of a request at this size."""
        return {
            "512": self.size_512,
            "1K": self.size_1k,
            "2K": self.size_2k,
            "4K": self.size_4k,
        }[image_size]


class RetrySettings(Strict):
    """How unbilled failures (429, 503, no connection) are retried."""

    max_attempts: int = Field(default=6, ge=1, le=100)
    base_delay_s: float = Field(default=2, ge=0)
    max_delay_s: float = Field(default=120, ge=0)
    max_wait_s: float = Field(default=900, gt=0)


class BatchSettings(Strict):
    """How batch mode (Google's Batch API, half price) submits and waits (contract section 10)."""

    poll_s: float = Field(default=10, gt=0, description="first wait between two polls")
    max_poll_s: float = Field(default=60, gt=0, description="the wait between polls grows to this")
    max_wait_h: float = Field(
        default=48, gt=0, description="a batch still pending after this long is cancelled"
    )
    input: Literal["auto", "inline", "file"] = Field(
        default="auto",
        description="auto: inline while a batch's body stays under 20 MB, else an uploaded file",
    )


class PricingEntry(Strict):
    """A price that overrides the price book for one model."""

    per_request_usd: float | None = Field(default=None, ge=0)
    per_million_tokens_usd: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> PricingEntry:
        if (self.per_request_usd is None) == (self.per_million_tokens_usd is None):
            raise ValueError("give exactly one of per_request_usd or per_million_tokens_usd")
        return self


class Manifest(GenerationFields):
    """A batchbanana job manifest, version 1."""

    version: Literal[1]
    job: str | None = None
    endpoint: str = "https://api.apiyi.com"
    auth: Literal["bearer", "google"] = "bearer"
    api_key_env: str = Field(default="BATCHBANANA_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    concurrency: int = Field(default=8, ge=1, le=1024)
    budget_usd: float | None = Field(default=None, ge=0)
    output_dir: str | None = None
    ledger: str | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    adaptive: bool = True
    rate_limit_rpm: float | None = Field(default=None, gt=0)
    inline_urls: bool = False
    optimize_inputs: Literal["none", "lossless"] = "none"
    allow_insecure_http: bool = False
    price_book: Literal["apiyi", "google"] = "apiyi"
    pricing: dict[str, PricingEntry] = Field(default_factory=dict)
    items: list[Item] = Field(default_factory=list)
    items_file: str | None = None
    items_file_encoding: str = "utf-8"
    # Batch mode (contract section 10)
    mode: Literal["sync", "batch"] = "sync"
    batch: BatchSettings = Field(default_factory=BatchSettings)
    # templates and matrices (contract section 11): variables' default values (an items_file's
    # columns named here fill them per row), and lists of values every item is combined over
    vars: Vars = Field(default_factory=dict)
    matrix: Matrix | None = None
    # Images that carry their making (section 11): a sidecar `<id>.json` beside each image, and
    # with `embed` the same record inside PNG, JPEG and WebP files that carry no C2PA manifest.
    metadata: Literal["none", "sidecar", "embed"] = "sidecar"

    @field_validator("job")
    @classmethod
    def _job(cls, value: str | None) -> str | None:
        if value is not None and not ID_PATTERN.match(value):
            raise ValueError(
                f"{value!r}: use letters, digits, '.', '_' and '-' (it names files and reports)"
            )
        return value

    @field_validator("items_file_encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            "".encode(value)  # finds text encodings only (not base64, rot13...)
        except (LookupError, UnicodeError):  # UnicodeError: the codec named "undefined"
            raise ValueError(
                f"{value!r} is not a text encoding Python knows; HINT: use the name of the one"
                " the file was saved in, e.g. utf-8 (the default), gb18030, gbk, big5,"
                " shift_jis, cp1252"
            ) from None
        return value


NESTED_KEYS.update(
    {
        "timeouts": tuple(info.alias or name for name, info in Timeouts.model_fields.items()),
        "retry": tuple(RetrySettings.model_fields),
        "batch": tuple(BatchSettings.model_fields),
        "pricing": tuple(PricingEntry.model_fields),
        "images": tuple(ImageEntry.model_fields),
    }
)
TOP_LEVEL_KEYS = tuple(
    field_info.alias or name for name, field_info in Manifest.model_fields.items()
)
ITEM_KEYS = tuple(Item.model_fields)


def json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema, for editor completion."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "batchbanana manifest"
    return schema
