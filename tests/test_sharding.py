"""``seiko.sharding.unshard``: after an FSDP fit every rank holds the whole, trained module.

Lightning runs FSDP on GPUs only, but torch's FSDP itself runs on CPU with gloo, so two CPU
processes with FULL_SHARD check the gather: each holds half the weights before, all after.
"""
from __future__ import annotations

import copy
import os
import socket

import torch
import torch.multiprocessing as mp
from torch import nn


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    net.register_buffer("offset", torch.arange(3.0))
    return net


def _step(net: nn.Module, model: nn.Module) -> None:
    """One SGD step on the same batch on every rank (so the averaged gradient is that batch's)."""
    x = torch.linspace(-1, 1, 24).reshape(4, 6)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    (model(x) + net.offset).pow(2).mean().backward()
    opt.step()


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import ShardingStrategy

    from seiko.sharding import unshard

    net = _net()
    expected = copy.deepcopy(net)
    _step(expected, expected)
    wrapped = FSDP(net, sharding_strategy=ShardingStrategy.FULL_SHARD, use_orig_params=True,
                   device_id=torch.device("cpu"))
    _step(net, wrapped)
    sharded = sum(p.numel() for p in net.parameters())
    unshard(wrapped, net)
    torch.save({"sharded": sharded, "state": net.state_dict(), "expected": expected.state_dict(),
                "leaf": all(p.is_leaf and type(p) is nn.Parameter for p in net.parameters()),
                "out": net(torch.ones(2, 6)), "expected_out": expected(torch.ones(2, 6))}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unshard_gives_every_rank_the_whole_trained_module(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    full = sum(p.numel() for p in _net().parameters())
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["sharded"] < full  # FSDP really split the weights across the two ranks
        assert result["leaf"]
        for name, value in result["expected"].items():
            torch.testing.assert_close(result["state"][name], value, msg=name)
        torch.testing.assert_close(result["out"], result["expected_out"])
