"""Terminal views: a report's verdicts per profile with its violations, and the list of profiles."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from spikeport.hwprofiles.render import SUMMARY_HEADER, fmt, summary_rows, violation_text
from spikeport.hwprofiles.schema import Profile, sourced_fields


def print_report(data: dict, console: Console) -> None:
    table = Table(title=f"{data['network']}: per sample, {data['totals']['samples']} samples, T = {data['totals']['timesteps']}")
    for column in SUMMARY_HEADER:
        table.add_column(column, overflow="fold")  # a narrow terminal wraps a value, never cuts it
    for row in summary_rows(data):
        table.add_row(*row)
    console.print(table)
    console.print(f"activity: {data['activity']}; layers: {data['lowering']}")
    for mode, a in (data.get("accuracy") or {}).items():
        console.print(f"accuracy ({mode}): {fmt(a['accuracy'])} on {a['samples']} samples")
    for name, p in data["profiles"].items():
        for v in p["violations"]:
            console.print(f"  {name}: {violation_text(v)}")
        if p["unchecked"]:
            console.print(f"  {name}: {p['verdict']}; unchecked: {', '.join(p['unchecked'])}")


def print_profiles(profiles: list[Profile], console: Console) -> None:
    """What `spikeport profiles` shows: each profile, how many of the figures that apply to it are
    known, the unknown ones, and the works its figures cite."""
    table = Table(title="Hardware profiles")
    for column in ["name", "chip", "vendor", "kind", "known figures", "unknown", "sources"]:
        table.add_column(column, overflow="fold")
    for profile in profiles:
        figures = {name: f for name, f in sourced_fields(profile).items() if not f.source.startswith("not applicable")}
        unknown = [name.split(".")[1] for name, f in figures.items() if f.value is None]
        known = f"{len(figures) - len(unknown)} / {len(figures)}"  # of the figures that apply to the chip
        table.add_row(profile.name, profile.chip, profile.vendor, profile.kind, known, ", ".join(unknown), "; ".join(_sources(figures)))
    console.print(table)


def _sources(figures: dict) -> list[str]:
    """The works a profile's known figures cite, each once: a source's text up to its first colon."""
    cited = []
    for figure in figures.values():
        work = figure.source.split(":")[0].strip()
        if figure.value is not None and work not in cited:
            cited.append(work)
    return cited
