"""The command line: `python -m core <command>`, for people and CI pipelines.

Exit codes: 0 success, 2 a gate failed, 1 any error (one line on stderr; the
traceback only with --debug). `--json` prints machine-readable results on
stdout; progress and logs always go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from core import contract
from core.config import (
    BACKENDS,
    STAGES,
    Settings,
    Stage,
    accuracy_threshold_from_env,
    load_settings,
    redact_text,
    with_actor,
)
from core.errors import StudioError
from core.tags import EVENT_KINDS

if TYPE_CHECKING:
    from core.training import Progress

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_GATE_FAILED = 0, 1, 2
# core.deployment.base.MIN_LAUNCH_TIMEOUT_S, written out for the same reason as
# the names below (a test holds the two equal).
MIN_LAUNCH_TIMEOUT_S = 1.0

# Commands import MLflow and scikit-learn only when they run: importing them
# costs seconds, and `--help` or the pipeline's `gate --stdin` need neither.
# These names are therefore written out; tests hold them equal to the registries
# (core.data.BUILTIN_DATASETS, core.training.ESTIMATORS).
DATASET_NAMES = ("breast_cancer", "iris", "wine")
ESTIMATOR_NAMES = ("gradient_boosting", "logistic_regression", "random_forest")


class UsageError(StudioError):
    """The command line itself is wrong (unknown flag, missing argument)."""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; 2 means "gate failed" here, so raise."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    parser = build_parser()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help printed; keep main() returning a code
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        _configure_logging(args.debug, args.verbose)
        if not (args.debug or args.verbose):
            # MLflow sets its own level when first imported (after this point):
            # without this, a first `train` narrates its table migrations.
            os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        if args.command == "gate" and args.stdin:
            return _gate_stdin(args)
        settings = with_actor(load_settings(), args.actor)
        handler: Callable[[Settings, argparse.Namespace], int] = args.handler
        return handler(settings, args)
    except StudioError as exc:
        if debug:
            logger.exception("Command failed")
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`python -m core history | head`): not an error.
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if debug:
            raise
        text = redact_text(str(exc).splitlines()[0] if str(exc) else "")
        print(
            f"error: unexpected {type(exc).__name__}: {text} (rerun with --debug "
            "for the traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _common_flags(*, suppress: bool) -> _Parser:
    """The flags every command takes, before or after the command's name.

    The copy attached to each subcommand must not write its defaults: argparse
    would otherwise overwrite `python -m core --json status` with json=False.
    """
    common = _Parser(add_help=False)
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    common.add_argument(
        "--json", action="store_true", help="machine-readable output", **default
    )
    common.add_argument(
        "--debug", action="store_true", help="show tracebacks", **default
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO", **default
    )
    common.add_argument(
        "--actor",
        help="who is acting (default: STUDIO_ACTOR or the OS user)",
        **default,
    )
    return common


def _whole(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"{raw!r} is not a whole number of {minimum} or more"
            )
        return value

    return parse


def _seconds(minimum: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(
                f"{raw!r} is not a number of seconds of at least {minimum:g}"
            )
        return value

    return parse


def _fraction(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a fraction between 0 and 1")
    return value


def _version(raw: str) -> str:
    # MLflow numbers versions 1, 2, ...; anything else would reach the store and
    # come back as a misleading "check the tracking server" error.
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a model version; versions are whole numbers like 3"
        )
    return str(int(raw))


def _expect_version(raw: str) -> str:
    return raw if raw.lower() in ("none", "unset") else _version(raw)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    common = _common_flags(suppress=True)
    parser = _Parser(
        prog="python -m core",
        parents=[_common_flags(suppress=False)],
        description="Promotion Studio: train, gate, promote and serve "
        "MLflow model versions.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    train_cmd = commands.add_parser(
        "train", parents=[common], help="train and register a candidate version"
    )
    train_cmd.add_argument(
        "--dataset",
        required=True,
        help=f"built-in ({', '.join(DATASET_NAMES)}) or a .csv/.parquet path",
    )
    train_cmd.add_argument("--target", help="target column (files only)")
    train_cmd.add_argument(
        "--estimator", default="logistic_regression", choices=ESTIMATOR_NAMES
    )
    train_cmd.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="hyper-parameter, repeatable (e.g. --param C=0.5)",
    )
    train_cmd.add_argument("--test-size", type=_fraction, default=0.25)
    train_cmd.add_argument("--seed", type=_whole(0), default=42)
    train_cmd.add_argument("--description", default="")
    train_cmd.set_defaults(handler=_train)

    gate_cmd = commands.add_parser(
        "gate", parents=[common], help="evaluate the gate policy on a version"
    )
    gate_cmd.add_argument(
        "version", nargs="?", type=_version, help="version (default: newest)"
    )
    gate_cmd.add_argument(
        "--stdin",
        action="store_true",
        help='read {"run_id","accuracy","model_version"} JSON from '
        "stdin and compare with ACCURACY_THRESHOLD",
    )
    gate_cmd.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="CHECK=VALUE",
        help="what-if: evaluate with this threshold instead (never recorded)",
    )
    gate_cmd.add_argument(
        "--no-record", action="store_true", help="evaluate without recording the result"
    )
    gate_cmd.add_argument("--reason", default="")
    gate_cmd.set_defaults(handler=_gate)

    promote_cmd = commands.add_parser(
        "promote", parents=[common], help="move staging or production to a version"
    )
    promote_cmd.add_argument(
        "version",
        nargs="?",
        type=_version,
        help="version (default: newest for staging, the staging "
        "version for production)",
    )
    promote_cmd.add_argument("--to", required=True, choices=STAGES)
    promote_cmd.add_argument("--reason", default="", help="why; recorded")
    promote_cmd.add_argument(
        "--expect",
        type=_expect_version,
        metavar="VERSION|none",
        help="fail unless the alias still holds this version",
    )
    promote_cmd.add_argument(
        "--skip-smoke",
        action="store_true",
        help="promote to production without a smoke result (needs --reason)",
    )
    promote_cmd.add_argument(
        "--override",
        action="store_true",
        help="bypass failed preconditions (needs --reason)",
    )
    promote_cmd.set_defaults(handler=_promote)

    rollback_cmd = commands.add_parser(
        "rollback", parents=[common], help="return an alias to its previous version"
    )
    rollback_cmd.add_argument("--alias", default="production", choices=STAGES)
    rollback_cmd.add_argument("--reason", default="", help="why; required")
    rollback_cmd.add_argument("--expect", type=_version, metavar="VERSION")
    rollback_cmd.set_defaults(handler=_rollback)

    status_cmd = commands.add_parser(
        "status", parents=[common], help="versions, aliases, gate and smoke results"
    )
    status_cmd.add_argument(
        "--limit", type=_whole(1), default=20, help="rows to show (default: 20)"
    )
    status_cmd.set_defaults(handler=_status)

    history_cmd = commands.add_parser(
        "history", parents=[common], help="the audit log, newest first"
    )
    history_cmd.add_argument(
        "--limit", type=_whole(1), default=20, help="rows to show (default: 20)"
    )
    history_cmd.add_argument("--kind", action="append", default=[], choices=EVENT_KINDS)
    history_cmd.add_argument("--alias", choices=STAGES)
    history_cmd.add_argument("--version", type=_version)
    history_cmd.set_defaults(handler=_history)

    policy_cmd = commands.add_parser(
        "policy", parents=[common], help="show the gate policy in force"
    )
    policy_cmd.set_defaults(handler=_policy)
    _add_server_commands(commands, common)
    return parser


def _train(settings: Settings, args: argparse.Namespace) -> int:
    from core.training import TrainRequest, train

    request = TrainRequest(
        dataset=args.dataset,
        target=args.target,
        estimator=args.estimator,
        params=_pairs(args.param, "--param"),
        test_size=args.test_size,
        seed=args.seed,
        description=args.description,
    )

    def show(progress: Progress) -> None:
        print(f"[{progress.fraction:4.0%}] {progress.message}", file=sys.stderr)

    result = train(settings, request, progress=show)
    _github_outputs({"model_version": result.model_version, "run_id": result.run_id})
    if args.json:
        _print_json(result.as_dict())
    else:
        print(
            f"Registered {result.model_name} version {result.model_version} "
            f"(run {result.run_id})"
        )
        print(
            _table(
                [{"metric": k, "value": f"{v:.4f}"} for k, v in result.metrics.items()]
            )
        )
        print(f"Next: python -m core gate {result.model_version}")
    return EXIT_OK


def _github_outputs(values: dict[str, str]) -> None:
    """Publish step outputs when running as a GitHub Actions step.

    Later steps then name the version this run registered instead of "the
    newest", which another writer to the same registry could have replaced.
    """
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.writelines(f"{key}={value}\n" for key, value in values.items())
    except OSError as exc:
        raise StudioError(
            f"cannot append the step outputs to GITHUB_OUTPUT={path}: "
            f"{exc.strerror}; unset GITHUB_OUTPUT outside GitHub Actions."
        ) from None


def _gate(settings: Settings, args: argparse.Namespace) -> int:
    from core import gates

    policy = gates.load_policy(settings)
    overrides = _thresholds(_pairs(args.threshold, "--threshold"))
    if overrides:
        policy = policy.with_thresholds(overrides)
    version = args.version or _newest(settings)
    # A what-if run: its thresholds are no policy, so recording it would replace
    # the version's real gate result with one promotion then refuses as stale.
    if overrides:
        print(
            "--threshold: a what-if evaluation, not recorded; save thresholds as "
            "the policy (STUDIO_GATE_POLICY or the app's Gate what-if page) to "
            "make them count",
            file=sys.stderr,
        )
    record = not args.no_record and not overrides
    result = gates.evaluate_gate(
        settings, version, policy, record=record, reason=args.reason
    )
    if args.json:
        _print_json({**result.as_dict(), "recorded": record})
    else:
        print(
            f"Gate for {result.model_name} version {result.version} under policy "
            f"{result.policy_digest}: {'PASSED' if result.passed else 'FAILED'}"
        )
        print(
            _table(
                [
                    {
                        "check": c.name,
                        "observed": "-" if c.observed is None else f"{c.observed:.4g}",
                        "rule": f"{c.op} {c.threshold:g}",
                        "result": "n/a"
                        if not c.applicable
                        else ("pass" if c.passed else "FAIL"),
                    }
                    for c in result.checks
                ]
            )
        )
        # The table has no room for why; say it for what failed or was skipped.
        for check in result.checks:
            if not check.passed or not check.applicable:
                print(f"  {check.message}")
        if result.passed:
            print(f"Next: python -m core promote {result.version} --to staging")
    return EXIT_OK if result.passed else EXIT_GATE_FAILED


def _gate_stdin(args: argparse.Namespace) -> int:
    """The original pipeline's gate: stdin JSON against ACCURACY_THRESHOLD.

    It reads no other setting, so an unrelated variable cannot break the
    pipeline, and the policy file is consulted only when the threshold is unset.
    """
    ignored = [
        flag
        for flag, given in (
            ("a version", args.version is not None),
            ("--threshold", bool(args.threshold)),
            ("--no-record", args.no_record),
            ("--reason", bool(args.reason)),
        )
        if given
    ]
    if ignored:
        raise UsageError(
            f"gate --stdin takes its input from stdin and its threshold from "
            f"ACCURACY_THRESHOLD; drop {', '.join(ignored)}."
        )
    threshold = accuracy_threshold_from_env()
    raw = sys.stdin.read()
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StudioError(
            f"stdin is not JSON ({exc.msg} at line {exc.lineno}); send "
            '{"run_id": "...", "accuracy": 0.93, "model_version": 1}.'
        ) from None
    if threshold is None:
        from core import gates

        policy = gates.load_policy(load_settings())
        accuracy_checks = [
            c for c in policy.checks if c.options.get("metric") == "accuracy"
        ]
        threshold = accuracy_checks[0].threshold if accuracy_checks else 0.9
    result = contract.evaluate_payload(payload, threshold)
    print(json.dumps(result))
    return EXIT_OK if result["passed"] else EXIT_GATE_FAILED


def _promote(settings: Settings, args: argparse.Namespace) -> int:
    from core import promotion

    if (args.skip_smoke or args.override) and not args.reason.strip():
        flag = "--skip-smoke" if args.skip_smoke else "--override"
        raise UsageError(f'{flag} needs --reason "..." saying why; it is recorded.')
    version = args.version or _default_promote_version(settings, args.to)
    result = promotion.promote(
        settings,
        version,
        args.to,
        expected=_expected(args.expect),
        reason=args.reason,
        override_reason=args.reason if args.override else "",
        skip_smoke_reason=args.reason if args.skip_smoke else "",
    )
    if args.json:
        _print_json(result.as_dict())
    else:
        was = f"version {result.previous}" if result.previous else "unset"
        print(
            f"{result.alias} of {settings.model_name} -> version {result.version} "
            f"(was {was}); recorded as audit run {result.event.run_id}"
        )
        if result.overridden:
            print(
                "Failed preconditions bypassed by your reason: "
                + ", ".join(result.overridden)
            )
    return EXIT_OK


def _rollback(settings: Settings, args: argparse.Namespace) -> int:
    from core import promotion

    result = promotion.rollback(
        settings, args.alias, expected=_expected(args.expect), reason=args.reason
    )
    if args.json:
        _print_json(result.as_dict())
    else:
        print(
            f"Rolled back {result.alias} of {settings.model_name} from version "
            f"{result.previous} to version {result.version}"
        )
    return EXIT_OK


def _status(settings: Settings, args: argparse.Namespace) -> int:
    from core import registry

    versions = registry.list_versions(settings, limit=args.limit)
    held = registry.aliases(settings)
    if args.json:
        _print_json(
            {
                "model_name": settings.model_name,
                "aliases": held,
                "tracking_uri": settings.redacted_tracking_uri(),
                "versions": [v.as_dict() for v in versions],
            }
        )
        return EXIT_OK
    print(f"Model {settings.model_name} at {settings.redacted_tracking_uri()}")
    for stage in STAGES:
        print(
            f"  {stage:<10} -> {('version ' + held[stage]) if stage in held else '-'}"
        )
    if not versions:
        print(
            "No versions yet. Train one: python -m core train --dataset breast_cancer"
        )
        return EXIT_OK
    print(
        _table(
            [
                {
                    "version": v.version,
                    "aliases": ",".join(v.aliases) or "-",
                    "estimator": v.tags.get("studio.estimator", "-"),
                    "accuracy": _num(v.metrics.get("accuracy")),
                    "f1": _num(v.metrics.get("f1")),
                    "gate": _verdict(v.gate_passed),
                    "smoke": _verdict(v.smoke_passed),
                    "created": v.created_at.strftime("%Y-%m-%d %H:%M"),
                }
                for v in versions
            ]
        )
    )
    return EXIT_OK


def _history(settings: Settings, args: argparse.Namespace) -> int:
    from core import audit

    events = audit.history(
        settings,
        kinds=tuple(args.kind),
        alias=args.alias,
        version=args.version,
        limit=args.limit,
    )
    if args.json:
        _print_json([e.as_dict() for e in events])
        return EXIT_OK
    if not events:
        print("No recorded events yet.")
        return EXIT_OK
    print(
        _table(
            [
                {
                    "when (UTC)": e.at.strftime("%Y-%m-%d %H:%M:%S"),
                    "event": e.kind,
                    "alias": e.alias or "-",
                    "version": e.version or "-",
                    "from": e.from_version or "-",
                    "outcome": e.outcome,
                    "actor": e.actor,
                    "reason": (
                        e.reason + (f" [override: {e.override}]" if e.override else "")
                    )[:60]
                    or "-",
                }
                for e in events
            ]
        )
    )
    return EXIT_OK


def _policy(settings: Settings, args: argparse.Namespace) -> int:
    from core import gates

    policy = gates.load_policy(settings)
    if args.json:
        _print_json(
            {
                "digest": policy.digest,
                "source": policy.source,
                "checks": [c.as_dict() for c in policy.checks],
            }
        )
        return EXIT_OK
    print(f"Gate policy {policy.digest} from {policy.source}")
    print(
        _table(
            [
                {
                    "check": c.name,
                    "kind": c.kind,
                    "rule": f"{c.op} {c.threshold:g}",
                    "options": ", ".join(f"{k}={v}" for k, v in c.options.items())
                    or "-",
                }
                for c in policy.checks
            ]
        )
    )
    return EXIT_OK


def _newest(settings: Settings) -> str:
    from core import registry

    versions = registry.list_versions(settings, limit=1)
    if not versions:
        raise StudioError(
            f"{settings.model_name} has no versions yet; train one with "
            "`python -m core train --dataset breast_cancer`."
        )
    return versions[0].version


def _default_promote_version(settings: Settings, to: str) -> str:
    from core import registry

    if to == "production":
        return registry.require_alias(settings, "staging")
    return _newest(settings)


def _expected(raw: str | None) -> Any:
    if raw is None:
        from core.registry import CURRENT

        return CURRENT
    return None if raw.lower() in ("none", "unset", "") else raw


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{flag} {item!r} is not NAME=VALUE; e.g. {flag} C=0.5.")
        pairs[name.strip()] = value.strip()
    return pairs


def _thresholds(pairs: dict[str, str]) -> dict[str, float]:
    overrides: dict[str, float] = {}
    for name, raw in pairs.items():
        try:
            overrides[name] = float(raw)
        except ValueError:
            overrides[name] = math.nan
        if not math.isfinite(overrides[name]):
            raise UsageError(
                f"--threshold {name}={raw} needs a number; "
                "e.g. --threshold accuracy=0.9."
            )
    return overrides


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _verdict(value: bool | None) -> str:
    return "-" if value is None else ("pass" if value else "FAIL")


def _table(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned plain-text table (the CLI's only formatting)."""
    if not rows:
        return ""
    headers = list(rows[0])
    cells = [[str(row.get(h, "")) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _configure_logging(debug: bool, verbose: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("core").setLevel(level)
    # MLflow narrates every registration and table migration at INFO.
    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
    # MLflow's FutureWarning about deprecated registry stages (we mirror to them
    # only on request, deliberately) is not the user's business.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"mlflow\..*")


# --- Serving: deploy, stop, probe, smoke, logs, servers -------------------------


def _add_server_commands(
    commands: argparse._SubParsersAction[_Parser], common: _Parser
) -> None:
    deploy_cmd = commands.add_parser(
        "deploy",
        parents=[common],
        help="launch (or replace) a stage's server and wait until it is healthy",
    )
    deploy_cmd.add_argument("--stage", required=True, choices=STAGES)
    deploy_cmd.add_argument(
        "--backend",
        choices=BACKENDS,
        help="docker or process (default: STUDIO_DEPLOY_BACKEND, else auto)",
    )
    deploy_cmd.add_argument(
        "--timeout",
        type=_seconds(MIN_LAUNCH_TIMEOUT_S),
        default=120.0,
        help="seconds to wait for /health (default: %(default)g)",
    )
    deploy_cmd.set_defaults(handler=_deploy)

    stop_cmd = commands.add_parser(
        "stop", parents=[common], help="stop a stage's server"
    )
    stop_cmd.add_argument("--stage", required=True, choices=STAGES)
    stop_cmd.set_defaults(handler=_stop)

    probe_cmd = commands.add_parser(
        "probe",
        parents=[common],
        help="print a stage server's health; exit 1 when down or mismatched",
    )
    probe_cmd.add_argument("--stage", required=True, choices=STAGES)
    probe_cmd.add_argument("--timeout", type=_seconds(0.1), default=5.0)
    probe_cmd.set_defaults(handler=_probe)

    smoke_cmd = commands.add_parser(
        "smoke",
        parents=[common],
        help="replay golden rows against a stage's server; exit 2 on failure",
    )
    smoke_cmd.add_argument("--stage", required=True, choices=STAGES)
    smoke_cmd.add_argument("--rows", type=_whole(1), default=50)
    smoke_cmd.add_argument(
        "--no-record", action="store_true", help="do not record the result"
    )
    smoke_cmd.set_defaults(handler=_smoke)

    logs_cmd = commands.add_parser(
        "logs", parents=[common], help="the last lines a stage's server wrote"
    )
    logs_cmd.add_argument("--stage", required=True, choices=STAGES)
    logs_cmd.add_argument("--lines", type=_whole(1), default=200)
    logs_cmd.set_defaults(handler=_logs)

    servers_cmd = commands.add_parser(
        "servers", parents=[common], help="status of the staging and production servers"
    )
    servers_cmd.set_defaults(handler=_servers)


def _deploy(settings: Settings, args: argparse.Namespace) -> int:
    from core import deployment, rollout

    print(
        f"Backend: {deployment.describe_choice(settings, args.backend)}",
        file=sys.stderr,
    )
    result = rollout.deploy(
        settings,
        args.stage,
        backend=args.backend,
        progress=lambda message: print(message, file=sys.stderr),
        launch_timeout=args.timeout,
    )
    if args.json:
        _print_json(result.as_dict())
    else:
        print(
            f"{args.stage} server {result.status.state} at {result.status.url} "
            f"({result.backend}: {result.status.detail})"
        )
        print(f"Next: python -m core probe --stage {args.stage}")
    return EXIT_OK


def _stop(settings: Settings, args: argparse.Namespace) -> int:
    from core import rollout

    status = rollout.stop(settings, args.stage)
    if args.json:
        _print_json(status.as_dict())
    else:
        print(f"{args.stage} server {status.state}: {status.detail}")
    return EXIT_OK


def _probe(settings: Settings, args: argparse.Namespace) -> int:
    from core import probes

    result = probes.probe(settings, args.stage, timeout=args.timeout)
    if args.json:
        _print_json(result.as_dict())
    else:
        health = result.health or {
            "status": "unreachable"
            if result.http_status is None
            else f"HTTP {result.http_status}",
            "stage": args.stage,
            "detail": result.message,
        }
        _print_json(health)
        took = f" in {result.response_ms:g} ms" if result.response_ms else ""
        print(f"{result.light}: {result.message}{took}", file=sys.stderr)
    return EXIT_ERROR if result.light == "red" else EXIT_OK


def _smoke(settings: Settings, args: argparse.Namespace) -> int:
    from core import probes

    result = probes.smoke(
        settings, args.stage, rows=args.rows, record=not args.no_record
    )
    if args.json:
        _print_json(result.as_dict())
    else:
        verdict = "PASSED" if result.passed else "FAILED"
        print(
            f"Smoke test of {args.stage} version {result.version}: {verdict} "
            f"({result.rows} rows, {result.mismatches} mismatches, p50 "
            f"{result.p50_ms:g} ms, p95 {result.p95_ms:g} ms)"
        )
        for problem in result.problems:
            print(f"  - {problem}")
        if result.passed and args.stage == "staging":
            print(f"Next: python -m core promote {result.version} --to production")
    return EXIT_OK if result.passed else EXIT_GATE_FAILED


def _logs(settings: Settings, args: argparse.Namespace) -> int:
    from core import deployment

    text = deployment.backend_for(settings, args.stage).logs(args.stage, args.lines)
    if args.json:
        _print_json({"stage": args.stage, "lines": text.splitlines()})
        return EXIT_OK
    print(text if text else f"(the {args.stage} server has written no log yet)")
    return EXIT_OK


def _servers(settings: Settings, args: argparse.Namespace) -> int:
    from core import deployment

    rows = [_server_row(settings, stage) for stage in STAGES]
    if args.json:
        _print_json(rows)
        return EXIT_OK
    print(f"Default backend: {deployment.describe_choice(settings)}")
    for row in rows:
        row["alias"] = f"v{row['alias_version']}" if row["alias_version"] else None
    print(_table([{k: row[k] or "-" for k in _SERVER_COLUMNS} for row in rows]))
    return EXIT_OK


_SERVER_COLUMNS = ("stage", "alias", "backend", "state", "url", "detail")


def _server_row(settings: Settings, stage: Stage) -> dict[str, Any]:
    from core import deployment, registry

    try:
        held: str | None = registry.alias_version(settings, stage)
    except StudioError:
        held = None
    # One stage's backend being unreachable (Docker stopped) must not hide the
    # other stage's status.
    try:
        row = deployment.backend_for(settings, stage).status(stage).as_dict()
    except StudioError as exc:
        row = {
            "stage": stage,
            "backend": "?",
            "state": "unknown",
            "url": None,
            "detail": str(exc),
        }
    row["alias_version"] = held
    return row
