"""Runs of an MLflow experiment as pandas tables, loaded page by page and cached.

`mlflow.search_runs` fetches every run before it returns: about 12 s for 10 000
runs on sqlite. A `RunCatalog` returns after the first page (1 000 runs, about
half a second) and loads the rest in a background thread, so the app can draw at
once and redraw as pages arrive. Catalogs are kept per tracking URI, experiment
and filter, shared by every session of the app, until `refresh` drops them.

Any run of the experiment is welcome, whoever logged it: columns are the union of
the metrics, params and tags the runs happen to have.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException

from core import tags
from core.config import Settings
from core.errors import RegistryError, SearchError, StudioError
from core.registry import LOCK_PREFIX
from core.tracking import client_for, unreachable

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
MAX_CATALOGS = 8
METRIC_PREFIX = "metrics."
PARAM_PREFIX = "params."
TAG_PREFIX = "tags."
BASE_COLUMNS = (
    "run_id",
    "run_name",
    "status",
    "start_time",
    "duration_s",
    "user",
    "model_version",
)
# Tags worth a column of their own; every other tag stays in MLflow.
TAGS_OF_INTEREST = (
    tags.RUN_ESTIMATOR,
    tags.RUN_DATASET,
    tags.RUN_TARGET,
    tags.RUN_ACTOR,
    "mlflow.source.name",
)
_NEWEST_FIRST = ["attributes.start_time DESC"]
_OLDEST_FIRST = ["attributes.start_time ASC"]
_NOT_SET = "(not set)"
MAX_LEVELS = 20  # distinct values a parallel-coordinates axis shows as ticks


@dataclass(frozen=True)
class Experiment:
    """An MLflow experiment a user can browse."""

    experiment_id: str
    name: str


@dataclass(frozen=True)
class RunQuery:
    """What a catalog holds; also its cache key."""

    tracking_uri: str
    experiment_id: str
    filter_string: str = ""
    page_size: int = PAGE_SIZE


@dataclass(frozen=True)
class LoadStatus:
    """How much of a catalog is loaded, for the page to say so.

    Attributes:
        loaded: runs in memory.
        estimated_total: all runs the query matches; exact once `complete`,
            before that extrapolated from the start times seen so far (None
            when there is nothing to extrapolate from yet).
        complete: every page is loaded.
        error: why loading stopped early, if it did.
        seconds: time spent fetching so far.
        loaded_at: when the last page arrived.
    """

    loaded: int
    estimated_total: int | None
    complete: bool
    error: str | None = None
    seconds: float = 0.0
    loaded_at: datetime | None = None

    @property
    def fraction(self) -> float:
        """Share of the runs loaded, 0 to 1 (1 only when complete)."""
        if self.complete:
            return 1.0
        if not self.estimated_total:
            return 0.0
        return min(self.loaded / self.estimated_total, 0.99)

    def describe(self) -> str:
        """One line such as "1 000 of ~10 000 runs loaded"."""
        if self.complete:
            if self.loaded == 1:
                return "The only run loaded"
            return f"All {_count(self.loaded)} runs loaded"
        if self.estimated_total:
            text = (
                f"{_count(self.loaded)} of ~{_count(self.estimated_total)} runs loaded"
            )
        else:
            text = f"{_count(self.loaded)}+ runs loaded"
        return f"{text}; loading stopped: {self.error}" if self.error else text


@dataclass(frozen=True)
class Comparison:
    """Two or more runs side by side.

    Attributes:
        labels: run id -> the column label used below ("name · 1a2b3c4").
        metrics: one row per metric, one column per run.
        params: one row per param, one column per run; unset values read
            "(not set)".
        differing: the params whose values are not the same for every run.
    """

    labels: Mapping[str, str]
    metrics: pd.DataFrame
    params: pd.DataFrame
    differing: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ParallelData:
    """Rows for a parallel-coordinates chart: every column numeric.

    Attributes:
        frame: one row per run; params that are not numbers are coded 0..n-1.
        categories: column -> the labels of its codes, for the axis ticks.
    """

    frame: pd.DataFrame
    categories: Mapping[str, list[str]]


class RunCatalog:
    """The runs one query matches, loaded a page at a time and kept in memory.

    Pages are appended in MLflow's order (newest start time first). Use
    `catalog()` to get a shared, cached instance; build one directly only for
    a private load (the benchmark does).
    """

    def __init__(
        self, client: MlflowClient, query: RunQuery, store_name: str = ""
    ) -> None:
        self.query = query
        self._client = client
        self._store_name = store_name or query.tracking_uri
        self._fetch_lock = threading.Lock()  # one page request at a time
        self._lock = threading.Lock()  # guards the fields below
        self._pages: list[pd.DataFrame] = []
        self._frame: pd.DataFrame | None = None
        self._seen: set[str] = set()
        self._token: str | None = None
        self._complete = False
        self._error: str | None = None
        self._seconds = 0.0
        self._loaded_at: datetime | None = None
        self._versions: dict[str, str] | None = None
        self._oldest_start: int | None = None
        self._newest_start: int | None = None
        self._loader: threading.Thread | None = None
        self._stop = threading.Event()

    def load_next_page(self) -> int:
        """Fetch one more page; return how many new runs it added.

        Raises:
            SearchError: the filter is not valid MLflow search syntax.
            RegistryError: the tracking store failed or cannot be reached.
        """
        with self._fetch_lock:
            if self._complete:
                return 0
            started = time.monotonic()
            first = not self._pages
            try:
                if self._versions is None:
                    self._versions = _versions_by_run(self._client)
                page = self._client.search_runs(
                    [self.query.experiment_id],
                    self.query.filter_string,
                    max_results=self.query.page_size,
                    order_by=_NEWEST_FIRST,
                    page_token=self._token,
                )
                if first and page.token:
                    self._oldest_start = self._find_oldest_start()
            except MlflowException as exc:
                raise self._error_for(exc) from exc
            fresh = [run for run in page if run.info.run_id not in self._seen]
            rows = to_frame(fresh, self._versions)
            with self._lock:
                if first and fresh:
                    self._newest_start = fresh[0].info.start_time
                self._pages.append(rows)
                self._seen.update(run.info.run_id for run in fresh)
                self._frame = None
                self._token = page.token or None
                self._complete = not page.token
                self._seconds += time.monotonic() - started
                self._loaded_at = datetime.now(UTC)
        logger.debug(
            "Loaded %d runs of experiment %s in %.2f s (%s)",
            len(rows),
            self.query.experiment_id,
            time.monotonic() - started,
            "complete" if self._complete else "more to come",
        )
        return len(rows)

    def load_all(self) -> None:
        """Fetch every remaining page in this thread.

        Raises:
            SearchError, RegistryError: as `load_next_page`.
        """
        while not self._complete and not self._stop.is_set():
            self.load_next_page()

    def start_background(self) -> None:
        """Load the remaining pages in a daemon thread (no-op when complete)."""
        with self._lock:
            if self._complete or self._error or self._loader is not None:
                return
            self._loader = threading.Thread(
                target=self._load_rest,
                name=f"runs-{self.query.experiment_id}",
                daemon=True,
            )
        self._loader.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background load ends; True when every page is in."""
        loader = self._loader
        if loader is not None:
            loader.join(timeout)
        return self._complete

    def stop(self) -> None:
        """Ask the background load to stop after the page in flight."""
        self._stop.set()

    def frame(self) -> pd.DataFrame:
        """The loaded runs as one table (shared: treat it as read-only)."""
        with self._lock:
            if self._frame is None:
                self._frame = _ordered(
                    pd.concat(self._pages, ignore_index=True)
                    if self._pages
                    else to_frame([])
                )
            return self._frame

    def status(self) -> LoadStatus:
        """What is loaded now, with an estimate of the total."""
        with self._lock:
            loaded = len(self._seen)
            return LoadStatus(
                loaded=loaded,
                estimated_total=loaded if self._complete else self._estimate(loaded),
                complete=self._complete,
                error=self._error,
                seconds=self._seconds,
                loaded_at=self._loaded_at,
            )

    def _load_rest(self) -> None:
        try:
            self.load_all()
        except StudioError as exc:
            logger.warning("Stopped loading runs: %s", exc)
            with self._lock:
                self._error = str(exc)
        except Exception as exc:  # a thread must not die silently
            logger.exception("Loading runs failed")
            with self._lock:
                self._error = f"unexpected {type(exc).__name__}: {exc}"

    def _find_oldest_start(self) -> int | None:
        oldest = self._client.search_runs(
            [self.query.experiment_id],
            self.query.filter_string,
            max_results=1,
            order_by=_OLDEST_FIRST,
        )
        return oldest[0].info.start_time if oldest else None

    def _estimate(self, loaded: int) -> int | None:
        """Extrapolate the total from the share of the time span loaded so far.

        MLflow has no count call, and its page tokens are opaque; the start
        times of the newest and oldest runs are two cheap facts. Runs logged in
        bursts make this rough, so the page shows it with a tilde.
        """
        if not self._pages or self._newest_start is None:
            return None
        oldest_loaded = self._pages[-1]["start_time"].min()
        if self._oldest_start is None or pd.isna(oldest_loaded):
            return None
        oldest_loaded_ms = int(pd.Timestamp(oldest_loaded).value // 1_000_000)
        loaded_span = self._newest_start - oldest_loaded_ms
        if loaded_span <= 0:
            return None
        # n evenly spread runs span n - 1 gaps.
        gaps = (loaded - 1) * (self._newest_start - self._oldest_start) / loaded_span
        total = 1 + gaps
        return max(_round_estimate(total), loaded + 1)

    def _error_for(self, exc: MlflowException) -> StudioError:
        if exc.error_code == "INVALID_PARAMETER_VALUE" and self.query.filter_string:
            first_line = str(exc).splitlines()[0][:200]
            return SearchError(
                f"the filter {self.query.filter_string!r} is not valid MLflow "
                f"search syntax ({first_line}); write it like "
                "metrics.accuracy > 0.9 and params.estimator = 'random_forest'."
            )
        first_line = str(exc).splitlines()[0][:300] if str(exc) else repr(exc)
        return RegistryError(
            f"MLflow at {self._store_name} failed: {first_line}. "
            "Check MLFLOW_TRACKING_URI and that the tracking server is running."
        )


_catalogs: OrderedDict[RunQuery, RunCatalog] = OrderedDict()
_catalogs_lock = threading.Lock()


def catalog(
    settings: Settings,
    experiment_id: str,
    filter_string: str = "",
    page_size: int = PAGE_SIZE,
    background: bool = True,
) -> RunCatalog:
    """The shared catalog of an experiment's runs, with at least its first page.

    Args:
        settings: names the tracking store.
        experiment_id: the experiment to list.
        filter_string: an MLflow search filter, e.g. ``metrics.accuracy > 0.9``.
        page_size: runs per request.
        background: start loading the remaining pages in a thread.

    Raises:
        SearchError: the filter is not valid, or the search failed.
    """
    query = RunQuery(
        settings.tracking_uri, str(experiment_id), filter_string.strip(), page_size
    )
    with _catalogs_lock:
        found = _catalogs.get(query)
        if found is not None:
            _catalogs.move_to_end(query)
    if found is None:
        fresh = RunCatalog(
            client_for(settings), query, settings.redacted_tracking_uri()
        )
        fresh.load_next_page()  # raises before anything is cached
        with _catalogs_lock:
            found = _catalogs.setdefault(query, fresh)
            while len(_catalogs) > MAX_CATALOGS:
                _, evicted = _catalogs.popitem(last=False)
                evicted.stop()
    if background:
        found.start_background()
    return found


def refresh(settings: Settings, experiment_id: str | None = None) -> int:
    """Forget cached catalogs of the settings' store; return how many.

    Args:
        settings: names the tracking store.
        experiment_id: only this experiment's catalogs (default: all).
    """
    with _catalogs_lock:
        stale = [
            query
            for query in _catalogs
            if query.tracking_uri == settings.tracking_uri
            and (experiment_id is None or query.experiment_id == str(experiment_id))
        ]
        for query in stale:
            _catalogs.pop(query).stop()
    return len(stale)


def refresh_training_runs(settings: Settings) -> int:
    """Forget the catalogs of the studio's training experiment (after training).

    Other experiments keep theirs: a new version does not change them, and
    reloading 10 000 runs of an unrelated experiment is not free.
    """
    try:
        found = client_for(settings).get_experiment_by_name(settings.experiment_name)
    except MlflowException as exc:
        raise unreachable(settings, exc) from exc
    return refresh(settings, found.experiment_id) if found is not None else 0


def list_experiments(settings: Settings) -> list[Experiment]:
    """Active experiments of the store, by name.

    Raises:
        RegistryError: the tracking store cannot be reached.
    """
    client = client_for(settings)
    found: list[Experiment] = []
    token: str | None = None
    try:
        while True:
            page = client.search_experiments(
                view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
            )
            found.extend(Experiment(str(e.experiment_id), e.name) for e in page)
            token = page.token
            if not token:
                break
    except MlflowException as exc:
        raise unreachable(settings, exc) from exc
    return sorted(found, key=lambda e: e.name.lower())


def default_experiment(
    settings: Settings, experiments: Sequence[Experiment]
) -> Experiment | None:
    """The studio's training experiment when it exists, else the first one."""
    for experiment in experiments:
        if experiment.name == settings.experiment_name:
            return experiment
    return experiments[0] if experiments else None


def to_frame(
    runs: Iterable[Run], versions: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per run: identity, status, timing, tags of interest, metrics, params.

    Args:
        runs: MLflow runs, from any logger.
        versions: run id -> the model versions registered from it.
    """
    versions = versions or {}
    records: list[dict[str, Any]] = []
    for run in runs:
        info, data = run.info, run.data
        record: dict[str, Any] = {
            "run_id": info.run_id,
            "run_name": info.run_name or "",
            "status": info.status,
            "start_time": info.start_time,
            "duration_s": (
                (info.end_time - info.start_time) / 1000
                if info.end_time and info.start_time
                else np.nan
            ),
            "user": info.user_id or "",
            "model_version": versions.get(info.run_id, ""),
        }
        for key in TAGS_OF_INTEREST:
            if key in data.tags:
                record[TAG_PREFIX + key] = data.tags[key]
        record.update({METRIC_PREFIX + k: v for k, v in data.metrics.items()})
        record.update({PARAM_PREFIX + k: v for k, v in data.params.items()})
        records.append(record)

    frame = pd.DataFrame.from_records(
        records, columns=None if records else BASE_COLUMNS
    )
    frame["start_time"] = pd.to_datetime(frame["start_time"], unit="ms", utc=True)
    frame["duration_s"] = pd.to_numeric(frame["duration_s"])
    return _ordered(frame)


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's metric columns (``metrics.<name>``), sorted."""
    return sorted(c for c in frame.columns if c.startswith(METRIC_PREFIX))


def param_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's param columns (``params.<name>``), sorted."""
    return sorted(c for c in frame.columns if c.startswith(PARAM_PREFIX))


def short_name(column: str) -> str:
    """``metrics.accuracy`` -> ``accuracy``, for axis titles and labels."""
    for prefix in (METRIC_PREFIX, PARAM_PREFIX, TAG_PREFIX):
        if column.startswith(prefix):
            return column[len(prefix) :]
    return column


def filter_frame(
    frame: pd.DataFrame, text: str = "", statuses: Sequence[str] = ()
) -> pd.DataFrame:
    """Rows whose id, name, user, version or tags contain `text`, in `statuses`.

    Matching ignores case; empty arguments keep every row.
    """
    keep = pd.Series(True, index=frame.index)
    if statuses:
        keep &= frame["status"].isin(list(statuses))
    needle = text.strip().lower()
    if needle:
        searched = ["run_id", "run_name", "user", "model_version"] + [
            c for c in frame.columns if c.startswith(TAG_PREFIX)
        ]
        hit = pd.Series(False, index=frame.index)
        for column in searched:
            values = frame[column].astype("string").str.lower()
            hit |= values.str.contains(needle, regex=False).fillna(False).astype(bool)
        keep &= hit
    return frame.loc[keep]


def compare(frame: pd.DataFrame, run_ids: Sequence[str]) -> Comparison:
    """Metrics and params of two or more runs side by side, with the params that differ.

    Raises:
        SearchError: fewer than two runs, or a run that is not in `frame`.
    """
    wanted = list(dict.fromkeys(run_ids))
    if len(wanted) < 2:
        raise SearchError("pick at least two runs to compare.")
    rows = frame.set_index("run_id")
    missing = [run_id for run_id in wanted if run_id not in rows.index]
    if missing:
        raise SearchError(
            f"run {missing[0]} is not among the loaded runs; refresh the list "
            "or wait until every page is loaded."
        )
    chosen = rows.loc[wanted]
    labels = {run_id: run_label(chosen.loc[run_id], run_id) for run_id in wanted}

    metrics = _side_by_side(chosen, metric_columns(frame), labels)
    params = _side_by_side(chosen, param_columns(frame), labels)
    params = params.astype("object").where(params.notna(), _NOT_SET)
    differing = tuple(name for name, row in params.iterrows() if row.nunique() > 1)
    return Comparison(
        labels=labels, metrics=metrics, params=params, differing=differing
    )


def run_label(row: pd.Series, run_id: str) -> str:
    """A short, unique label for a run: its name and the start of its id."""
    name = str(row.get("run_name") or "run")
    return f"{name} · {run_id[:7]}"


def metric_across_runs(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Runs that have `metric`, oldest first, with columns run_id, run_name,
    start_time and value."""
    if metric not in frame.columns:
        return pd.DataFrame(columns=["run_id", "run_name", "start_time", "value"])
    found = frame.loc[frame[metric].notna(), ["run_id", "run_name", "start_time"]]
    return (
        found.assign(value=frame.loc[found.index, metric].astype(float))
        .sort_values("start_time")
        .reset_index(drop=True)
    )


def metric_pairs(
    frame: pd.DataFrame, x: str, y: str, color: str | None = None
) -> pd.DataFrame:
    """Runs that have both metrics, with columns run_id, run_name, x, y (and color)."""
    columns = ["run_id", "run_name", x, y]
    if color and color not in columns:
        columns.append(color)
    if x not in frame.columns or y not in frame.columns:
        return pd.DataFrame(columns=columns)
    return frame.loc[frame[x].notna() & frame[y].notna(), columns].reset_index(
        drop=True
    )


def parallel_data(
    frame: pd.DataFrame, params: Sequence[str], metric: str
) -> ParallelData:
    """Params against a metric, every column numeric, for parallel coordinates.

    A param with at most `MAX_LEVELS` distinct values (a hyper-parameter grid,
    a name) becomes one tick per value, numbers in numeric order and "(not
    set)" last, so runs that lack it stay on the chart. A param with more
    distinct numbers keeps a continuous axis; runs without it are left out, as
    are runs without the metric.
    """
    columns = [p for p in params if p in frame.columns]
    if metric not in frame.columns:
        return ParallelData(
            frame=pd.DataFrame(columns=[*columns, metric]), categories={}
        )
    rows = frame.loc[frame[metric].notna()]
    out = pd.DataFrame(index=rows.index)
    categories: dict[str, list[str]] = {}
    for column in columns:
        values = rows[column]
        as_number = pd.to_numeric(values, errors="coerce")
        is_numeric = as_number.notna().sum() == values.notna().sum() > 0
        if is_numeric and as_number.nunique() > MAX_LEVELS:
            out[column] = as_number
            continue
        text = values.astype("object").where(values.notna(), _NOT_SET).astype(str)
        labels = sorted(text.unique(), key=_level_order)
        out[column] = text.map({label: i for i, label in enumerate(labels)})
        categories[column] = labels
    out[metric] = rows[metric].astype(float)
    return ParallelData(
        frame=out.dropna().reset_index(drop=True), categories=categories
    )


def _level_order(label: str) -> tuple[int, float, str]:
    """Numbers first in numeric order, then text, then "(not set)"."""
    if label == _NOT_SET:
        return (2, 0.0, "")
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def _side_by_side(
    chosen: pd.DataFrame, columns: list[str], labels: Mapping[str, str]
) -> pd.DataFrame:
    """Transpose the chosen runs' `columns`: one row per column, one per run."""
    table = chosen[columns].T.rename(columns=labels)
    table.index = [short_name(c) for c in columns]
    # A metric or param none of the chosen runs has is noise in a comparison.
    return table.dropna(how="all")


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Base columns, then tags, metrics and params, each group sorted."""
    present = [c for c in BASE_COLUMNS if c in frame.columns]
    for prefix in (TAG_PREFIX, METRIC_PREFIX, PARAM_PREFIX):
        present += sorted(c for c in frame.columns if c.startswith(prefix))
    return frame[present]


def _versions_by_run(client: MlflowClient) -> dict[str, str]:
    """Run id -> "model v3" for every registered version, one search for all.

    Best effort: a store without a registry (or one we may not read) still
    lists runs, only without the version column.
    """
    found: dict[str, list[str]] = {}
    token: str | None = None
    try:
        while True:
            page = client.search_model_versions(max_results=10_000, page_token=token)
            for mv in page:
                if mv.run_id and not mv.name.startswith(LOCK_PREFIX):
                    found.setdefault(mv.run_id, []).append(f"{mv.name} v{mv.version}")
            token = page.token
            if not token:
                break
    except MlflowException as exc:
        logger.warning("Listing runs without model versions: %s", exc)
    return {run_id: ", ".join(names) for run_id, names in found.items()}


def _round_estimate(value: float) -> int:
    """Two significant digits: an estimate should not look exact."""
    if value < 100:
        return round(value)
    digits = len(str(int(value))) - 2
    return int(round(value, -digits))


def _count(value: int) -> str:
    """10000 -> "10 000" (a space groups thousands, as in the app's copy)."""
    return f"{value:,}".replace(",", " ")
