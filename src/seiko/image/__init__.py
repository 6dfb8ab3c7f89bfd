"""The image domain's parts: Stable Diffusion components, LoRA policy, records, oracles, prompts."""
