"""The manifest's fields that make variations of an item (contract section 11), as pydantic types:
`vars`, the template variables and their values. How they fill an item is variants.py's job.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from batchbanana.plan.values import check_var_name, coerce_var_value

VarName = Annotated[str, AfterValidator(check_var_name)]
# A text or a number (filled in as YAML printed it); null declares a variable without a value.
VarValue = Annotated[
    str | None,
    BeforeValidator(coerce_var_value),
    WithJsonSchema({"type": ["string", "number", "null"]}),
]
Vars = dict[VarName, VarValue]
