"""What the OpenAPI document must say about input that Litestar's generator leaves out, so the
document states what the API enforces:

- a request Struct that forbids unknown fields has `additionalProperties: false`;
- a Struct's `json_schema_extra` (at least one field of a PATCH, one of two alternatives);
- every string a client sends that declares no pattern of its own gets the character rule the
  edge applies to it (lms.api.text): free text in bodies, plain text in parameters;
- a handler that reads a multipart form itself (it streams the file) names the form's Struct in
  its opt (MULTIPART_FORM, FILE_FIELD): the document gets that request body.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.routes import HTTPRoute

from lms.api.text import FREE_TEXT_PATTERN, PLAIN_TEXT_PATTERN

# Route opt keys: the Struct of a streamed multipart form's text fields, and its file part's name.
MULTIPART_FORM = "multipart_form"
FILE_FIELD = "file_field"

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def constrain(app: Litestar, document: OpenAPI) -> None:
    components = (document.components.schemas or {}) if document.components else {}
    for struct in _request_structs(app):
        schema = components.get(struct.__name__)
        if schema is None:
            raise RuntimeError(f"the OpenAPI document has no schema named {struct.__name__}")
        if struct.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        aliases = Schema.field_aliases()
        for keyword, value in struct.json_schema_extra.items():
            setattr(schema, aliases.get(keyword, keyword), value)
    _document_forms(app, document)
    seen: set[str] = set()
    for operation in _operations(document):
        for parameter in operation.parameters or ():
            if isinstance(parameter, Parameter):
                _add_pattern(parameter.schema, PLAIN_TEXT_PATTERN, components, seen)
        body = operation.request_body
        if isinstance(body, RequestBody):
            for media in body.content.values():
                _add_pattern(media.schema, FREE_TEXT_PATTERN, components, seen)


def _document_forms(app: Litestar, document: OpenAPI) -> None:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            form = handler.opt.get(MULTIPART_FORM)
            if form is None:
                continue
            item = (document.paths or {}).get(route.path_format)
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if isinstance(operation, Operation):
                    operation.request_body = _form_body(form, handler.opt.get(FILE_FIELD, "file"))


def _form_body(form: type[Any], file_field: str) -> RequestBody:
    """multipart/form-data: the Struct's fields as text parts (their JSON Schema: lengths,
    patterns, defaults) and the file part, in any order."""
    (definition,) = msgspec.json.schema_components([form])[1].values()
    properties: dict[str, Schema | Reference] = {
        name: Schema(
            type=OpenAPIType.STRING,
            min_length=field.get("minLength"),
            max_length=field.get("maxLength"),
            pattern=field.get("pattern"),
            default=field.get("default"),
            description=field.get("description"),
        )
        for name, field in definition["properties"].items()
    }
    properties[file_field] = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
    schema = Schema(
        type=OpenAPIType.OBJECT,
        properties=properties,
        required=sorted([*definition.get("required", ()), file_field]),
        description=definition.get("description"),
    )
    return RequestBody(
        content={"multipart/form-data": OpenAPIMediaType(schema=schema)}, required=True
    )


def _operations(document: OpenAPI) -> Iterator[Operation]:
    for item in (document.paths or {}).values():
        for method in METHODS:
            operation = getattr(item, method, None)
            if isinstance(operation, Operation):
                yield operation


def _request_structs(app: Litestar) -> list[type[Any]]:
    """The Structs request bodies are made of: each handler's `data` type and those inside it."""
    found: dict[type[Any], None] = {}
    pending: list[Any] = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            data = isinstance(handler, HTTPRouteHandler) and handler.parsed_fn_signature.parameters
            if data and "data" in data:
                pending.append(msgspec.inspect.type_info(data["data"].annotation))
    while pending:
        info = pending.pop()
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls not in found:
                found[info.cls] = None
                pending.extend(field.type for field in info.fields)
        elif isinstance(info, msgspec.inspect.Metadata):
            pending.append(info.type)
        elif isinstance(info, msgspec.inspect.UnionType):
            pending.extend(info.types)
        elif isinstance(info, msgspec.inspect.ListType | msgspec.inspect.SetType):
            pending.append(info.item_type)
        elif isinstance(info, msgspec.inspect.DictType):
            pending.append(info.value_type)
    return list(found)


def _add_pattern(
    schema: Schema | Reference | None,
    pattern: str,
    components: dict[str, Schema],
    seen: set[str],
) -> None:
    """Give `pattern` to each string schema in `schema` that has no pattern, enum or const of its
    own (those say more); components once each. A union that admits strings (an
    optional field: oneOf string, null) gets it beside its length limits, where Litestar puts a
    field's own pattern: JSON Schema applies it to strings only."""
    if isinstance(schema, Reference):
        name = schema.ref.rsplit("/", 1)[-1]
        if name not in seen and name in components:
            seen.add(name)
            _add_pattern(components[name], pattern, components, seen)
        return
    if not isinstance(schema, Schema) or _says_more(schema):
        return  # a raw JSON Schema fragment (json_schema_extra) says exactly what it means
    members = [*(schema.one_of or ()), *(schema.any_of or ()), *(schema.all_of or ())]
    if _is_string(schema) or any(
        isinstance(m, Schema) and _is_string(m) and not _says_more(m) for m in members
    ):
        schema.pattern = pattern
    for member in members:
        if not (isinstance(member, Schema) and _is_string(member)):
            _add_pattern(member, pattern, components, seen)
    for member in (schema.properties or {}).values():
        _add_pattern(member, pattern, components, seen)
    _add_pattern(schema.items, pattern, components, seen)
    if isinstance(schema.additional_properties, Schema | Reference):
        _add_pattern(schema.additional_properties, pattern, components, seen)


def _says_more(schema: Schema) -> bool:
    """A pattern, an enum or a const names the characters allowed, and a file's bytes are not
    text; a format (uri, email) does not exclude control characters, so it gets the pattern."""
    if schema.format == OpenAPIFormat.BINARY:
        return True
    return bool(schema.pattern or schema.enum) or schema.const is not None


def _is_string(schema: Schema) -> bool:
    types = schema.type if isinstance(schema.type, list | tuple) else [schema.type]
    return OpenAPIType.STRING in types
