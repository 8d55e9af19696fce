"""The OpenAPI document, made to say exactly what the API answers.

FastAPI documents what each route declares. Some answers come from elsewhere
(the body size limit, the JSON parser, fastapi-users' transports), and one it
declares, the 422, cannot happen on routes whose only inputs are free strings.
Clients generated from the schema, and the template's Schemathesis run, rely
on both directions: every answer documented, every documented answer real.
"""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, status
from fastapi.routing import APIRoute

from app.core.config import settings

ERROR_DETAIL: dict[str, Any] = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"detail": {"type": "string"}},
            "required": ["detail"],
        }
    }
}
# Any route that reads a body: the middleware refuses large ones, the JSON
# parser bytes that are not UTF-8. fastapi-users' own 400 descriptions win.
BODY_ERRORS: dict[int, dict[str, Any]] = {
    status.HTTP_400_BAD_REQUEST: {
        "description": "The body cannot be parsed (not UTF-8)",
        "content": ERROR_DETAIL,
    },
    status.HTTP_413_CONTENT_TOO_LARGE: {
        "description": f"Request body larger than {settings.MAX_REQUEST_BODY_BYTES} bytes",
        "content": ERROR_DETAIL,
    },
}
VALIDATION_ERROR = str(status.HTTP_422_UNPROCESSABLE_CONTENT)
FREE_STRING_SCHEMAS: tuple[dict[str, Any], ...] = (
    {"type": "string"},
    {"anyOf": [{"type": "string"}, {"type": "null"}]},
    {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
)


def answer_success_with(router: APIRouter, name: str, status_code: int) -> None:
    """Document `status_code` as the success of route `name`: it declares 200, never sent."""
    route = next(
        route for route in router.routes if isinstance(route, APIRoute) and route.name == name
    )
    route.status_code = status_code


def document_body_errors(app: FastAPI) -> None:
    for route in app.routes:
        if isinstance(route, APIRoute) and route.body_field is not None:
            for status_code, response in BODY_ERRORS.items():
                route.responses.setdefault(status_code, response)


def cannot_fail_validation(operation: dict[str, Any]) -> bool:
    """No body, and each parameter a free string that is in the path or optional."""
    if "requestBody" in operation:
        return False
    for parameter in operation.get("parameters", []):
        schema = {key: value for key, value in parameter["schema"].items() if key != "title"}
        if schema.get("default") is None:
            schema.pop("default", None)
        required_in_query = parameter.get("required") and parameter["in"] != "path"
        if required_in_query or schema not in FREE_STRING_SCHEMAS:
            return False
    return True


def drop_impossible_validation_errors(app: FastAPI) -> None:
    """Remove the 422 that FastAPI documents on every route with parameters, where none can fail."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    if cannot_fail_validation(operation):
                        operation["responses"].pop(VALIDATION_ERROR, None)
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]


def make_truthful(app: FastAPI) -> None:
    document_body_errors(app)
    drop_impossible_validation_errors(app)
