"""impute-cli: fill gaps in gridded scientific data with a diffusion model trained on the
incomplete data itself (Zhou et al., "Incomplete Data, Complete Dynamics")."""

__version__ = "0.1.0"
