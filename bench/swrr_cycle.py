#!/usr/bin/env python3
"""How soon smooth weighted round robin is back on its cycle after a change.

The shared weighted list's lock-free picks (src/core/weighted.c, "one
period") need the state on its cycle: from there the picks repeat every
L = total / gcd(weights) picks. A change (a member leaves or comes back,
its current weight carried as the core carries it) can leave the state off
it. This runs nginx's algorithm on random weights and changes and prints
how many picks after each change the state needs before it repeats, in
periods. Deterministic (seed 1): python3 bench/swrr_cycle.py
"""
import math
import random


def pick(cur, ew, elig, total):
    best = None
    for i in range(len(cur)):
        if not elig[i]:
            continue
        cur[i] += ew[i]
        if best is None or cur[i] > cur[best]:
            best = i
    cur[best] -= total


def period(ew, elig):
    g = 0
    for e, x in zip(ew, elig):
        if x:
            g = math.gcd(g, e)
    return sum(e for e, x in zip(ew, elig) if x) // g


def on_cycle(cur, ew, elig):
    c, total = list(cur), sum(e for e, x in zip(ew, elig) if x)
    for _ in range(period(ew, elig)):
        pick(c, ew, elig, total)
    return c == cur


def main():
    random.seed(1)
    waits = []
    for _ in range(300):
        n = random.randint(2, 8)
        ew = [random.choice([1, 2, 3, 5, 10, 20, 100]) * 10 for _ in range(n)]
        elig, cur = [True] * n, [0] * n
        for _ in range(10):
            total = sum(e for e, x in zip(ew, elig) if x)
            for _ in range(random.randint(0, 50)):
                pick(cur, ew, elig, total)
            j = random.randrange(n)
            elig[j] = not elig[j]
            if not any(elig):
                elig[j] = True
            total, p = sum(e for e, x in zip(ew, elig) if x), period(ew, elig)
            c, m = list(cur), 0
            while not on_cycle(c, ew, elig) and m <= 20 * p + 100:
                pick(c, ew, elig, total)
                m += 1
            waits.append(m / p)
    waits.sort()
    k = len(waits)
    print("changes %d: on the cycle at once %.1f%%, within 0.2 periods %.1f%%, "
          "median %.2f, 90th percentile %.2f, most %.2f periods"
          % (k, 100.0 * sum(1 for w in waits if w == 0) / k,
             100.0 * sum(1 for w in waits if w <= 0.2) / k,
             waits[k // 2], waits[int(k * 0.9)], waits[-1]))


if __name__ == "__main__":
    main()
