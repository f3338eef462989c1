"""Train a small CNN with DistributedDataParallel over CPU processes (gloo),
stoker as the loader, checkpointing mid-epoch and resuming from it.

    torchrun --nproc_per_node 2 examples/python/ddp_train.py --data DIR \
        --epochs 2 --checkpoint /tmp/ckpt.pt --stop-after 5   # stops mid-epoch
    torchrun --nproc_per_node 2 examples/python/ddp_train.py --data DIR \
        --epochs 2 --checkpoint /tmp/ckpt.pt                  # resumes there

The checkpoint holds the model, the optimiser and loader.state_dict(): six
integers, the same on every rank. Resuming replays and skips nothing, also
with another --nproc_per_node (the global position is re-sliced).
"""
import argparse
import json
import os

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import stoker


class SmallNet(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 5, stride=2)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--stop-after", type=int, default=None,
                   help="save a checkpoint after this many steps and exit (simulates a crash)")
    p.add_argument("--seen-log", default=None, help="append each rank's seen indices here (JSON lines)")
    args = p.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)

    # rank and world_size come from torch.distributed.
    loader = stoker.Loader(args.data, batch_size=args.batch_size, shuffle=True, seed=0,
                           transform=stoker.transforms.imagenet_train(args.size, normalize=True),
                           threads=1)
    model = nn.parallel.DistributedDataParallel(SmallNet(len(loader.classes)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    start_epoch, step = 0, 0
    if os.path.exists(args.checkpoint):
        ckpt = torch.load(args.checkpoint, weights_only=False)
        model.module.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        loader.load_state_dict(ckpt["loader"])
        start_epoch, step = ckpt["loader"]["epoch"], ckpt["step"]
        if rank == 0:
            print(f"resumed at epoch {start_epoch}, position {ckpt['loader']['position']}, "
                  f"step {step}, world size {world}")

    for epoch in range(start_epoch, args.epochs):
        loader.set_epoch(epoch)  # keeps a loaded state's position
        for batch in loader:
            loss = F.cross_entropy(model(batch["image"]), batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if args.seen_log:
                with open(args.seen_log, "a") as f:
                    f.write(json.dumps({"rank": rank, "epoch": epoch,
                                        "index": batch["index"].tolist()}) + "\n")
            if args.stop_after is not None and step == args.stop_after:
                if rank == 0:
                    torch.save({"model": model.module.state_dict(), "opt": opt.state_dict(),
                                "loader": loader.state_dict(), "step": step}, args.checkpoint)
                    print(f"checkpoint at step {step}: {loader.state_dict()}")
                dist.barrier()
                dist.destroy_process_group()
                return
        if rank == 0:
            print(f"epoch {epoch}: step {step}, loss {loss.item():.3f}")
    # Every rank is done before any tears the group down: a gloo rank that
    # exits while another is still in a collective can abort it.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
