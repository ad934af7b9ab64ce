"""ensembles: training and judging ensembles fine-tuned from a pre-trained checkpoint."""

from ensembles.schedules import cosine_lr
from ensembles.train import TrainConfig, TrainResult, finetune, pretrain

__all__ = ["TrainConfig", "TrainResult", "cosine_lr", "finetune", "pretrain"]
