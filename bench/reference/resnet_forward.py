#!/usr/bin/env python3
"""The Python side of bench_backbones' BM_WideResNet50_Layer3_256: torchvision's wide_resnet50_2
module structure (Bottleneck: 1x1, 3x3, 1x1 convs without bias, BatchNorm2d, ReLU(inplace=True),
1x1 + BN downsample; conv1 7x7/2, maxpool 3/2) up to layer3, random weights and BN statistics, in
eval mode under torch.no_grad, so the same LibTorch can be timed from Python and from adfw on one
machine without torchvision installed. Prints the median, min and max CPU and wall ms per image.

  OMP_WAIT_POLICY=PASSIVE python3 bench/reference/resnet_forward.py --threads 2 --batch 1 8
  OMP_WAIT_POLICY=PASSIVE ADFW_BENCH_THREADS=2 build/bin/bench_backbones --benchmark_filter=WideResNet
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn


class Bottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample, width_per_group=128):
        super().__init__()
        width = planes * width_per_group // 64
        self.conv1, self.bn1 = nn.Conv2d(inplanes, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                         nn.BatchNorm2d(planes * 4)) if downsample else None)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class WideResNetToLayer3(nn.Module):
    def __init__(self, blocks=(3, 4, 6)):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        inplanes, self.layers = 64, nn.ModuleList()
        for stage, n in enumerate(blocks):
            planes, layer = 64 << stage, []
            for b in range(n):
                layer.append(Bottleneck(inplanes, planes, 2 if (b == 0 and stage > 0) else 1, b == 0))
                inplanes = planes * 4
            self.layers.append(nn.Sequential(*layer))

    def forward(self, x):
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        taps = []
        for layer in self.layers:
            h = layer(h)
            taps.append(h)
        return taps[1], taps[2]  # layer2, layer3


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repetitions", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = WideResNetToLayer3().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.size} px")
    for batch in a.batch:
        x = torch.randn(batch, 3, a.size, a.size)
        with torch.no_grad():
            for _ in range(a.warmup):
                net(x)
            cpu, wall = [], []
            for _ in range(a.repetitions):
                c0, w0 = time.process_time(), time.perf_counter()
                net(x)
                cpu.append((time.process_time() - c0) * 1000 / batch)
                wall.append((time.perf_counter() - w0) * 1000 / batch)
        print(f"batch {batch}: wall median {statistics.median(wall):.1f} ms/image (min {min(wall):.1f}, "
              f"max {max(wall):.1f}); CPU median {statistics.median(cpu):.1f} ms/image")


if __name__ == "__main__":
    main()
