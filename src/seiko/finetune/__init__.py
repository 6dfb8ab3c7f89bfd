"""Fine-tuners of the diffusion policy: backprop through the chain, or PPO."""
from seiko.finetune.backprop import BackpropFinetuner
from seiko.finetune.base import Finetuner, frozen
from seiko.finetune.ppo import PPOFinetuner

__all__ = ["Finetuner", "BackpropFinetuner", "PPOFinetuner", "frozen"]
