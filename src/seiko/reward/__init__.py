"""Reward models r_hat(x) with epistemic uncertainty, refitted on all labels every round."""

from seiko.reward.base import Posterior, RewardModel
from seiko.reward.bayes_linear import BayesLinearRewardModel
from seiko.reward.ensemble import EnsembleRewardModel
from seiko.reward.features import PairFeatures
from seiko.reward.gp import GPRewardModel
from seiko.reward.sparse import SparseLinearRewardModel

__all__ = ["Posterior", "RewardModel", "GPRewardModel", "EnsembleRewardModel", "BayesLinearRewardModel",
           "PairFeatures", "SparseLinearRewardModel"]
