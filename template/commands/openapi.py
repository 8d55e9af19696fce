"""Write openapi.json, the API's contract: `uv run python -m commands.openapi`.

The file is the schema the app serves at /openapi.json, pretty-printed with
sorted keys: a change of the API shows up in review as a diff of this file,
and `tests/test_openapi_contract.py` fails until the file is written again.
"""

import json
from pathlib import Path
from typing import Any

CONTRACT = Path(__file__).resolve().parents[1] / "openapi.json"


def render(schema: dict[str, Any]) -> str:
    """The text of openapi.json: stable key order, one trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    # Imported here, where it is used: importing the app connects to nothing.
    from app.main import app

    CONTRACT.write_text(render(app.openapi()), encoding="utf-8")
    print(f"Wrote {CONTRACT.name}: commit it with the change of the API.")


if __name__ == "__main__":
    main()
