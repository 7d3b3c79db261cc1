"""``stream-forecaster doctor``: what serving needs, checked in order, one line each with
the fix."""

from __future__ import annotations

import argparse

from stream_forecaster.cli.arguments import HelpFormatter
from stream_forecaster.settings import Settings


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    doctor = sub.add_parser(
        "doctor",
        parents=[common],
        help="check what serve needs: brokers, topics, ACLs, model",
        description="Check, in order, what `serve` needs with the settings given: the brokers "
        "answer (a failed connection, TLS handshake or SASL authentication is named); the "
        "input, output, dead-letter, changelog and model topics exist with the partition "
        "counts and cleanup policies serve expects; this principal may read and write them "
        "(the ACLs, as the brokers report them), and may describe its consumer group and "
        "transactional id; a model is there, loadable and correctly signed. One line per "
        "check, with the fix. Changes nothing. Exit status 0 when "
        "every check passes, 1 otherwise.",
        formatter_class=HelpFormatter,
    )
    doctor.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_forecaster.serving.doctor import run_checks

    failed = 0
    for check in run_checks(settings):
        print(check.line(), flush=True)
        failed += not check.ok
    print(f"doctor: {'all checks pass' if not failed else f'{failed} failed'}")
    return 1 if failed else 0
