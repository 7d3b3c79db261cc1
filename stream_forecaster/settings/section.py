"""The base of every settings section: frozen, and an unknown key is an error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A section of the settings (``SF_<SECTION>__<NAME>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
