"""Validation of the three trial tables (pandera schemas + cross-table rules)."""

from __future__ import annotations

import pandas as pd

from kbayes.config import TrialConfig


def validate_tables(
    participants: pd.DataFrame,
    sessions: pd.DataFrame,
    mrs: pd.DataFrame,
    *,
    config: TrialConfig,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Validate and normalise the tables; return them and the exclusions table."""
    raise NotImplementedError  # being written (issue 2)
