"""Diffusion core: noise families, step distributions, samplers and denoisers."""
from seiko.diffusion.base import NoiseFamily
from seiko.diffusion.denoiser import MLPDenoiser, SequenceDenoiser
from seiko.diffusion.gaussian import GaussianDiffusion
from seiko.diffusion.masked import MaskedDiffusion
from seiko.diffusion.sampler import Rollout, Trajectory, relaxed_rollout, sample, trajectory_log_probs
from seiko.diffusion.steps import CategoricalStep, GaussianStep
from seiko.diffusion.support import SupportConstrained

__all__ = ["NoiseFamily", "MaskedDiffusion", "GaussianDiffusion", "CategoricalStep", "GaussianStep",
           "SequenceDenoiser", "MLPDenoiser", "sample", "trajectory_log_probs", "relaxed_rollout",
           "Trajectory", "Rollout", "SupportConstrained"]
