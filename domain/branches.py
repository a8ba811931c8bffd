"""The insurer's branches and which one serves a postal address (home visits, issue 16.5)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import Field, model_validator

from domain.models import Code, Model, PostalAddress

# Suffixes the same place is written with or without: 广东省/广东, 北京市/北京, 朝阳区/朝阳.
_SUFFIX = re.compile(r"(特别行政区|维吾尔自治区|壮族自治区|回族自治区|自治区|自治州|自治县"
                     r"|省|市|区|县|旗)$")


class Branch(Model):
    code: Code
    name: str = Field(min_length=1, max_length=60)
    province: str = Field(min_length=1, max_length=20)
    city: str = Field(min_length=1, max_length=30)
    district: str = Field("", max_length=30)
    address: str = Field(min_length=1, max_length=120)
    phone: str = Field(pattern=r"^[0-9+][0-9-]{4,19}$")
    hours: str = Field(min_length=1, max_length=60)
    head_office: bool = False


class Branches(Model):
    """The branch file: every branch, exactly one of them the head office."""

    branches: list[Branch] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_head_office(self) -> Branches:
        heads = [b for b in self.branches if b.head_office]
        if len(heads) != 1:
            raise ValueError(f"exactly one branch must be the head office (found {len(heads)})")
        codes = [b.code for b in self.branches]
        if len(set(codes)) != len(codes):
            raise ValueError("two branches have the same code")
        return self

    @property
    def head_office(self) -> Branch:
        return next(b for b in self.branches if b.head_office)


def place(name: str) -> str:
    """A place name as compared: without spaces and its administrative suffix."""
    name = "".join(name.split())
    return _SUFFIX.sub("", name) or name


def nearest_branch(address: PostalAddress | None, branches: Branches) -> Branch:
    """The branch that serves `address`: one in the same district, else the same city,
    else the same province, else the head office. Among several at the same level, the
    first in the file (the file lists the branch that should take the visits first)."""
    if address is not None:
        levels: Sequence[tuple[str, ...]] = (
            ("province", "city", "district"), ("province", "city"), ("province",))
        for fields in levels:
            if not all(getattr(address, f).strip() for f in fields):
                continue
            wanted = [place(getattr(address, f)) for f in fields]
            for branch in branches.branches:
                if [place(getattr(branch, f)) for f in fields] == wanted:
                    return branch
    return branches.head_office
