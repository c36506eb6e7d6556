"""kbayes: Bayesian analysis of crossover pharmaco-imaging trials."""

from importlib.metadata import version

from kbayes.config import TrialConfig
from kbayes.data import TrialData
from kbayes.errors import DataError, SpecError

__version__ = version("kbayes")

__all__ = ["DataError", "SpecError", "TrialConfig", "TrialData", "__version__"]
