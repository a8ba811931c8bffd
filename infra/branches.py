"""Loading the branch file (LAPSE_BRANCHES_FILE, default data/branches.json), validated."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from domain.branches import Branches

SAMPLE_BRANCHES = Path(__file__).resolve().parents[1] / "data" / "branches.json"


class BranchFileError(ValueError):
    """The branch file cannot be used; one line naming the file, the entry and the field
    (never a value: addresses and phone numbers are shown to nobody in errors)."""


def load_branches(path: Path = SAMPLE_BRANCHES) -> Branches:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise BranchFileError(f"{path}: cannot be read ({err.strerror})") from None
    except ValueError as err:
        raise BranchFileError(f"{path}: not JSON ({type(err).__name__})") from None
    try:
        return Branches.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in e["loc"]) or "file"
            problems.append(f"{where}: {e['msg']}")
        raise BranchFileError(f"{path}: {'; '.join(problems)}") from None
