"""kbayes: Bayesian analysis of crossover pharmaco-imaging trials."""

from importlib.metadata import version

import pytensor

from kbayes import plots, published
from kbayes.calibration import Calibration, calibrate
from kbayes.comparison import compare
from kbayes.config import TrialConfig
from kbayes.data import TrialData
from kbayes.design import Design, SimulatedTruth, Truth
from kbayes.design_priors import PosteriorTruth, PredictiveTruth, PriorTruth
from kbayes.diagnostics import Problem, Verdict, check
from kbayes.errors import ConfigError, DataError, SpecError
from kbayes.interim import Sequential, sequential
from kbayes.meta import MetaAnalysis, meta_analysis
from kbayes.next_trial import Plan, plan
from kbayes.planning import plot_power, power, read_replicates
from kbayes.published.convert import (
    Likelihood,
    from_ci,
    from_estimate,
    from_f,
    from_mean_difference,
    from_p,
    from_result,
    from_t,
)
from kbayes.published_trial import PublishedDesign, PublishedTruth, from_published
from kbayes.readers import parse_fsl_mrs, parse_lcmodel, read_fsl_mrs, read_lcmodel, read_osprey
from kbayes.reanalysis import NormalPrior, plot_reanalysis, prior_set, reanalyse
from kbayes.reporting import report
from kbayes.results import load, save
from kbayes.rules import GoNoGo, Rule
from kbayes.sampling import fit
from kbayes.simulation import load_example, simulate
from kbayes.sizing import SampleSize, sample_size
from kbayes.spec import ModelSpec, builtin_specs, load_spec
from kbayes.summaries import answers, covariate_effects, estimands
from kbayes.thresholds import Threshold, calibrate_threshold, plot_threshold

__version__ = version("kbayes")

# Same seed, same draws, with cold or warm compile caches. PyTensor compiles to numba (its
# default linker) with fast-math flags: LLVM may then reassociate sums and fuse
# multiply-adds, and it does so differently when a graph is compiled fresh (inlined into one
# module) than when its parts are loaded from the on-disk cache. The log density then
# differed in its last bits between a cold and a warm cache, NUTS trajectories drifted
# apart, and the draws differed. IEEE semantics make every compiled function give the same
# bits however it was compiled (measured: NUTS on `joint` 0-15 % slower). Set on import,
# so it also holds on Dask workers, which import kbayes to run a replicate.
pytensor.config.numba__fastmath = False

__all__ = [
    "Calibration",
    "ConfigError",
    "DataError",
    "Design",
    "GoNoGo",
    "Likelihood",
    "MetaAnalysis",
    "ModelSpec",
    "NormalPrior",
    "Plan",
    "PosteriorTruth",
    "PredictiveTruth",
    "PriorTruth",
    "Problem",
    "PublishedDesign",
    "PublishedTruth",
    "Rule",
    "SampleSize",
    "Sequential",
    "SimulatedTruth",
    "SpecError",
    "Threshold",
    "TrialConfig",
    "TrialData",
    "Truth",
    "Verdict",
    "__version__",
    "answers",
    "builtin_specs",
    "calibrate",
    "calibrate_threshold",
    "check",
    "compare",
    "covariate_effects",
    "estimands",
    "fit",
    "from_ci",
    "from_estimate",
    "from_f",
    "from_mean_difference",
    "from_p",
    "from_published",
    "from_result",
    "from_t",
    "load",
    "load_example",
    "load_spec",
    "meta_analysis",
    "parse_fsl_mrs",
    "parse_lcmodel",
    "plan",
    "plot_power",
    "plot_reanalysis",
    "plot_threshold",
    "plots",
    "power",
    "prior_set",
    "published",
    "read_fsl_mrs",
    "read_lcmodel",
    "read_osprey",
    "read_replicates",
    "reanalyse",
    "report",
    "sample_size",
    "save",
    "sequential",
    "simulate",
]
