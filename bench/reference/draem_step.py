#!/usr/bin/env python3
"""The Python side of bench_networks' BM_DraemReconstructive_TrainStep and
BM_DraemDiscriminative_TrainStep: the reference's own sub-networks (VitjanZ/DRAEM, model_unet.py,
imported from a local snapshot given with --reference: ReconstructiveSubNetwork(3 -> 3) and
DiscriminativeSubNetwork(6 -> 2), default widths), timed on the same terms as the adfw benchmark:
train mode, random weights and uniform random inputs at 256 x 256, each iteration clears the
gradients and runs forward + backward of the scalar loss mean(output^2) (no optimiser step).
Prints the median, min and max wall seconds per iteration after one untimed warm-up.

  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/reference/draem_step.py \
      --reference /path/to/DRAEM --threads 2 --batch 8 --repetitions 3
  OMP_WAIT_POLICY=PASSIVE ADFW_BENCH_THREADS=2 build/bin/bench_networks --benchmark_filter=Draem
"""
import sys

import torch

from timing import describe, reference_args, time_calls


def time_network(net, x, repetitions):
    net.train()

    def step():
        for p in net.parameters():
            p.grad = None
        loss = net(x).square().mean()
        loss.backward()
        return loss.item()

    return time_calls(step, repetitions)


def main():
    a = reference_args("DRAEM", default_batch=8)
    sys.path.insert(0, a.reference)
    from model_unet import DiscriminativeSubNetwork, ReconstructiveSubNetwork

    torch.manual_seed(0)
    for name, net, channels in (("reconstructive", ReconstructiveSubNetwork(in_channels=3, out_channels=3), 3),
                                ("discriminative", DiscriminativeSubNetwork(in_channels=6, out_channels=2), 6)):
        times = time_network(net, torch.rand(a.batch, channels, 256, 256), a.repetitions)
        print(f"DRAEM reference {name} sub-network, forward + backward, batch {a.batch}, 256 px, {a.threads} threads, "
              f"torch {torch.__version__}: {describe(times, a.batch)}", flush=True)


if __name__ == "__main__":
    main()
