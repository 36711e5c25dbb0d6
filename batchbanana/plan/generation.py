"""The manifest's generation fields (contract sections 2, 11 and 13), as pydantic types: the fields
that shape a request, set at the top level and overridable per item, and the input image entries.
manifest.py builds the Manifest and its Item from them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from batchbanana.plan.values import (
    SEED_MAX,
    Grounding,
    ImageSize,
    ThinkingLevel,
    check_ratio,
    coerce_grounding,
    coerce_image_size,
    coerce_seed,
    coerce_thinking_level,
)

Modality = Literal["TEXT", "IMAGE"]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(_has_nul(entry) for entry in value)
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(entry) for key, entry in value.items())
    return False


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # A NUL character can only be a mistake, and paths containing one cannot be opened.
        if _has_nul(value):
            raise ValueError("contains a NUL character")
        return value


class ImageEntry(Strict):
    """An input image given as a mapping: a URL (or path) and, optionally, its MIME type."""

    url: str | None = None
    path: str | None = None
    mime_type: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ImageEntry:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url or path")
        return self


def _image_kind(value: Any) -> str:
    return "ImageEntry" if isinstance(value, dict) else "str"


# A path or URL string, or a mapping; the discriminator makes pydantic report errors for the
# form the user wrote only, instead of one confusing error per form.
ImageSpec = Annotated[
    Annotated[str, Tag("str")] | Annotated[ImageEntry, Tag("ImageEntry")],
    Discriminator(_image_kind),
]


class GenerationFields(Strict):
    """The fields that shape a request; set at the top level and overridable per item."""

    model: str | None = None
    image_size: ImageSize | None = None
    aspect_ratio: str | None = None
    system_prompt: str | None = None
    response_modalities: list[Modality] | None = None
    # seeds (contract section 11): sent as generationConfig.seed
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    # grounding and thinking (contract section 13): Google Search as a tool (none by default),
    # and generationConfig.thinkingConfig.thinkingLevel (the model's default when left out)
    grounding: Grounding | None = None
    thinking_level: ThinkingLevel | None = None

    @field_validator("image_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return coerce_image_size(value)

    @field_validator("aspect_ratio", mode="before")
    @classmethod
    def _ratio(cls, value: Any) -> Any:
        return check_ratio(value)

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value: Any) -> Any:
        return coerce_seed(value)

    @field_validator("grounding", mode="before")
    @classmethod
    def _grounding(cls, value: Any) -> Any:
        return coerce_grounding(value)

    @field_validator("thinking_level", mode="before")
    @classmethod
    def _thinking_level(cls, value: Any) -> Any:
        return coerce_thinking_level(value)

    @field_validator("response_modalities")
    @classmethod
    def _modalities(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if "IMAGE" not in value or len(set(value)) != len(value):
            raise ValueError("use [TEXT, IMAGE] (the default) or [IMAGE]")
        return value
