"""A warm worker's run time per job on the queue, alone (no browsers): trainings of 3 epochs and
conversions to float32, dynamic and int8, as the job service sees them (JobStatus.run_s).

    python bench/queue_job_times.py            # a private redis-server and one worker command
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import datasets, jobs  # noqa: E402
from core.job_service import PoolSettings, make_service  # noqa: E402
from tests import redis_queue  # noqa: E402
from tests.test_job_service import wait_done  # noqa: E402


def main(rounds: int = 4) -> None:
    dataset = datasets.load("digits").dataset
    ref = datasets.DatasetRef.of(dataset)
    with redis_queue.queue(workers=1) as (server, _):
        service = make_service(PoolSettings(queue_url=server.url))
        runs: dict[str, list[float]] = {"train": [], "fit": [], "convert": []}
        try:
            for seed in range(rounds + 1):
                train = service.submit(jobs.TrainRequest(ref, epochs=3, seed=seed), "bench")
                trained = wait_done(service, train.job_id)
                outcome = service.result(train.job_id)
                convert = service.submit(
                    jobs.ConvertRequest(
                        outcome.model_digest, ("float32", "dynamic", "int8"), ref, model_bytes=outcome.model_bytes
                    ),
                    "bench",
                )
                converted = wait_done(service, convert.job_id)
                if seed:  # the first traces the model's functions in a fresh process
                    runs["train"].append(trained.run_s)
                    runs["fit"].append(outcome.train_s)
                    runs["convert"].append(converted.run_s)
                service.release(train.job_id, "bench")
                service.release(convert.job_id, "bench")
        finally:
            service.shutdown()
    train, fit, convert = (statistics.median(runs[key]) for key in ("train", "fit", "convert"))
    print(
        f"warm worker, {rounds} rounds on the offline digits: training run median {train:.2f} s (its fit {fit:.2f} s, so {train - fit:.2f} s"
    )
    print(f"of loading, scoring and saving); conversion to float32, dynamic and int8: median {convert:.2f} s")


if __name__ == "__main__":
    main()
