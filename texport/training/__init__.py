"""Training: texture networks, style networks and ProPO, on one process or several (distributed),
with the checks, checkpoints and resume every run shares (runs)."""

from texport.training.propo import train_propo
from texport.training.runs import LossLog, TrainReport, state_path
from texport.training.style import train_style
from texport.training.texnet import train_texnet
