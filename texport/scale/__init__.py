"""Scale: large textures in bounded memory (tiling), batches of jobs, and both on a Ray cluster
(texport.scale.cluster, optional: pip install 'texport[ray]')."""

from texport.scale.batch import load_jobs, run_batch
from texport.scale.tiling import tile_image
