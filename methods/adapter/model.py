"""The peft tuner that injects bottleneck adapters, and their closed-form parameter count."""

from __future__ import annotations

from peft import PeftModel
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, check_target_module_exists
from torch import nn

from .config import BottleneckConfig
from .layer import MERGE_ERROR, BottleneckLayer, BottleneckLinear


class BottleneckModel(BaseTuner):
    """Wraps each targeted output ``nn.Linear`` of ``model`` in a ``BottleneckLinear``.

    Example:
        >>> config = BottleneckConfig(r=8, target_modules=bottleneck_targets("houlsby", "attn.proj", "mlp.fc2"))
        >>> peft_model = get_peft_model(vit, config)
    """

    prefix: str = "bottleneck_"
    tuner_layer_cls = BottleneckLayer
    target_module_mapping: dict[str, list[str]] = {}  # no defaults: targets come from the backbone's layout

    def _prepare_adapter_config(self, peft_config: BottleneckConfig, model_config: dict) -> BottleneckConfig:
        if peft_config.target_modules is None:
            raise ValueError(
                "BottleneckConfig needs `target_modules`, e.g. "
                "bottleneck_targets(style, layout.out, layout.mlp_down)."
            )
        return peft_config

    def _create_and_replace(
        self, config, adapter_name, target, target_name, parent, current_key, **optional_kwargs
    ) -> None:
        r = config.width(current_key)  # current_key: the module's full name in the base model, as for LoRA
        if isinstance(target, BottleneckLayer):
            target.update_layer(adapter_name, config, r=r)
            return
        new_module = BottleneckLinear(target, adapter_name, config, r=r)
        if adapter_name not in self.active_adapters:
            # an additional adapter is not trainable until it is activated
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def _check_merge_allowed(self):
        # Reached by merge_adapter and merge_and_unload before any layer is touched.
        raise ValueError(MERGE_ERROR)


def bottleneck_parameter_count(config: BottleneckConfig, model: nn.Module) -> int:
    """Trainable parameters the config adds to ``model``: ``2*d*w + w + d`` per targeted Linear of width d,
    with w the module's width (``config.rank_pattern``, else ``config.r``).

    Computed from the config and the target shapes alone, so it can size a budget before injection;
    ``model`` may be the base model or one that already carries bottleneck layers (also wrapped in a
    PeftModel, whose name prefix is dropped so that anchored patterns match as they did at injection).
    """
    if config.target_modules is None:
        raise ValueError("BottleneckConfig needs `target_modules` to count its parameters.")
    if isinstance(model, PeftModel):
        model = model.base_model
    if isinstance(model, BaseTuner):
        model = model.model
    tuner_names = [n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    total = 0
    for name, module in model.named_modules():
        if any(name.startswith(t + ".") for t in tuner_names):
            continue  # the base layer and adapter weights inside an already injected layer
        if isinstance(module, BaseTunerLayer):
            module = module.get_base_layer()
        if isinstance(module, nn.Linear) and check_target_module_exists(config, name):
            d, w = module.out_features, config.width(name)
            total += 2 * d * w + w + d
    return total
