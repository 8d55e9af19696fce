"""The OpenAPI document, made to say exactly what the API answers.

FastAPI documents what each route declares. Some answers come from elsewhere
(the body size limit, the JSON parser, the 415 of app/api/errors.py, fastapi-users'
transports), and one it
declares, the 422, cannot happen on routes whose only inputs are free strings.
Clients generated from the schema, and the template's Schemathesis run, rely
on both directions: every answer documented, every documented answer real.
The document is corrected once, when it is first generated.
"""

from collections.abc import Callable, Collection
from typing import Any

from fastapi import FastAPI, status

ERROR_DETAIL: dict[str, Any] = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"detail": {"type": "string"}},
            "required": ["detail"],
        }
    }
}
# Any operation that reads a body: the middleware refuses large ones, the JSON
# parser bytes that are not UTF-8. fastapi-users' own 400 descriptions win.
BODY_ERRORS: dict[str, dict[str, Any]] = {
    str(status.HTTP_400_BAD_REQUEST): {
        "description": "The body cannot be parsed (not UTF-8)",
        "content": ERROR_DETAIL,
    },
    str(status.HTTP_413_CONTENT_TOO_LARGE): {
        "description": "Request body larger than the MAX_REQUEST_BODY_BYTES setting",
        "content": ERROR_DETAIL,
    },
}
# Operations that read JSON: a body sent as anything else (app/api/errors.py).
NOT_JSON = {
    str(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE): {
        "description": "The body is not sent as application/json",
        "content": ERROR_DETAIL,
    }
}
OK = str(status.HTTP_200_OK)
NO_CONTENT = str(status.HTTP_204_NO_CONTENT)
VALIDATION_ERROR = str(status.HTTP_422_UNPROCESSABLE_CONTENT)
# Parameters that accept every value (their `title` aside).
FREE_STRINGS: tuple[dict[str, Any], ...] = (
    {"type": "string"},
    {"anyOf": [{"type": "string"}, {"type": "null"}]},
    {"type": "array", "items": {"type": "string"}},
    {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
)


def cannot_fail_validation(operation: dict[str, Any]) -> bool:
    """No body, and each parameter a free string that is in the path or optional."""
    if "requestBody" in operation:
        return False
    for parameter in operation.get("parameters", []):
        schema = {
            key: value
            for key, value in parameter["schema"].items()
            if key != "title" and not (key == "default" and value is None)
        }
        if schema not in FREE_STRINGS or (parameter["in"] != "path" and parameter.get("required")):
            return False
    return True


def correct(operation: dict[str, Any], *, answers_no_content: bool) -> None:
    responses: dict[str, Any] = operation["responses"]
    if "requestBody" in operation:
        for status_code, response in BODY_ERRORS.items():
            responses.setdefault(status_code, response)
        if "application/json" in operation["requestBody"]["content"]:
            responses.update(NOT_JSON)
    if cannot_fail_validation(operation):
        responses.pop(VALIDATION_ERROR, None)
    if answers_no_content:
        # Declared as 200 by fastapi-users, whose transport answers 204 instead.
        responses.setdefault(NO_CONTENT, {"description": "Successful Response"})
        responses.pop(OK, None)


def make_truthful(app: FastAPI, *, no_content: Collection[str]) -> None:
    """Correct `app`'s OpenAPI document; `no_content`: paths whose success is a 204."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for path, operations in generate()["paths"].items():
                for operation in operations.values():
                    correct(operation, answers_no_content=path in no_content)
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]
