"""Wall-clock timing shared by the reference step scripts: one untimed warm-up call (first-call
allocations and oneDNN primitive creation are not the steady state), then `repetitions` timed
calls. The adfw side (bench_common.hpp) reports the same median, min and max."""
import argparse
import statistics
import time

import torch


def reference_args(checkout, default_batch):
    """The options every reference step script takes (--reference, --threads, --batch,
    --repetitions); sets torch's thread count from them."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", required=True, help=f"folder of a {checkout} checkout")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=default_batch)
    ap.add_argument("--repetitions", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    return a


def time_calls(call, repetitions):
    """Seconds of each of `repetitions` calls of `call()`, after one untimed warm-up call."""
    call()
    times = []
    for _ in range(repetitions):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def describe(times, items):
    """'median X s (min, max; n steps), R items/s' for the printed summary line."""
    med = statistics.median(times)
    return (f"median {med:.2f} s (min {min(times):.2f}, max {max(times):.2f}; {len(times)} steps), "
            f"{items / med:.3f} images/s")
