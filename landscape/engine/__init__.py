"""The batched grid evaluator and what it is made of (docs/architecture.md, "The engine").

``GridEvaluator`` (``evaluator``) is the front: give it a model, its ``ParamLayout`` and
``EvalData``, then ``evaluate`` groups of (K, P) weight vectors. Inside: the pure maths
(``sums``), the inputs (``inputs``), the settings the tuner and the back-off choose
(``settings``), the loop and vmap strategies (``loop``, ``vmap``) with the loop strategy's BN
pass (``bn_pass``), the out-of-memory back-off (``backoff``) and the tuner (``tuner``).
"""

from landscape.engine.evaluator import GridEvaluator
from landscape.engine.inputs import EvalData
from landscape.engine.layout import ParamLayout
from landscape.engine.settings import STRATEGIES, EngineSettings, Tuning
from landscape.engine.sums import GroupResult

__all__ = ["STRATEGIES", "EngineSettings", "EvalData", "GridEvaluator", "GroupResult", "ParamLayout", "Tuning"]
