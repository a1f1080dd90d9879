"""Synthesis by optimization: Gatys et al. 2015 (and style transfer, Gatys et al. 2016), and the
refinement of a model's sample by a few of its evaluations."""

from texport.optimization.gatys import GatysResult, synthesize, transfer_style
from texport.optimization.refinement import refine, refinement_target, start_image
