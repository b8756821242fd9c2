"""``flux-dao adopt``'s report: the plan in its groups, the refusals, the notes and the outcome, for a person."""

import re
from collections.abc import Iterator

from flux_dao.store.adopt import Adoption, Kind, State

__all__ = ("report_lines",)

_OUTCOME = {
    State.PLANNED: "dry run: nothing was changed; run without --dry-run to apply this plan",
    State.REFUSED: (
        "refused: nothing was changed. Correct what is listed above (the rows, the names, or the manifest), "
        "then run `flux-dao adopt` again"
    ),
}


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def report_lines(adoption: Adoption) -> Iterator[str]:
    """The report, line by line: what would change (or changed) in each group, the notes, and the outcome."""
    heads = ", ".join(adoption.heads) or "base"
    if adoption.state is State.ALREADY:
        current = ", ".join(adoption.current)
        at_head = set(adoption.current) == set(adoption.heads)
        yield f"{adoption.database} is already under flux-dao's migrations (at {current}): nothing to adopt"
        if not at_head:
            yield f"the head is {heads}: run `flux-dao migrate`"
        return
    if adoption.state is State.EMPTY:
        yield f"{adoption.database} has none of the manifest's tables: nothing to adopt (`flux-dao migrate` makes them)"
        return
    yield f"adopting {adoption.database} into flux-dao's migrations (head {heads})"
    blocked = {id(b.step): b for b in adoption.blocked}
    for kind in Kind:
        if kind is Kind.LOSES_DATA or kind is Kind.BLOCKED:
            refused = [b for b in adoption.blocked if (b.step.kind is Kind.BLOCKED) == (kind is Kind.BLOCKED)]
            if refused or kind is Kind.LOSES_DATA:
                yield ""
                yield f"{kind.capitalize()} ({len(refused)}):" if refused else f"{kind.capitalize()}: nothing"
                yield from (f"  - {_one_line(str(b))}" for b in refused)
            continue
        steps = [s for s in adoption.plan.of(kind) if id(s) not in blocked]
        if steps:
            yield ""
            yield f"{kind.capitalize()} ({len(steps)}):"
            yield from (f"  - {_one_line(str(step))}" for step in steps)
    if adoption.plan.notes:
        yield ""
        yield "Notes:"
        yield from (f"  - {_one_line(note)}" for note in adoption.plan.notes)
    yield ""
    if adoption.state is State.APPLIED:
        yield f"applied: the database is at {heads} (head) and `flux-dao serve` can start on it"
        yield f"the revision that did it: {adoption.revision_path}"
    else:
        yield _OUTCOME[adoption.state]
