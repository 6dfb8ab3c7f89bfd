"""Domains: a design space with its data, representation, feasibility and oracle."""
from seiko.domains.base import Domain, Oracle
from seiko.domains.molecule import MoleculeDomain
from seiko.domains.protein import ChainPosteriorDenoiser, EhrlichOracle, ProteinDomain

__all__ = ["Domain", "Oracle", "MoleculeDomain", "ProteinDomain", "EhrlichOracle", "ChainPosteriorDenoiser"]
