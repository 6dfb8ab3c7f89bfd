"""Stable Diffusion's UNet with LoRA adapters, as a seiko denoiser.

The policy is the UNet with a trainable LoRA adapter ("default", peft, on the attention
projections ``to_q``, ``to_k``, ``to_v``, ``to_out.0``); its KL references are the same UNet
with the adapters switched, never copies of it: ``kl_reference("pretrained")`` runs it with
adapters disabled, ``kl_reference("previous")`` copies the current adapter into a second named
adapter and runs with that one (the public SEIKO code holds five full UNets instead).

A reference switches adapters only for the length of its own call and switches back in a
``finally``, so when gradient checkpointing recomputes a policy forward during backward, the
adapter active then is the policy's own, the one the forward first ran with.

Checkpoints hold the adapter only (``checkpoint_state_dict``): a round of SD is a few MB.
``export_adapter`` writes it in the layout diffusers reads (``pipe.load_lora_weights(dir)``).
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from seiko.diffusion.ddim import Conditioning

TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class PromptedUNet(nn.Module):
    """eps(x_t, t | prompt) with classifier-free guidance, from a diffusers SD folder or hub id."""

    loads_weights = True  # built with its pretrained weights: nothing to pretrain in the run

    def __init__(self, model: str, lora_rank: int = 4, lora_alpha: float | None = None,
                 guidance_scale: float = 7.5, gradient_checkpointing: bool = False, dtype: str = "float32",
                 local_files_only: bool = False, cache_size: int = 2048, seed: int = 0):
        super().__init__()
        from peft import LoraConfig

        from seiko.image.components import load_parts

        if lora_rank < 1:
            raise ValueError(f"domain.denoiser.lora_rank must be >= 1, got {lora_rank}")
        if dtype not in DTYPES:
            raise ValueError(f"domain.denoiser.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        parts = load_parts(model, local_files_only=local_files_only, vae=False)
        self.weights_dtype = DTYPES[dtype]
        self.unet = parts.unet.requires_grad_(False)
        self.text_encoder = parts.text_encoder.requires_grad_(False).eval()
        if self.weights_dtype != torch.float32:  # frozen weights in half precision; the adapter stays fp32
            self.unet.to(self.weights_dtype)
            self.text_encoder.to(self.weights_dtype)
        self.tokenizer = parts.tokenizer
        self.guidance_scale = float(guidance_scale)
        self.lora_config = LoraConfig(r=lora_rank, lora_alpha=lora_alpha or lora_rank, init_lora_weights="gaussian",
                                      target_modules=TARGET_MODULES)
        with torch.random.fork_rng(devices=[]):  # the adapter's random init is the run's, not the global RNG's
            torch.manual_seed(seed)
            self.unet.add_adapter(self.lora_config, adapter_name="default")
        for p in self.lora_parameters():  # trainable weights stay fp32 under mixed precision
            p.data = p.data.float()
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.cache_size = cache_size
        self._embeddings: OrderedDict[str, Tensor] = OrderedDict()

    # -------------------------------------------------------------- prompts
    @torch.no_grad()
    def embed(self, prompts: list[str]) -> Tensor:
        """CLIP text embeddings [B, 77, D] of the prompts (frozen encoder; an LRU cache by text)."""
        device = next(self.unet.parameters()).device
        missing = [p for p in dict.fromkeys(prompts) if p not in self._embeddings]
        if missing:
            ids = self.tokenizer(missing, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids.to(device)
            for prompt, emb in zip(missing, self.text_encoder(ids)[0]):
                self._embeddings[prompt] = emb
        for p in prompts:
            self._embeddings.move_to_end(p)
        out = torch.stack([self._embeddings[p].to(device) for p in prompts])
        while len(self._embeddings) > self.cache_size:
            self._embeddings.popitem(last=False)
        return out

    def _apply(self, fn, *args, **kwargs):
        self._embeddings.clear()  # cached on the old device
        return super()._apply(fn, *args, **kwargs)

    def forward(self, x: Tensor, t: Tensor, context: Conditioning | None = None) -> Tensor:
        prompts = context.prompts if context is not None else [""] * x.shape[0]
        cond = self.embed(prompts)
        with torch.autocast(x.device.type, dtype=self.weights_dtype, enabled=self.weights_dtype != torch.float32):
            if self.guidance_scale == 1.0:
                return self.unet(x, t, encoder_hidden_states=cond).sample.float()
            uncond = self.embed([""]).expand_as(cond)
            out = self.unet(torch.cat([x, x]), torch.cat([t, t]),
                            encoder_hidden_states=torch.cat([uncond, cond])).sample.float()
        eps_uncond, eps_cond = out.chunk(2)
        return eps_uncond + self.guidance_scale * (eps_cond - eps_uncond)

    # -------------------------------------------------------------- adapters
    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.unet.named_parameters() if "lora_" in n and ".default." in n]

    @contextmanager
    def using(self, adapter: str | None):
        """Run with ``adapter`` active (None: no adapter, the pretrained UNet), then switch back."""
        if adapter is None:
            self.unet.disable_adapters()
        else:
            self.unet.set_adapter(adapter)
        try:
            yield
        finally:
            if adapter is None:
                self.unet.enable_adapters()
            self.unet.set_adapter("default")

    def kl_reference(self, name: str) -> "AdapterView":
        """The KL reference ``name``: "pretrained" (adapters off) or a snapshot of the current
        adapter under that name (the previous round's policy)."""
        if name == "pretrained":
            return AdapterView(self, None)
        from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

        state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.unet, adapter_name="default").items()}
        if name not in self.unet.peft_config:
            import warnings

            with warnings.catch_warnings():  # peft warns that a second adapter is a second adapter
                warnings.simplefilter("ignore")
                self.unet.add_adapter(self.lora_config, adapter_name=name)
            self.unet.set_adapter("default")  # add_adapter makes the new one active
        set_peft_model_state_dict(self.unet, state, adapter_name=name)
        for n, p in self.unet.named_parameters():
            if f".{name}." in n:
                p.requires_grad_(False)
        return AdapterView(self, name)

    # -------------------------------------------------------------- checkpoints
    def checkpoint_state_dict(self) -> dict[str, Tensor]:
        from peft.utils import get_peft_model_state_dict

        return {k: v.detach().float().contiguous().cpu().clone()  # a snapshot, never a view of live weights
                for k, v in get_peft_model_state_dict(self.unet, adapter_name="default").items()}

    def load_checkpoint_state_dict(self, state: dict[str, Tensor]) -> None:
        from peft.utils import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.unet, state, adapter_name="default")
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"checkpoint: adapter weights that this UNet has no place for: {unexpected[:3]}")
        for p in self.lora_parameters():
            p.requires_grad_(True)

    def export_adapter(self, directory: str | Path) -> Path:
        """The adapter as diffusers saves LoRA weights: ``pipe.load_lora_weights(directory)`` reads it."""
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers

        directory = Path(directory)
        StableDiffusionPipeline.save_lora_weights(
            save_directory=str(directory), unet_lora_layers=convert_state_dict_to_diffusers(self.checkpoint_state_dict()),
            safe_serialization=True)
        return directory


class AdapterView(nn.Module):
    """The policy's UNet run with another adapter (or none): a KL reference that shares weights.

    The policy is held outside the module tree, so the view adds no parameters, is not copied
    by ``frozen``, and putting it in eval mode does not change the policy's mode.
    """

    shares_weights = True

    def __init__(self, policy: PromptedUNet, adapter: str | None):
        super().__init__()
        self.__dict__["policy"] = policy
        self.adapter = adapter

    def forward(self, *args):
        with torch.no_grad(), self.policy.using(self.adapter):
            return self.policy(*args)
