"""The promotion gate: a candidate goes live only if it beats what is live on the same
held-out windows, never trained on (a first model: persistence)."""

from __future__ import annotations

from dataclasses import dataclass

from stream_forecaster.training.fit import Errors


@dataclass(frozen=True)
class Verdict:
    """The promotion gate's decision.

    Args:
        promote: the candidate goes live.
        reason: why, in words (logged and kept in the registry).
        candidate: the candidate's errors on the held-out windows.
        current: the current model's errors on the same windows (None for a first model).
    """

    promote: bool
    reason: str
    candidate: Errors
    current: Errors | None


def gate(candidate: Errors, current: Errors | None) -> Verdict:
    """A first model must beat persistence; a later one the current model, on the same
    held-out windows."""
    if current is None:
        if candidate.mae < candidate.persistence_mae:
            return Verdict(
                True,
                f"first model: holdout MAE {candidate.mae:.4f} beats persistence "
                f"{candidate.persistence_mae:.4f}",
                candidate,
                None,
            )
        return Verdict(
            False,
            f"first model: holdout MAE {candidate.mae:.4f} does not beat persistence "
            f"{candidate.persistence_mae:.4f}",
            candidate,
            None,
        )
    if candidate.mae < current.mae:
        return Verdict(
            True,
            f"holdout MAE {candidate.mae:.4f} beats the current model's {current.mae:.4f}",
            candidate,
            current,
        )
    return Verdict(
        False,
        f"holdout MAE {candidate.mae:.4f} does not beat the current model's {current.mae:.4f}",
        candidate,
        current,
    )
