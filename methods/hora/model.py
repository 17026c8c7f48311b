"""HoraModel: the peft tuner that injects HoRA layers and owns the per-block generators."""

from __future__ import annotations

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from torch import nn
from torch.utils.hooks import RemovableHandle

from .config import LORA, HoraConfig
from .layer import HoraGenerator, HoraLayer, Linear


class HoraModel(BaseTuner):
    """
    Creates a HoRA model (cross-head low-rank adaptation with a joint hypernetwork).

    The targets of one attention block (its q/k/v Linears, or its one fused qkv Linear) share a `HoraGenerator`;
    `lora_modules` Linears have none (plain LoRA).
    Separate targets are separate modules, so the generator cannot live on any one of them: the tuner owns it in
    `hora_generators[adapter][block]` (block = the targets' parent module path, dots replaced by "-") and each
    layer keeps a plain, unregistered reference. The state dict therefore holds every generator exactly once
    (safetensors refuses tensors shared under two names) and `PeftModel.from_pretrained` restores it by name.

    Example:

        ```py
        >>> from peft import get_peft_model
        >>> from peftbench.methods.hora import HoraConfig
        >>> config = HoraConfig(r=8, num_attention_heads=6)  # timm ViT-S: targets blocks.*.attn.qkv (Q and V rows)
        >>> model = get_peft_model(vit, config)
        ```
    """

    prefix: str = "hora_"
    tuner_layer_cls = HoraLayer
    target_module_mapping: dict[str, list[str]] = {}  # HoraConfig derives target_modules from its role names
    uses_shared_state: bool = True

    def _pre_injection_hook(self, model: nn.Module, config: HoraConfig, adapter_name: str) -> None:
        # Called once, before the first injection; adapters added later get their entry in _block_generator.
        if "hora_generators" not in self._modules:
            self.hora_generators = nn.ModuleDict()
            self._pass_hooks: dict[str, list[RemovableHandle]] = {}

    def _create_and_replace(self, config, adapter_name, target, target_name, parent, current_key, **kwargs):
        if current_key is None:
            raise ValueError("Current Key shouldn't be `None`")
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        if not isinstance(base, nn.Linear):
            raise TypeError(f"{current_key}: HoRA supports torch.nn.Linear targets only, got {type(base).__name__}")
        head_dim, layout = config.layout(current_key, base.out_features)
        # plain LoRA (lora_modules) has no heads to couple: no generator, and it must not create or join a block's
        generator = None if LORA in layout else self._block_generator(config, adapter_name, current_key, base, head_dim)
        if isinstance(target, HoraLayer):
            target.update_layer(adapter_name, config, layout, head_dim, generator)
            return
        new_module = Linear(target, adapter_name, config, layout, head_dim, generator)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)  # an additional adapter is not trainable until activated
        self._replace_module(parent, target_name, new_module, target)

    def _block_generator(self, config, adapter_name, key, base: nn.Linear, head_dim: int):
        """The generator shared by the targets of `key`'s attention block (created by its first target)."""
        if config.share == "none":
            return None
        if adapter_name not in self.hora_generators:
            self.hora_generators[adapter_name] = nn.ModuleDict()
        generators = self.hora_generators[adapter_name]
        block = key.rpartition(".")[0].replace(".", "-") or "-"
        if block not in generators:
            with torch.device(base.weight.device):
                generator = HoraGenerator(config, base.in_features, head_dim)
            # like the layers' own parameters: the base layer's float dtype, upcast by _cast_adapter_dtype
            generators[block] = generator.to(base.weight.dtype) if base.weight.is_floating_point() else generator
            # the module whose forward calls the block's targets opens and closes the generator's pass
            caller = self.model.get_submodule(key.rpartition(".")[0])
            self._pass_hooks.setdefault(adapter_name, []).extend([
                caller.register_forward_pre_hook(generators[block].open_pass),
                caller.register_forward_hook(generators[block].close_pass, always_call=True),
            ])
        generators[block].check(key, base.in_features, head_dim)
        return generators[block]

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        super()._cast_adapter_dtype(adapter_name, autocast_adapter_dtype)
        # peft upcasts fp16/bf16 adapter weights on tuner layers only; the generators follow the same rule.
        if autocast_adapter_dtype and adapter_name in self.hora_generators:
            for p in self.hora_generators[adapter_name].parameters():
                if p.dtype in (torch.float16, torch.bfloat16):
                    p.data = p.data.float()

    def set_adapter(self, adapter_name, inference_mode: bool = False) -> None:
        super().set_adapter(adapter_name, inference_mode=inference_mode)
        active = [adapter_name] if isinstance(adapter_name, str) else adapter_name
        self._train_generators(active if not inference_mode else [])

    def set_requires_grad(self, adapter_names, requires_grad: bool = True) -> None:
        super().set_requires_grad(adapter_names, requires_grad)
        names = [adapter_names] if isinstance(adapter_names, str) else adapter_names
        for name, generators in self.hora_generators.items():
            if name in names:
                generators.requires_grad_(requires_grad)

    def _enable_adapter_layers(self, enabled: bool = True) -> None:
        # disable_adapter() freezes the layers' parameters, and enabling makes the active ones trainable again
        super()._enable_adapter_layers(enabled)
        self._train_generators(self.active_adapters if enabled else [])

    def delete_adapter(self, adapter_name: str) -> None:
        was_active = adapter_name in self.active_adapters
        super().delete_adapter(adapter_name)
        if adapter_name in self.hora_generators:
            del self.hora_generators[adapter_name]
        self._remove_pass_hooks([adapter_name])
        if was_active:  # peft activated the next adapter, whose layers now train: so do its generators
            self._train_generators(self.active_adapters)

    def _unload_and_optionally_merge(self, *args, **kwargs):
        model = super()._unload_and_optionally_merge(*args, **kwargs)  # may refuse: keep the hooks until done
        self._remove_pass_hooks(list(self._pass_hooks))
        return model

    def _train_generators(self, trainable) -> None:
        """The layers toggle only their own parameters; the generators live here and follow them."""
        for name, generators in self.hora_generators.items():
            generators.requires_grad_(name in trainable)

    def _remove_pass_hooks(self, adapter_names) -> None:
        for name in adapter_names:
            for handle in self._pass_hooks.pop(name, []):
                handle.remove()

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        # Generator keys carry the adapter name in the middle: base_model.hora_generators.<adapter>.<block>.<param>.
        marker = f".hora_generators.{adapter_name}."
        if marker in key:
            return key.replace(marker, ".hora_generators.", 1)
        return super()._remove_adapter_name_from_key(key, adapter_name)
