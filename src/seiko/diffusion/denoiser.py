"""Denoising networks.

``SequenceDenoiser`` reads hard token ids or soft one-hots (the relaxed states of backprop
fine-tuning) through the same embedding. Position embeddings start at std 0.5: at 0.02 the
model learned nothing in design.md's measurements. A convolution in each block gives every
position its neighbours directly, which is what a Markov-chain feasibility constraint needs.

``causal=True`` makes the output at position j depend on the inputs before j only (the input is
shifted right behind the mask embedding; the convolutions and attention look left). Under a
left-to-right unmasking order the leftmost masked position then sees exactly the clean prefix,
and one pass over a clean design trains every conditional the sampler uses (teacher forcing);
the bidirectional denoiser under the same order gets about one useful prediction a row.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SequenceDenoiser(nn.Module):
    def __init__(self, vocab_size: int, length: int, d_model: int = 128, num_layers: int = 3,
                 num_heads: int = 4, conv_kernel: int = 5, dropout: float = 0.0, pos_init_std: float = 0.5,
                 causal: bool = False):
        super().__init__()
        self.vocab_size, self.length, self.causal, self.conv_kernel = vocab_size, length, causal, conv_kernel
        self.embed = nn.Embedding(vocab_size + 1, d_model)  # last id = mask
        self.pos = nn.Parameter(torch.randn(length, d_model) * pos_init_std)
        self.convs = nn.ModuleList(
            nn.Conv1d(d_model, d_model, conv_kernel, padding=0 if causal else conv_kernel // 2)
            for _ in range(num_layers))
        self.conv_norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(num_layers))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, num_heads, 4 * d_model, dropout, batch_first=True,
                                       norm_first=True, activation="gelu") for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """Logits [B, L, V] of the clean token at every position."""
        h = x @ self.embed.weight if x.is_floating_point() else self.embed(x)
        mask = None
        if self.causal:  # position j reads the tokens before j: shift right behind the mask embedding
            start = self.embed.weight[self.vocab_size].expand(h.shape[0], 1, -1)
            h = torch.cat([start, h[:, :-1]], 1)
            mask = nn.Transformer.generate_square_subsequent_mask(h.shape[1], device=h.device, dtype=h.dtype)
        h = h + self.pos
        for conv, norm, block in zip(self.convs, self.conv_norms, self.blocks):
            c = norm(h).transpose(1, 2)
            if self.causal:
                c = nn.functional.pad(c, (self.conv_kernel - 1, 0))
            h = h + conv(c).transpose(1, 2)
            h = block(h, src_mask=mask, is_causal=self.causal)
        return self.head(self.norm(h))


class MLPDenoiser(nn.Module):
    """Epsilon-prediction MLP for small continuous data (tests, toy domains)."""

    def __init__(self, dim: int, hidden: int = 128, num_steps: int = 1000, time_dim: int = 32):
        super().__init__()
        self.time_dim = time_dim
        self.net = nn.Sequential(nn.Linear(dim + time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        half = self.time_dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=x.device) / half)
        angles = t.float().unsqueeze(-1) * freqs
        emb = torch.cat([angles.sin(), angles.cos()], -1)
        return self.net(torch.cat([x.flatten(1), emb], -1)).view_as(x)
