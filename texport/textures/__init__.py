"""Textures in and out: images (load, save, crops, PNG rows), sizes (the one size plan), the portable
noise, training sets, and GPU texture files (mip chains, DDS)."""

from texport.textures.datasets import TextureDataset, open_dataset
from texport.textures.dds import encode_dds, output_options, save_dds
from texport.textures.images import (
                                     load_exemplar,
                                     load_image,
                                     resolve_texture,
                                     save_image,
                                     shipped_textures,
                                     side_by_side,
                                     stack_rows,
)
from texport.textures.mips import mip_chain
from texport.textures.noise import noise_field
from texport.textures.sizes import SizePlan, check_size, parse_size, plan_size, tileable_size
