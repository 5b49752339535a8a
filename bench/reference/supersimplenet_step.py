#!/usr/bin/env python3
"""The Python side of bench_supersimplenet's BM_SuperSimpleNet_TrainStep: one optimisation step of
the reference's own model code (blaz-r/SuperSimpleNet, model/supersimplenet.py and common/loss.py,
imported from a local snapshot given with --reference), in its unsupervised MVTec configuration
(train.py run_unsup: WRN50 layer2 + layer3, 256 x 256, batch 32, feature noise with Perlin masks,
stop-grad, no gradient clipping), with random backbone weights, on the same LibTorch as adfw.

A step is what train.py's loop does for one batch: zero the gradients, bring the mask to the
feature grid (bilinear, then thresholded at 0.5), the model's training forward, the truncated L1
on the map (margin 0.5) plus the focal losses of map and score, backward, AdamW step. The images
are random and the masks empty (normal training images). Prints the median, min and max wall
seconds per step and images per second, after one untimed warm-up step.

  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/reference/supersimplenet_step.py \
      --reference /path/to/SuperSimpleNet --threads 2 --batch 32 --repetitions 3
  OMP_WAIT_POLICY=PASSIVE ADFW_BENCH_THREADS=2 build/bin/bench_supersimplenet

Needs python3-torch and python3-torchvision (Debian packages); no download: the backbone is built
with random weights.
"""
import sys

import torch
import torch.nn.functional as F
import torch.optim.lr_scheduler as schedulers
import torchvision.models

from timing import describe, reference_args, time_calls


def main():
    a = reference_args("SuperSimpleNet", default_batch=32)
    # The reference targets torch 2.x. Torch 1.13 names the scheduler base class _LRScheduler ...
    if not hasattr(schedulers, "LRScheduler"):
        schedulers.LRScheduler = schedulers._LRScheduler
    # ... and squeezes one dim at a time (torch 2.0 takes a tuple, as the reference's heads do).
    if tuple(int(v) for v in torch.__version__.split(".")[:1]) < (2,):
        squeeze = torch.Tensor.squeeze

        def squeeze_dims(t, dim=None):
            if isinstance(dim, (tuple, list)):
                for d in sorted((d % t.dim() for d in dim), reverse=True):
                    t = squeeze(t, d)
                return t
            return squeeze(t) if dim is None else squeeze(t, dim)

        torch.Tensor.squeeze = squeeze_dims
    # Random weights instead of the download of IMAGENET1K_V1 (same network, same cost).
    wrn50 = torchvision.models.wide_resnet50_2
    torchvision.models.wide_resnet50_2 = lambda weights=None, **kw: wrn50(weights=None, **kw)
    sys.path.insert(0, a.reference)
    from model.supersimplenet import SuperSimpleNet
    from common.loss import focal_loss

    config = {"backbone": "wide_resnet50_2", "layers": ["layer2", "layer3"], "patch_size": 3,
              "noise": True, "perlin": True, "no_anomaly": "empty", "bad": True, "overlap": True,
              "noise_std": 0.015, "perlin_thr": 0.2, "image_size": (256, 256), "batch": a.batch,
              "epochs": 300, "flips": False, "seg_lr": 0.0002, "dec_lr": 0.0002, "adapt_lr": 0.0001,
              "gamma": 0.4, "stop_grad": True, "clip_grad": False}
    torch.manual_seed(0)
    model = SuperSimpleNet(image_size=(256, 256), config=config)
    optimizer, _ = model.get_optimizers()
    model.train()
    images = torch.randn(a.batch, 3, 256, 256)
    masks = torch.zeros(a.batch, 256, 256)
    labels = torch.zeros(a.batch)

    def step():
        optimizer.zero_grad()
        m = F.interpolate(masks.unsqueeze(1), size=(model.fh, model.fw), mode="bilinear", align_corners=False)
        m = (m >= 0.5).float()
        amap, score, m, lab = model(images, m, labels)
        normal, anomalous = amap[m == 0], amap[m > 0]
        loss = focal_loss(torch.sigmoid(amap), m) + focal_loss(torch.sigmoid(score), lab)
        if normal.numel():
            loss = loss + torch.clamp(normal + 0.5, min=0).mean()
        if anomalous.numel():
            loss = loss + torch.clamp(-anomalous + 0.5, min=0).mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    times = time_calls(step, a.repetitions)
    print(f"SuperSimpleNet reference step, batch {a.batch}, 256 px, {a.threads} threads, torch {torch.__version__}: "
          f"{describe(times, a.batch)}")

if __name__ == "__main__":
    main()
