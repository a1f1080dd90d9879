"""Models: the networks (texture networks, style networks, ProPO) as plain nn.Modules, their
checkpoints, and the handle a model name or file is resolved into once (`open_model`)."""

from texport.models.checkpoints import load_checkpoint, read_manifest, save_checkpoint
from texport.models.formats import read_graph, read_metadata, read_sidecar
from texport.models.handle import PROPO, STYLENET, TEXNET, Model, open_model, resolve_model, shipped_models
from texport.models.loading import (
                                    LoadedPropo,
                                    LoadedStylenet,
                                    LoadedTexnet,
                                    load_propo,
                                    load_stylenet,
                                    load_texnet,
                                    sample_propo,
                                    sample_texnet,
)
from texport.models.propo import ProPO
from texport.models.stylenet import StyleNetwork
from texport.models.texnet import TextureNetwork
