"""The methods whose every member the driver trains: deep ensembles of fine-tunes and the
snapshot ensembles of cyclical fine-tuning (Sadrtdinov et al. 2023).

- ``local-de``: K fine-tunes of one pre-trained checkpoint.
- ``global-de``: K fine-tunes, member i from the i-th pre-trained checkpoint.
- ``sse``: member 1 fine-tuned for E epochs at ``lr``; member i >= 2 continues from member i-1
  for F epochs, the cosine restarting at ``cycle_lr``, with a fresh optimizer.
- ``starsse``: member 1 as in SSE; every member i >= 2 starts from member 1 (weights and BN
  buffers) with a fresh optimizer and runs one cycle of F epochs at ``cycle_lr``.
"""

from __future__ import annotations

from ensembles.methods.registry import EnsembleMethod, MemberPlan, finetune_plan, register_method
from ensembles.training import TrainConfig
from landscape.errors import UserError


@register_method("local-de")
class LocalDE(EnsembleMethod):
    """K independent fine-tunes of one pre-trained checkpoint (the base class's default)."""


@register_method("global-de")
class GlobalDE(EnsembleMethod):
    """K independent fine-tunes, member i from the i-th pre-trained checkpoint."""

    def validate(self, config) -> None:
        if len(config.pretrained) != config.members:
            raise UserError(f"global-de trains one member per pre-trained checkpoint: got "
                            f"{len(config.pretrained)} checkpoints for {config.members} members")

    def member_plan(self, config, index: int) -> MemberPlan:
        return finetune_plan(config, index, source=index - 1)


@register_method("sse")
class SSE(EnsembleMethod):
    """Sequential cycles: member i >= 2 continues from member i - 1."""

    def validate(self, config) -> None:
        super().validate(config)
        if config.cycle_epochs is None or config.cycle_lr is None:
            raise UserError(f"{self.name} needs --cycle-epochs F and --cycle-lr LR")
        TrainConfig(epochs=config.cycle_epochs, lr=config.cycle_lr, wd=config.wd)  # validates

    def phases(self, config) -> list[list[int]]:
        return [[i] for i in range(1, config.members + 1)]  # each cycle needs the one before

    def member_plan(self, config, index: int) -> MemberPlan:
        if index == 1:
            return finetune_plan(config, 1)
        return MemberPlan(index, f"member:{self.cycle_start(index)}", config.cycle_epochs,
                          config.cycle_lr, config.seed + index - 1, False)

    def cycle_start(self, index: int) -> int:
        """The member that member ``index`` >= 2 starts its cycle from."""
        return index - 1


@register_method("starsse")
class StarSSE(SSE):
    """Every cycle from member 1: members 2..K are independent of each other."""

    def phases(self, config) -> list[list[int]]:
        return [[1], list(range(2, config.members + 1))] if config.members > 1 else [[1]]

    def cycle_start(self, index: int) -> int:
        return 1
