#!/usr/bin/env python3
"""Generates the benchmark data set in DIR: many small files, large random files and
compressible logs, about SIZE_MB in total (default 2048). Deterministic for a given seed."""
import os
import random
import sys


def main() -> None:
    root = sys.argv[1]
    size_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
    rng = random.Random(42)
    small_mb, large_mb = size_mb * 20 // 100, size_mb * 50 // 100
    logs_mb = size_mb - small_mb - large_mb
    # Many small files: 4-16 KiB each, in 100 directories.
    written, i = 0, 0
    while written < small_mb << 20:
        d = os.path.join(root, "small", f"d{i % 100:03d}")
        os.makedirs(d, exist_ok=True)
        n = rng.randint(4096, 16384)
        with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
            f.write(rng.randbytes(n))
        written += n
        i += 1
    # Large random (incompressible) files of 128 MiB.
    os.makedirs(os.path.join(root, "large"), exist_ok=True)
    for j in range(max(1, large_mb // 128)):
        with open(os.path.join(root, "large", f"blob{j}.bin"), "wb") as f:
            for _ in range(128):
                f.write(rng.randbytes(1 << 20))
    # Compressible logs.
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    levels = ["INFO", "WARN", "DEBUG", "ERROR"]
    per_file = 64 << 20
    for k in range(max(1, logs_mb // 64)):
        with open(os.path.join(root, "logs", f"agent-{k}.log"), "w") as f:
            size, n = 0, 0
            while size < per_file:
                line = (f"2026-11-23T10:{n % 60:02d}:{n % 59:02d}.{n % 1000:03d}Z {levels[n % 4]} "
                        f"collector seq={n} metric=cpu.load value={rng.random():.4f} host=agent-{n % 17}\n")
                f.write(line)
                size += len(line)
                n += 1


def change_one_percent(root: str, seed: int) -> None:
    """Rewrites about 1% of the data: some small files (other ones for another seed)."""
    rng = random.Random(seed)
    total = 0
    files = []
    for base, _, names in os.walk(root):
        for n in names:
            p = os.path.join(base, n)
            files.append(p)
            total += os.path.getsize(p)
    budget = total // 100
    small = [p for p in files if "/small/" in p]
    rng.shuffle(small)
    for p in small:
        if budget <= 0:
            break
        size = os.path.getsize(p)
        with open(p, "wb") as f:
            f.write(rng.randbytes(size))
        budget -= size


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--change":
        change_one_percent(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    else:
        main()
