"""Write `template/openapi.json.jinja`, the OpenAPI contract every render commits.

The schema a rendered service serves depends on its answers (id type, auth
strategy and transport, OAuth providers, the example resource, the project's
name). This script renders each answer set of `tests/support/matrix.py` (a pairwise
covering array of exactly those questions), asks each render for its schema
(`python -m commands.openapi`), and merges the eight schemas into one Jinja
template: what all renders share is written once; a member that only some
have is wrapped in the condition on the answer that explains it; OAuth
providers' routes are a loop over the chosen providers.

Run it after changing anything the served schema shows (routes, schemas,
responses, fastapi-users), then check that every render's own contract test
passes (`tests/matrix/test_gates.py` runs the rendered suites):

    uv run python -m contract.regenerate
"""

import itertools
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from copier import run_copy

from tests.support.matrix import COMBINATIONS, Answers, answers_for

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template" / "openapi.json.jinja"
INDENT = "  "
PROVIDER_ROUTE = re.compile(r"^/api/auth/(?P<provider>[a-z]+)/(?P<route>authorize|callback)$")
# The routes of the OAuth providers are written, per provider, after this one.
BEFORE_PROVIDERS = "/api/auth/forgot-password"

Predicate = tuple[str, Callable[[Answers], bool]]
SINGLE_PREDICATES: list[Predicate] = [
    ("example_resource", lambda a: bool(a["example_resource"])),
    ("not example_resource", lambda a: not a["example_resource"]),
    ('auth_transport == "cookie"', lambda a: a["auth_transport"] == "cookie"),
    ('auth_transport == "bearer"', lambda a: a["auth_transport"] == "bearer"),
    ('auth_strategy == "database"', lambda a: a["auth_strategy"] == "database"),
    ('auth_strategy == "jwt"', lambda a: a["auth_strategy"] == "jwt"),
    ('user_id_type == "uuid"', lambda a: a["user_id_type"] == "uuid"),
    ('user_id_type == "int"', lambda a: a["user_id_type"] == "int"),
    ("oauth_providers", lambda a: bool(a["oauth_providers"])),
    ("not oauth_providers", lambda a: not a["oauth_providers"]),
]
PREDICATES = SINGLE_PREDICATES + [
    (f"({first}) and ({second})", lambda a, f=f, s=s: f(a) and s(a))
    for (first, f), (second, s) in itertools.combinations(SINGLE_PREDICATES, 2)
]


@dataclass(frozen=True)
class Sample:
    """One render's value at one place of the schema."""

    answers: Answers
    value: Any


def served_schema(answers: Answers) -> dict[str, Any]:
    """The schema that a render of `answers` serves, from its own `commands.openapi`."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        run_copy(
            str(ROOT),
            project,
            data=answers,
            defaults=True,
            vcs_ref="HEAD",  # the working tree, uncommitted changes included
            exclude=["openapi.json"],
            quiet=True,
        )
        for command in (
            ["uv", "sync", "--locked", "--quiet"],
            ["uv", "run", "--locked", "python", "-m", "commands.openapi"],
        ):
            subprocess.run(command, cwd=project, check=True, capture_output=True)
        schema: dict[str, Any] = json.loads((project / "openapi.json").read_text())
        return schema


def with_placeholders(value: Any, answers: Answers) -> Any:
    """`value` with the answers that appear in its strings replaced by placeholders."""
    strategy = answers["auth_strategy"]
    if isinstance(value, dict):
        return {
            with_placeholders(key, answers): with_placeholders(item, answers)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [with_placeholders(item, answers) for item in value]
    if not isinstance(value, str):
        return value
    if value == answers["project_name"]:
        return "@@project_name@@"
    if value == f"{answers['project_name']}: a FastAPI service":
        return "@@description@@"
    value = value.replace(f"{slug(answers['project_name'])}_auth", "@@cookie@@")
    value = re.sub(rf"(?<=_){strategy}(?=_)", "@@strategy@@", value)
    return re.sub(rf"(?<=[:.]){strategy.title()}(?=\.)", "@@Strategy@@", value)


def slug(name: str) -> str:
    """The cookie's stem, as copier.yml derives `project_slug` from the name."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def provider_placeholders(value: Any, provider: str) -> Any:
    if isinstance(value, dict):
        return {key: provider_placeholders(item, provider) for key, item in value.items()}
    if isinstance(value, list):
        return [provider_placeholders(item, provider) for item in value]
    if isinstance(value, str):
        return value.replace(provider, "@@provider@@").replace(provider.title(), "@@Provider@@")
    return value


def condition(samples: list[Sample], chosen: list[Sample]) -> str | None:
    """The simplest predicate true exactly for the `chosen` samples; None if all are."""
    if len(chosen) == len(samples):
        return None
    for expression, holds in PREDICATES:
        if all(holds(sample.answers) == (sample in chosen) for sample in samples):
            return expression
    raise SystemExit(f"no answer explains which renders have this: {chosen[0].value!r}")


def jinja_text(value: Any) -> str:
    """A JSON scalar or key as template text, its placeholders as Jinja expressions."""
    if value == "@@project_name@@":
        return "{{ project_name | tojson }}"
    if value == "@@description@@":
        return "{{ description | tojson }}"
    text = json.dumps(value, ensure_ascii=False)
    for placeholder, expression in {
        "@@cookie@@": "{{ project_slug | replace('-', '_') }}_auth",
        "@@strategy@@": "{{ auth_strategy }}",
        "@@Strategy@@": "{{ auth_strategy | title }}",
        "@@provider@@": "{{ provider }}",
        "@@Provider@@": "{{ provider | title }}",
    }.items():
        text = text.replace(placeholder, expression)
    return text


def members(samples: list[Sample]) -> Iterator[tuple[str | None, str | None, list[Sample]]]:
    """(key or None for list items, condition, samples) of each member, in order."""
    if all(isinstance(sample.value, dict) for sample in samples):
        for key in sorted({key for sample in samples for key in sample.value}):
            present = [sample for sample in samples if key in sample.value]
            yield (
                key,
                condition(samples, present),
                [Sample(sample.answers, sample.value[key]) for sample in present],
            )
        return
    lengths = {len(sample.value) for sample in samples}
    if len(lengths) == 1:
        for index in range(lengths.pop()):
            yield None, None, [Sample(sample.answers, sample.value[index]) for sample in samples]
        return
    # Lists of different lengths: each distinct item, in order, where it appears.
    items: dict[str, Any] = {}
    for sample in samples:
        for item in sample.value:
            items.setdefault(json.dumps(item, sort_keys=True), item)
    for text, item in items.items():
        present = [s for s in samples if text in {json.dumps(i, sort_keys=True) for i in s.value}]
        yield None, condition(samples, present), [Sample(s.answers, item) for s in present]


def emit(samples: list[Sample], depth: int, extra: list[str] | None = None) -> str:
    """The template text of the value the samples share, at `depth` levels of indentation."""
    values = [sample.value for sample in samples]
    if all(isinstance(value, dict) for value in values) or all(
        isinstance(value, list) for value in values
    ):
        return emit_container(samples, depth, extra)
    distinct = {json.dumps(value, sort_keys=True): value for value in values}
    if len(distinct) == 1:
        return jinja_text(values[0])
    if len(distinct) != 2:
        raise SystemExit(f"more than two values at one place: {list(distinct)}")
    first, second = distinct.values()
    when_first = condition(samples, [s for s in samples if s.value == first])
    then, otherwise = json.dumps(jinja_text(first)), json.dumps(jinja_text(second))
    return f"{{{{ {then} if {when_first} else {otherwise} }}}}"


def emit_container(samples: list[Sample], depth: int, extra: list[str] | None) -> str:
    is_dict = isinstance(samples[0].value, dict)
    parts = list(members(samples))
    if not parts and not extra:
        return "{}" if is_dict else "[]"
    inner = INDENT * (depth + 1)
    lines: list[str] = []
    for index, (key, when, member_samples) in enumerate(parts):
        text = emit(member_samples, depth + 1)
        if key is not None:
            text = f"{jinja_text(key)}: {text}"
        later = following(member_samples, parts[index + 1 :])
        if extra and key == BEFORE_PROVIDERS:
            lines.append(f"{inner}{text},")
            lines.extend(extra)
            continue
        if any(later_when is None for later_when in later):
            text += ","
        elif later:
            text += f'{{{{ "," if {" or ".join(f"({w})" for w in later)} else "" }}}}'
        if when is None:
            lines.append(f"{inner}{text}")
        else:
            lines += [f"{{% if {when} %}}", f"{inner}{text}", "{% endif %}"]
    opening, closing = ("{", "}") if is_dict else ("[", "]")
    return "\n".join([opening, *lines, INDENT * depth + closing])


def following(
    present: list[Sample], later: list[tuple[str | None, str | None, list[Sample]]]
) -> list[str | None]:
    """The conditions of the later members that can follow a member `present` in these samples.

    None (unconditional) when one always follows it; members that never do are left out.
    """
    answers = [sample.answers for sample in present]
    conditions: list[str | None] = []
    for _, when, samples in later:
        together = [a for a in answers if any(s.answers is a for s in samples)]
        if len(together) == len(answers):
            conditions.append(None)
        elif together:
            conditions.append(when)
    return conditions


def provider_routes(schemas: list[Sample]) -> list[str]:
    """The template lines of every chosen provider's routes (within "paths")."""
    routes: dict[str, list[Sample]] = {"authorize": [], "callback": []}
    for sample in schemas:
        for path, operations in sample.value["paths"].items():
            if match := PROVIDER_ROUTE.match(path):
                templated = provider_placeholders(operations, match["provider"])
                routes[match["route"]].append(Sample(sample.answers, templated))
    inner = INDENT * 2
    lines = ["{% for provider in oauth_providers | sort %}"]
    for route, samples in routes.items():
        lines.append(f'{inner}"/api/auth/{{{{ provider }}}}/{route}": {emit(samples, 2)},')
    return [*lines, "{% endfor %}"]


def template_text() -> str:
    schemas = []
    for combination in COMBINATIONS:
        answers = answers_for(combination)
        print(f"schema of {combination}", file=sys.stderr)
        schemas.append(Sample(answers, with_placeholders(served_schema(answers), answers)))
    extra = provider_routes(schemas)
    shared = [
        Sample(
            sample.answers,
            {
                **sample.value,
                "paths": {
                    path: operations
                    for path, operations in sample.value["paths"].items()
                    if not PROVIDER_ROUTE.match(path)
                },
            },
        )
        for sample in schemas
    ]
    # Members of the top level, with the provider routes spliced into "paths".
    lines = ["{"]
    parts = list(members(shared))
    for index, (key, _, member_samples) in enumerate(parts):
        comma = "," if index < len(parts) - 1 else ""
        value = emit(member_samples, 1, extra if key == "paths" else None)
        lines.append(f"{INDENT}{jinja_text(key)}: {value}{comma}")
    return "\n".join([*lines, "}"]) + "\n"


def main() -> int:
    TEMPLATE.write_text(template_text())
    print(f"wrote {TEMPLATE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
