"""Wall-clock timing shared by the reference step scripts: one untimed warm-up call (first-call
allocations and oneDNN primitive creation are not the steady state), then `repetitions` timed
calls. The adfw side (bench_common.hpp) reports the same median, min and max."""
import statistics
import time


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
