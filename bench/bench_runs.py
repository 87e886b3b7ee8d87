"""Benchmark: listing 10 000 runs with `mlflow.search_runs` vs the app's catalog.

Creates an experiment with N runs (default 10 000) in a temporary sqlite store,
or uses --tracking-uri, then measures, each in a fresh process and repeated:

- baseline: ``mlflow.search_runs(experiment_ids=[...])``, which shows nothing
  until every run is fetched;
- ours: ``core.runs.catalog`` — time to the first page (what the Runs page
  draws first), time until the background load has every run, and memory.

Run from the repository root:

    python bench/bench_runs.py                      # 10 000 runs, temp store
    python bench/bench_runs.py --store /tmp/runs10k  # keep and reuse the store
    python bench/bench_runs.py --tracking-uri http://127.0.0.1:5000 --seed client

Seeding: on sqlite the runs are written in one transaction with MLflow's own
SQLAlchemy models (`--seed bulk`, seconds), because the public client costs
25-30 ms per run here (create_run + log_batch + set_terminated: 4-5 minutes
for 10 000). `--seed client` uses only MlflowClient with batch logging and works
with any tracking URI. Either way, both contenders read through MLflow's API.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXPERIMENT = "bench-runs"
ESTIMATOR_PARAMS = {
    "logistic_regression": {"C": [0.01, 0.1, 1.0, 10.0], "max_iter": [200, 1000]},
    "random_forest": {"n_estimators": [50, 100, 200, 400], "max_depth": [4, 8, "None"]},
    "gradient_boosting": {"learning_rate": [0.03, 0.1, 0.3], "max_iter": [100, 200]},
}
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
FOREIGN_SHARE = 0.1  # runs "logged by other code", with their own metric names


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(args)))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
        store_dir = Path(args.store or tmp)
        store_dir.mkdir(parents=True, exist_ok=True)
        uri = args.tracking_uri or f"sqlite:///{store_dir / 'mlflow.db'}"
        experiment_id, existing = _experiment(uri, store_dir)
        if existing < args.runs:
            seed = args.seed or ("bulk" if uri.startswith("sqlite") else "client")
            print(f"Seeding {args.runs - existing} runs with --seed {seed} ...")
            started = time.perf_counter()
            seeder = _seed_bulk if seed == "bulk" else _seed_client
            seeder(uri, experiment_id, existing, args.runs - existing, args.workers)
            print(f"  seeded in {time.perf_counter() - started:.1f} s")
        else:
            print(f"Reusing {existing} runs in {uri}")

        results: dict[str, list[dict[str, Any]]] = {"baseline": [], "ours": []}
        for round_ in range(args.repeat):
            for who in ("baseline", "ours"):
                result = _run_child(who, uri, experiment_id, store_dir, args)
                results[who].append(result)
                print(f"  round {round_ + 1} {who}: {_brief(result)}")
        _report(uri, args, results)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tracking-uri", help="default: a temporary sqlite store")
    parser.add_argument("--store", help="keep the sqlite store in this folder")
    parser.add_argument("--seed", choices=("bulk", "client"))
    parser.add_argument("--workers", type=int, default=4, help="client seeding")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument(
        "--measure", choices=("baseline", "ours"), help=argparse.SUPPRESS
    )
    parser.add_argument("--experiment-id", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    return parser


def _experiment(uri: str, store_dir: Path) -> tuple[str, int]:
    """The benchmark experiment's id (created when missing) and its run count."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is None:
        location = (
            (store_dir / "artifacts").as_uri() if uri.startswith("sqlite") else None
        )
        return client.create_experiment(EXPERIMENT, artifact_location=location), 0
    mlflow.set_tracking_uri(uri)
    count = 0
    token = None
    while True:  # count with the API, 50 000 ids at a time
        page = client.search_runs(
            [found.experiment_id], max_results=50_000, page_token=token
        )
        count += len(page)
        token = page.token
        if not token:
            return found.experiment_id, count


def _fake_run(index: int, total: int, rng: random.Random) -> dict[str, Any]:
    """One run's fields: ours mostly, a tenth look like another team's runs."""
    start = int(time.time() * 1000) - (total - index) * 60_000 - rng.randrange(30_000)
    if rng.random() < FOREIGN_SHARE:
        return {
            "name": f"external-{index}",
            "start": start,
            "end": start + rng.randrange(5_000, 600_000),
            "tags": {"team": "forecasting"},
            "params": {
                "lr": str(rng.choice([1e-3, 3e-4])),
                "epochs": str(rng.randint(5, 50)),
            },
            "metrics": {
                "val_loss": rng.uniform(0.1, 1.0),
                "accuracy": rng.uniform(0.6, 0.95),
            },
        }
    estimator = rng.choice(sorted(ESTIMATOR_PARAMS))
    dataset = rng.choice(["breast_cancer", "wine", "iris"])
    params = {k: str(rng.choice(v)) for k, v in ESTIMATOR_PARAMS[estimator].items()}
    params.update(estimator=estimator, dataset=dataset, seed="42", test_size="0.25")
    base = rng.uniform(0.8, 0.97)
    return {
        "name": f"{estimator}-{dataset}",
        "start": start,
        "end": start + rng.randrange(2_000, 60_000),
        "tags": {"studio.estimator": estimator, "studio.dataset": dataset},
        "params": params,
        "metrics": {m: min(1.0, base + rng.uniform(-0.05, 0.03)) for m in METRICS},
    }


def _seed_bulk(
    uri: str, experiment_id: str, first: int, count: int, _workers: int
) -> None:
    """Insert runs in one transaction through MLflow's SQLAlchemy tables."""
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import insert

    store = SqlAlchemyStore(uri, str(Path(tempfile.gettempdir()) / "bench-artifacts"))
    location = store.get_experiment(experiment_id).artifact_location
    rng = random.Random(first)
    runs, tag_rows, param_rows, metric_rows = [], [], [], []
    for index in range(first, first + count):
        fake = _fake_run(index, first + count, rng)
        run_id = uuid.uuid4().hex
        runs.append(
            {
                "run_uuid": run_id,
                "name": fake["name"],
                "source_type": "UNKNOWN",
                "source_name": "",
                "entry_point_name": "",
                "user_id": "bench",
                "status": "FINISHED",
                "start_time": fake["start"],
                "end_time": fake["end"],
                "source_version": "",
                "lifecycle_stage": "active",
                "artifact_uri": f"{location}/{run_id}/artifacts",
                "experiment_id": int(experiment_id),
            }
        )
        all_tags = {
            **fake["tags"],
            "mlflow.runName": fake["name"],
            "mlflow.user": "bench",
        }
        tag_rows += [
            {"run_uuid": run_id, "key": k, "value": v} for k, v in all_tags.items()
        ]
        param_rows += [
            {"run_uuid": run_id, "key": k, "value": v}
            for k, v in fake["params"].items()
        ]
        metric_rows += [
            {
                "run_uuid": run_id,
                "key": k,
                "value": v,
                "timestamp": fake["end"],
                "step": 0,
                "is_nan": False,
            }
            for k, v in fake["metrics"].items()
        ]
    with store.ManagedSessionMaker() as session:
        session.execute(insert(SqlRun.__table__), runs)
        session.execute(insert(SqlTag.__table__), tag_rows)
        session.execute(insert(SqlParam.__table__), param_rows)
        session.execute(insert(SqlMetric.__table__), metric_rows)
        session.execute(insert(SqlLatestMetric.__table__), metric_rows)


def _seed_client(
    uri: str, experiment_id: str, first: int, count: int, workers: int
) -> None:
    """Create runs with MlflowClient: create_run, one log_batch, set_terminated."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=uri)
    rng = random.Random(first)
    fakes = [_fake_run(i, first + count, rng) for i in range(first, first + count)]

    def create(fake: dict[str, Any]) -> None:
        run = client.create_run(
            experiment_id,
            start_time=fake["start"],
            tags=fake["tags"],
            run_name=fake["name"],
        )
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, fake["end"], 0) for k, v in fake["metrics"].items()],
            params=[Param(k, v) for k, v in fake["params"].items()],
        )
        client.set_terminated(run.info.run_id, end_time=fake["end"])

    # sqlite serialises writers; parallel clients only add lock contention there.
    pool_size = 1 if uri.startswith("sqlite") else workers
    with ThreadPoolExecutor(pool_size) as pool:
        for done, _ in enumerate(pool.map(create, fakes), start=1):
            if done % 1000 == 0:
                print(f"  {done} runs", flush=True)


def _run_child(
    who: str, uri: str, experiment_id: str, store_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Measure one contender in a fresh interpreter (no shared caches or memory)."""
    command = [
        sys.executable,
        __file__,
        "--measure",
        who,
        "--tracking-uri",
        uri,
        "--experiment-id",
        experiment_id,
        "--page-size",
        str(args.page_size),
        "--home",
        str(store_dir / "studio-home"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise SystemExit(f"{who} measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    """In the child: warm up the store connection, then time one contender."""
    import mlflow
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=args.tracking_uri).get_experiment(args.experiment_id)
    mlflow.set_tracking_uri(args.tracking_uri)
    with _RssPeak() as memory:
        result = _baseline(args) if args.measure == "baseline" else _ours(args)
    return {**result, "rss_growth_mb": memory.growth_mb}


def _baseline(args: argparse.Namespace) -> dict[str, Any]:
    import mlflow

    started = time.perf_counter()
    frame = mlflow.search_runs(experiment_ids=[args.experiment_id])
    seconds = time.perf_counter() - started
    return {
        "first_s": seconds,
        "full_s": seconds,
        "rows": len(frame),
        "frame_mb": frame.memory_usage(deep=True).sum() / 2**20,
    }


def _ours(args: argparse.Namespace) -> dict[str, Any]:
    from core import runs
    from core.config import load_settings

    settings = load_settings(
        {"STUDIO_HOME": args.home, "MLFLOW_TRACKING_URI": args.tracking_uri}
    )
    started = time.perf_counter()
    catalog = runs.catalog(settings, args.experiment_id, page_size=args.page_size)
    first_rows = len(catalog.frame())
    first_status = catalog.status().describe()
    first = time.perf_counter() - started
    catalog.wait()
    frame = catalog.frame()
    full = time.perf_counter() - started
    if catalog.status().error:
        raise SystemExit(catalog.status().error)
    return {
        "first_s": first,
        "full_s": full,
        "first_rows": first_rows,
        "first_status": first_status,
        "rows": len(frame),
        "frame_mb": frame.memory_usage(deep=True).sum() / 2**20,
    }


class _RssPeak:
    """Sample the resident set every 20 ms; report the peak above the start.

    ru_maxrss would also count peaks from before the measurement (imports,
    opening the store), hiding anything smaller.
    """

    def __init__(self) -> None:
        self.growth_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._start = self._peak = _rss_mb()

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_mb())
        self.growth_mb = self._peak - self._start

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self._peak = max(self._peak, _rss_mb())


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _brief(result: dict[str, Any]) -> str:
    return (
        f"first {result['first_s']:.2f} s, full {result['full_s']:.2f} s, "
        f"{result['rows']} rows, memory +{result['rss_growth_mb']:.0f} MB"
    )


def _report(
    uri: str, args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]
) -> None:
    def median(who: str, key: str) -> float:
        return statistics.median(r[key] for r in results[who])

    rows = [
        ("first render (s)", "first_s"),
        ("all runs loaded (s)", "full_s"),
        ("peak memory growth (MB)", "rss_growth_mb"),
        ("frame memory (MB)", "frame_mb"),
    ]
    print()
    print(f"{args.runs} runs at {uri}, median of {args.repeat} fresh processes")
    print(f"{'':24}{'mlflow.search_runs':>20}{'core.runs.catalog':>20}{'ratio':>10}")
    for label, key in rows:
        base, ours = median("baseline", key), median("ours", key)
        ratio = base / ours if ours else float("inf")
        print(f"{label:24}{base:>20.2f}{ours:>20.2f}{ratio:>9.1f}x")
    print(
        f"rows: baseline {results['baseline'][0]['rows']}, ours "
        f"{results['ours'][0]['rows']} (first page {results['ours'][0]['first_rows']}: "
        f'"{results["ours"][0]["first_status"]}")'
    )


if __name__ == "__main__":
    sys.exit(main())
