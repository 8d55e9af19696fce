"""Measurements, their min / median / max over runs, and the table that shows them."""

import statistics
from dataclasses import dataclass, field
from typing import Any

# Decimal places shown per unit: enough to compare, no false precision.
DIGITS = {
    "s": 2,
    "ms": 1,
    "µs": 0,
    "k instructions": 0,
    "req/s": 0,
    "MiB": 0,
    "tests": 0,
    "requests": 0,
    "% of a core": 0,
    "%": 1,
}


@dataclass
class Measurement:
    label: str
    unit: str
    values: list[float] = field(default_factory=list)

    def summary(self) -> tuple[float, float, float]:
        return min(self.values), statistics.median(self.values), max(self.values)

    def cells(self) -> list[str]:
        digits = DIGITS.get(self.unit, 2)
        return [f"{value:,.{digits}f}" for value in self.summary()]


@dataclass
class Results:
    """Every measurement, in the order first recorded, with one value per run."""

    measurements: dict[str, Measurement] = field(default_factory=dict)
    # What the table leaves out: each load run's full wrk output, server CPU, ...
    details: list[dict[str, Any]] = field(default_factory=list)

    def add(self, label: str, unit: str, value: float) -> None:
        self.extend(label, unit, [value])

    def extend(self, label: str, unit: str, values: list[float]) -> None:
        measurement = self.measurements.setdefault(label, Measurement(label, unit))
        measurement.values.extend(values)

    def table(self) -> str:
        lines = [
            "| Measurement | Unit | Min | Median | Max |",
            "|---|---|--:|--:|--:|",
        ]
        for measurement in self.measurements.values():
            cells = " | ".join(measurement.cells())
            lines.append(f"| {measurement.label} | {measurement.unit} | {cells} |")
        return "\n".join(lines)

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "label": measurement.label,
                "unit": measurement.unit,
                "values": measurement.values,
                **dict(zip(("min", "median", "max"), measurement.summary(), strict=True)),
            }
            for measurement in self.measurements.values()
        ]
