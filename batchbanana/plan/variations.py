"""The manifest's fields that make variations of an item (contract section 11), as pydantic types:
`vars`, the template variables and their values, and `matrix`, lists of values to combine. How
they fill and multiply an item is variants.py's and matrix.py's job.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    model_validator,
)

from batchbanana.plan.values import (
    SEED_MAX,
    Grounding,
    ImageSize,
    ThinkingLevel,
    check_ratio,
    check_var_name,
    coerce_grounding,
    coerce_image_size,
    coerce_seed,
    coerce_thinking_level,
    coerce_var_value,
)

VarName = Annotated[str, AfterValidator(check_var_name)]
# A text or a number (filled in as YAML printed it); null declares a variable without a value.
VarValue = Annotated[
    str | None,
    BeforeValidator(coerce_var_value),
    WithJsonSchema({"type": ["string", "number", "null"]}),
]
Vars = dict[VarName, VarValue]

# The generation fields a matrix may vary; any other key of a matrix names a variable.
MATRIX_FIELDS = ("model", "image_size", "aspect_ratio", "seed", "grounding", "thinking_level")
MatrixValue = str | int


def _listed_once(values: list[Any]) -> list[Any]:
    repeated = sorted({str(value) for value in values if values.count(value) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} listed more than once")
    return values


_Values = Field(default=None, min_length=1)
_Once = AfterValidator(_listed_once)
_Choice = Annotated[
    str, BeforeValidator(coerce_var_value), WithJsonSchema({"type": ["string", "number"]})
]
_Size = Annotated[ImageSize, BeforeValidator(coerce_image_size)]
_Ratio = Annotated[str, BeforeValidator(check_ratio)]
_Seed = Annotated[int, BeforeValidator(coerce_seed), Field(ge=0, le=SEED_MAX)]
_Grounding = Annotated[Grounding, BeforeValidator(coerce_grounding)]
_Thinking = Annotated[ThinkingLevel, BeforeValidator(coerce_thinking_level)]


class Matrix(BaseModel):
    """Lists of values to combine: generation fields by name, any other key a variable. Each item
    expands to every combination; the keys keep the order they were written in."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Annotated[list[_Choice], Field(min_length=1), _Once]] = Field(
        init=False
    )

    model: Annotated[list[str], _Once] | None = _Values
    image_size: Annotated[list[_Size], _Once] | None = _Values
    aspect_ratio: Annotated[list[_Ratio], _Once] | None = _Values
    seed: Annotated[list[_Seed], _Once] | None = _Values
    grounding: Annotated[list[_Grounding], _Once] | None = _Values
    thinking_level: Annotated[list[_Thinking], _Once] | None = _Values
    _order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Matrix:
        matrix = handler(data)
        if isinstance(data, dict):
            matrix._order = tuple(str(key) for key in data)
        return matrix  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _variable_names(self) -> Matrix:
        for name in self.__pydantic_extra__ or {}:
            check_var_name(name)
        return self

    def axes(self) -> tuple[tuple[str, tuple[MatrixValue, ...]], ...]:
        """(key, its values) in the order written; keys given as null are left out."""
        values = {name: getattr(self, name) for name in MATRIX_FIELDS}
        values.update(self.__pydantic_extra__ or {})
        order = self._order or tuple(values)
        return tuple((name, tuple(values[name])) for name in order if values.get(name) is not None)
