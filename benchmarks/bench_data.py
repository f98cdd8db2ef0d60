"""Checking speed, cache speed-up and input-pipeline throughput of ``transfer.data``.

Run: ``.venv/bin/python benchmarks/bench_data.py [--files 1000] [--size 64]``

Everything is measured in one run on one generated folder of JPEGs, and printed as ratios:

1. checking (Pillow decodes every file): serial vs a thread pool vs a process pool, in files/s;
2. a first ``load_image_folder`` (nothing cached) vs a second one (check results cached);
3. what caching every image as uint8 shards would cost (design option b) next to checking only
   (option a, chosen: clean JPEG/PNG files are read directly, only odd ones are normalised);
4. one epoch through ``make_dataset`` at 224 px vs ``keras.utils.image_dataset_from_directory``
   at the same size and batch size, in images/s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from transfer.tasks.classification.sources import load_image_folder


def make_folder(root: Path, files: int, size: int, classes: int = 10) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(files):
        folder = root / f"class_{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (rng.random((size, size, 3)) * 80).astype(np.uint8)
        pixels[size // 4: size // 2, size // 4: size // 2] = rng.integers(0, 255, 3)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.0f}/s"


def bench_check(data_lib, entries, workers: int, rounds: int) -> dict[str, list[float]]:
    """Seconds to check every file once, without the cache, by each kind of executor."""
    batches = [entries[i:i + data_lib._BATCH] for i in range(0, len(entries), data_lib._BATCH)]
    threads = concurrent.futures.ThreadPoolExecutor(workers)
    # fork: the cheapest start a process pool can have (TensorFlow is already loaded here, so a
    # real implementation would need spawn, which imports it again in every worker).
    processes = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"))
    list(processes.map(data_lib._check_batch, batches[:workers], [None] * workers))  # start
    runs = {
        "serial": lambda: data_lib._check_batch(entries, None),
        f"threads x{workers}": lambda: list(threads.map(
            lambda b: data_lib._check_batch(b, None), batches)),
        f"processes x{workers} (fork)": lambda: list(processes.map(
            data_lib._check_batch, batches, [None] * len(batches))),
    }
    out: dict[str, list[float]] = {name: [] for name in runs}
    data_lib._check_batch(entries[:50], None)  # warm-up: Pillow plugins
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            out[name].append(time.perf_counter() - start)
    threads.shutdown()
    processes.shutdown()
    return out


def spawn_start_seconds() -> float:
    """Starting one spawned worker that imports transfer.data (what checking would need)."""
    with concurrent.futures.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn")) as pool:
        start = time.perf_counter()
        pool.submit(_import_data).result()
        return time.perf_counter() - start


def _import_data() -> None:
    import transfer.data  # noqa: F401


def bench_shards(data_lib, paths: list[Path], out: Path) -> tuple[float, int]:
    """Option (b): every normalised image into uint8 npz shards; seconds and bytes."""
    out.mkdir()
    start = time.perf_counter()
    for shard, i in enumerate(range(0, len(paths), 256)):
        arrays = {f"a{j}": data_lib.load_normalized(p) for j, p in enumerate(paths[i:i + 256])}
        np.savez(out / f"{shard:05d}.npz", **arrays)
    seconds = time.perf_counter() - start
    return seconds, sum(p.stat().st_size for p in out.iterdir())


def epoch_rate(make, n: int) -> tuple[float, float]:
    """Images per wall-clock second and per CPU second (all threads) of one epoch.

    CPU seconds are the contention-proof figure: on a shared machine the wall clock of the
    same run varies by 2x, its CPU time by little.
    """
    ds = make()
    wall, cpu = time.perf_counter(), time.process_time()
    count = sum(int(x.shape[0]) for x, _ in ds)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert count == n, (count, n)
    return n / wall, n / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="side of the generated JPEGs")
    parser.add_argument("--image-size", type=int, default=224, help="pipeline output size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import keras

    from transfer import data as data_lib

    workers = data_lib.default_workers()
    print(f"{args.files} JPEGs of {args.size}x{args.size} px, {os.cpu_count()} CPU core(s), "
          f"{workers} checking threads")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "data"
        paths = make_folder(root, args.files, args.size)
        entries = sorted(data_lib._stat_entry(str(p)) for p in paths)

        print(f"\n1. checking every file (Pillow decode), files/s, median and best of "
              f"{args.rounds}")
        times = bench_check(data_lib, entries, workers, args.rounds)
        serial = statistics.median(times["serial"])
        for name, runs in times.items():
            median = statistics.median(runs)
            print(f"   {name:<24} {rate(len(entries), median)}  best "
                  f"{rate(len(entries), min(runs))}  ({serial / median:.2f}x serial)")
        print(f"   starting one spawned worker (imports TensorFlow): "
              f"{spawn_start_seconds():.1f} s")

        print("\n2. load_image_folder: first run vs second run (check results cached)")
        start = time.perf_counter()
        first = load_image_folder(root, cache_dir=tmp / "cache")
        t_first = time.perf_counter() - start
        start = time.perf_counter()
        second = load_image_folder(root, cache_dir=tmp / "cache")
        t_second = time.perf_counter() - start
        assert second.report.from_cache == args.files and first.train == second.train
        print(f"   first  {t_first:7.3f} s  {rate(args.files, t_first)}")
        print(f"   second {t_second:7.3f} s  {rate(args.files, t_second)}  "
              f"-> {t_first / t_second:.1f}x faster")

        print("\n3. design: cache every image as uint8 shards (b) vs read clean files as they "
              "are (a)")
        shard_s, shard_bytes = bench_shards(data_lib, [Path(p) for p, _, _ in entries],
                                            tmp / "shards")
        source_bytes = sum(p.stat().st_size for p in paths)
        normalised = sum(1 for s in first.train.sources + first.val.sources
                         if not s.startswith(str(root)))
        print(f"   (a) files normalised into the cache: {normalised} of {args.files}; extra "
              f"time 0 s, extra disk 0 B")
        print(f"   (b) writing shards: {shard_s:.2f} s (= {shard_s / t_first:.1f}x the whole "
              f"first load), {shard_bytes / 2**20:.1f} MiB (= {shard_bytes / source_bytes:.1f}x "
              f"the JPEGs)")

        print(f"\n4. one epoch at {args.image_size} px, batch {args.batch_size}, images/s "
              f"(median of {args.rounds}, interleaved)")
        split = data_lib.Split(first.train.paths + first.val.paths,
                               first.train.labels + first.val.labels,
                               first.train.sources + first.val.sources,
                               first.train.orientations + first.val.orientations)
        size = args.image_size

        def ours():
            return data_lib.make_dataset(split, image_size=size, batch_size=args.batch_size,
                                         cache=False)

        def keras_ds():
            return keras.utils.image_dataset_from_directory(
                root, image_size=(size, size), batch_size=args.batch_size, shuffle=False,
                interpolation="bilinear", verbose=False)

        epoch_rate(ours, args.files)  # warm-up: first graph tracing, file cache
        epoch_rate(keras_ds, args.files)
        runs: dict[str, list[tuple[float, float]]] = {"make_dataset": [],
                                                      "image_dataset_from_directory": []}
        for _ in range(args.rounds):
            runs["make_dataset"].append(epoch_rate(ours, args.files))
            runs["image_dataset_from_directory"].append(epoch_rate(keras_ds, args.files))
        summary = {}
        for name, values in runs.items():
            wall = [w for w, _ in values]
            cpu = [c for _, c in values]
            summary[name] = (statistics.median(wall), max(wall), statistics.median(cpu))
            print(f"   {name:<30} wall: median {summary[name][0]:6.0f}/s, best "
                  f"{summary[name][1]:6.0f}/s;  per CPU second: {summary[name][2]:6.0f}")
        ours_s, keras_s = summary["make_dataset"], summary["image_dataset_from_directory"]
        print(f"   ratio make_dataset / image_dataset_from_directory: wall median "
              f"{ours_s[0] / keras_s[0]:.2f}, wall best {ours_s[1] / keras_s[1]:.2f}, "
              f"images per CPU second {ours_s[2] / keras_s[2]:.2f}")

if __name__ == "__main__":
    main()
